"""A 3D U-Net in Keras 3 (``keras`` / ``keras.ops`` only: runs on TensorFlow, JAX or PyTorch).

Input ``(batch, x, y, z, channels)`` channels-last, each spatial size a multiple of
``2 ** (len(filters) - 1)``; output ``(batch, x, y, z, out_channels)``.
"""

from __future__ import annotations

import keras
from keras import layers


def _conv_block(x, filters: int, groups: int, dropout: float, name: str, data_format: str,
                activation: str = "relu"):
    axis = -1 if data_format == "channels_last" else 1
    for i in (1, 2):
        x = layers.Conv3D(filters, 3, padding="same", use_bias=False, data_format=data_format,
                          name=f"{name}_conv{i}")(x)
        x = layers.GroupNormalization(groups=min(groups, filters), axis=axis,
                                      name=f"{name}_norm{i}")(x)
        x = layers.Activation(activation, name=f"{name}_relu{i}")(x)
    if dropout:
        x = layers.SpatialDropout3D(dropout, data_format=data_format, name=f"{name}_dropout")(x)
    return x


def build_unet(
    filters: tuple[int, ...] = (16, 32, 64, 128),
    in_channels: int = 1,
    out_channels: int = 1,
    groups: int = 4,
    dropout: float = 0.1,
    final_activation: str = "sigmoid",
    name: str = "unet3d",
    data_format: str = "channels_last",
    activation: str = "relu",
    output_bias: float = 0.0,
) -> keras.Model:
    """U-Net with ``len(filters)`` levels, group normalisation and spatial dropout at the
    bottleneck; ``final_activation`` is ``sigmoid`` (masks), ``softmax`` or ``linear``.
    ``activation``: of every block (``relu``; ``leaky_relu`` keeps units from dying, which
    starved the lesion channel of a ReLU model); ``output_bias``: initial bias of the output
    layer (e.g. the logit of a rare class's prior, so the first steps do not push every
    feature down to silence an output that starts at 0.5 everywhere).

    ``data_format="channels_first"`` (input ``(batch, channels, x, y, z)``) trains about twice
    as fast on the PyTorch backend; the weights are the same either way (see
    :func:`to_channels_last`), and shipped models are channels-last, which every backend runs.
    """
    shape = (None, None, None)
    channels_last = data_format == "channels_last"
    inputs = keras.Input((*shape, in_channels) if channels_last else (in_channels, *shape),
                         name="image")
    x = inputs
    skips = []
    for level, width in enumerate(filters[:-1]):
        x = _conv_block(x, width, groups, 0.0, f"down{level}", data_format, activation)
        skips.append(x)
        x = layers.MaxPooling3D(2, data_format=data_format, name=f"pool{level}")(x)
    x = _conv_block(x, filters[-1], groups, dropout, "bottleneck", data_format, activation)
    for level in reversed(range(len(filters) - 1)):
        x = layers.UpSampling3D(2, data_format=data_format, name=f"upsample{level}")(x)
        x = layers.Concatenate(axis=-1 if channels_last else 1, name=f"skip{level}")(
            [x, skips[level]])
        x = _conv_block(x, filters[level], groups, 0.0, f"up{level}", data_format, activation)
    outputs = layers.Conv3D(out_channels, 1, activation=final_activation, dtype="float32",
                            bias_initializer=keras.initializers.Constant(output_bias),
                            data_format=data_format, name="output")(x)
    return keras.Model(inputs, outputs, name=name)


def to_channels_last(model: keras.Model, **build_kwargs) -> keras.Model:
    """A channels-last copy of a U-Net built by :func:`build_unet` (same weights)."""
    copy = build_unet(data_format="channels_last", **build_kwargs)
    copy.set_weights(model.get_weights())
    return copy
