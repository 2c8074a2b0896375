"""Group normalisation with accurate statistics on every backend, and the model loader.

Keras' ``GroupNormalization`` reduces each group over all its voxels at once. On the
TensorFlow CPU backend that float32 reduction over millions of voxels (a 96x112x96 grid)
loses about 1e-3 of the variance: the first normalised features differ by up to 6e-3 from
the exact (float64) result, and the brain probability by up to 0.3 at the mask's edge, while
PyTorch (where the models are trained) and JAX agree with it to 1e-6. Here the mean and
variance are means of means, one spatial axis at a time (each over at most a few hundred
values): the same statistics to float32 precision on every backend. The weights are the same,
so models saved with Keras' layer are switched to this one as they load.
"""

from __future__ import annotations

from pathlib import Path

import keras
from keras import ops


def _staged_mean(x, axes: list[int]):
    """Mean of ``x`` over ``axes`` (kept as size 1), one axis at a time."""
    for axis in sorted(axes, reverse=True):
        x = ops.mean(x, axis=axis, keepdims=True)
    return x


@keras.saving.register_keras_serializable(package="bids_dl")
class AccurateGroupNormalization(keras.layers.GroupNormalization):
    """``keras.layers.GroupNormalization`` with staged (accurate) group statistics."""

    def _apply_normalization(self, reshaped_inputs, input_shape):
        inputs_dtype = reshaped_inputs.dtype
        x = ops.cast(reshaped_inputs, keras.backend.result_type(inputs_dtype, "float32"))
        axes = list(range(1, len(x.shape)))
        axes.pop(-2 if self.axis == -1 else self.axis - 1)  # the within-group channel axis stays
        mean = _staged_mean(x, axes)
        variance = _staged_mean(ops.square(x - mean), axes)
        broadcast_shape = self._create_broadcast_shape(input_shape)
        inv = ops.rsqrt(variance + self.epsilon)
        if self.scale:
            inv = inv * ops.cast(ops.reshape(self.gamma, broadcast_shape), x.dtype)
        shift = -mean * inv
        if self.center:
            shift = shift + ops.cast(ops.reshape(self.beta, broadcast_shape), x.dtype)
        return ops.cast(x * inv + shift, inputs_dtype)


def use_accurate_normalization(model: keras.Model) -> keras.Model:
    """``model`` with each ``GroupNormalization`` layer switched, in place, to
    :class:`AccurateGroupNormalization` (same configuration and weights; it adds no state),
    before the model is first called."""
    for layer in model.layers:
        if type(layer) is keras.layers.GroupNormalization:
            layer.__class__ = AccurateGroupNormalization
    return model


def load_keras_model(path: str | Path, compile: bool = False) -> keras.Model:
    """The ``.keras`` model at ``path`` (``safe_mode=True``) with accurate group
    normalisation (see :func:`use_accurate_normalization`)."""
    model = keras.saving.load_model(path, compile=compile, safe_mode=True)
    return use_accurate_normalization(model)
