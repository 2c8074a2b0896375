"""Losses for mask training (``keras.ops`` only)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="bids_dl")
def dice_bce_loss(y_true, y_pred):
    """Soft Dice loss plus binary cross-entropy; tensors ``(batch, ..., 1)`` in 0-1."""
    y_true = ops.cast(y_true, y_pred.dtype)
    axes = tuple(range(1, len(y_pred.shape)))
    overlap = ops.sum(y_true * y_pred, axis=axes)
    total = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes)
    dice = 1.0 - (2.0 * overlap + 1.0) / (total + 1.0)
    bce = ops.mean(keras.losses.binary_crossentropy(y_true, y_pred), axis=axes[:-1])
    return dice + bce
