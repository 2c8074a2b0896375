"""A conditional 3D PatchGAN discriminator (pix2pix, Isola et al. 2017, in 3D) for the
optional adversarial term of contrast-synthesis training.

Input: the source T1w and the three target images (FLAIR, T2w, CT/1000) of a patch,
concatenated on the channel axis, ``(batch, 4, x, y, z)`` channels-first (as training runs)
or ``(batch, x, y, z, 4)`` channels-last; each spatial size a multiple of
``2 ** len(filters)``. Output: one realness score per overlapping patch, ``(batch, 1, x / 8,
y / 8, z / 8)`` for three levels (a linear output: the least-squares GAN loss of Mao et al.
2017, the CycleGAN choice, scores it). Its receptive field is 38 voxels for three levels, so
it judges local texture and tissue boundaries, not the whole head.
"""

from __future__ import annotations

import keras
from keras import layers

#: Channels the discriminator reads: the source T1w, then FLAIR, T2w, CT (the targets)
DISCRIMINATOR_CHANNELS = 4


def build_patch_discriminator(filters: tuple[int, ...] = (16, 32, 64), groups: int = 4,
                              in_channels: int = DISCRIMINATOR_CHANNELS,
                              data_format: str = "channels_first",
                              name: str = "discriminator") -> keras.Model:
    """``len(filters)`` strided 4³ convolutions (stride 2; group normalisation after the
    first; leaky ReLU 0.2), then a 3³ convolution to one linear score per location."""
    channels_last = data_format == "channels_last"
    shape = (None, None, None)
    inputs = keras.Input((*shape, in_channels) if channels_last else (in_channels, *shape),
                         name="source_and_images")
    axis = -1 if channels_last else 1
    x = inputs
    for level, width in enumerate(filters):
        x = layers.Conv3D(width, 4, strides=2, padding="same", use_bias=level == 0,
                          data_format=data_format, name=f"disc{level}_conv")(x)
        if level:
            x = layers.GroupNormalization(groups=min(groups, width), axis=axis,
                                          name=f"disc{level}_norm")(x)
        x = layers.LeakyReLU(0.2, name=f"disc{level}_relu")(x)
    score = layers.Conv3D(1, 3, padding="same", data_format=data_format,
                          name="disc_score")(x)
    return keras.Model(inputs, score, name=name)
