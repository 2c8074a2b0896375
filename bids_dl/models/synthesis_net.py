"""The contrast-synthesis network: a 3D U-Net that predicts, per voxel, the mixture of tissue
classes (every label of the synthetic heads, then lesions; softmax), followed by a fixed
rendering layer that turns the mixture into each target image through the physics of its
reference acquisition (a 1x1x1 convolution whose weights are the tissues' FLAIR and T2w
signals relative to white matter and their CT numbers / 1000,
:func:`bids_dl.synth.physics.reference_signals`; not trained).

Shipped (inference) model: input ``(batch, x, y, z, 1)`` normalised T1w, output ``(batch, x,
y, z, 3)`` FLAIR, T2w, CT/1000. Training model: the rendered images, then the tissue
fractions, concatenated on the channel axis (``3 + N_TISSUE_CLASSES`` channels), so the loss
can weigh both.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from .contrast_synthesis import HU_SCALE, TARGETS
from .unet import build_unet

N_TARGETS = len(TARGETS)


def rendering_weights() -> np.ndarray:
    """``(N_TISSUE_CLASSES, 3)`` per-class FLAIR, T2w (x white matter) and CT (HU / 1000)."""
    from ..synth.physics import reference_signals

    signals = reference_signals()
    signals[2] /= HU_SCALE
    return signals.T.astype(np.float32)


def build_synthesis_net(filters: tuple[int, ...] = (8, 16, 32, 64), groups: int = 4,
                        dropout: float = 0.1, activation: str = "relu",
                        data_format: str = "channels_last", training: bool = False,
                        name: str = "tissue_synthesis") -> keras.Model:
    """The synthesis network (see the module docstring); ``training``: also output the
    tissue fractions. Layer names match :func:`~bids_dl.models.unet.build_unet`'s (the
    logits are its ``output`` layer), so U-Net weights initialise it."""
    weights = rendering_weights()
    unet = build_unet(filters=filters, in_channels=1, out_channels=weights.shape[0],
                      groups=groups, dropout=dropout, final_activation="linear",
                      data_format=data_format, activation=activation, name=name)
    axis = -1 if data_format == "channels_last" else 1
    tissues = layers.Softmax(axis=axis, dtype="float32", name="tissues")(unet.output)
    render = layers.Conv3D(N_TARGETS, 1, use_bias=False, trainable=False, dtype="float32",
                           data_format=data_format, name="render")
    images = render(tissues)
    render.set_weights([weights.reshape(1, 1, 1, *weights.shape)])
    outputs = layers.Concatenate(axis=axis, name="images_and_tissues")(
        [images, tissues]) if training else images
    return keras.Model(unet.input, outputs, name=name)


def to_inference(model: keras.Model, **build_kwargs) -> keras.Model:
    """The channels-last inference copy of a (channels-first, training) synthesis net."""
    copy = build_synthesis_net(data_format="channels_last", training=False, **build_kwargs)
    source = {layer.name: layer for layer in model.layers}
    for layer in copy.layers:
        if layer.weights:
            layer.set_weights(source[layer.name].get_weights())
    return copy
