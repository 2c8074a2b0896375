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


@keras.saving.register_keras_serializable(package="bids_dl")
def channelwise_dice_bce_loss(y_true, y_pred):
    """Mean over channels of soft Dice + binary cross-entropy, each channel on its own (a
    small structure, e.g. lesions, counts as much as a large one); channels-first tensors
    ``(batch, channels, x, y, z)``. Dice pools the whole batch (a patch without lesions does
    not reward an empty prediction on its own); the first channel (lesions) weighs double.
    A ``y_true`` with one channel more than ``y_pred`` carries voxel weights of the lesion
    channel's cross-entropy in its last channel
    (:func:`bids_dl.training.data.small_lesion_weights`)."""
    y_true = ops.cast(y_true, y_pred.dtype)
    voxel_weights = None
    if y_true.shape[1] == y_pred.shape[1] + 1:
        y_true, voxel_weights = y_true[:, :-1], y_true[:, -1:]
    pooled = (0,) + tuple(range(2, len(y_pred.shape)))
    overlap = ops.sum(y_true * y_pred, axis=pooled)
    total = ops.sum(y_true, axis=pooled) + ops.sum(y_pred, axis=pooled)
    dice = 1.0 - (2.0 * overlap + 1.0) / (total + 1.0)
    clipped = ops.clip(y_pred, 1e-6, 1.0 - 1e-6)
    voxel_bce = -(y_true * ops.log(clipped) + (1 - y_true) * ops.log(1 - clipped))
    if voxel_weights is not None:
        first = ops.concatenate([voxel_weights, ops.ones_like(y_pred[:, 1:])], axis=1)
        voxel_bce = voxel_bce * first
    bce = ops.mean(voxel_bce, axis=pooled)
    per_channel = dice + bce
    channels = per_channel.shape[0]
    weights = ops.convert_to_tensor([2.0] + [1.0] * (channels - 1), dtype=y_pred.dtype)
    loss = ops.sum(per_channel * weights) / ops.sum(weights)
    return ops.ones_like(y_pred[:, 0, 0, 0, 0]) * loss


#: Lesions of a patch scored one by one in :func:`blob_dice_bce_loss` (the smallest first;
#: any more are left out of the per-lesion term)
MAX_BLOBS = 16
#: Neighbourhood (voxels) around a lesion where its per-lesion Dice is scored
BLOB_RADIUS = 5.0
#: Weight of the per-lesion term in :func:`blob_dice_bce_loss`
BLOB_WEIGHT = 1.0


@keras.saving.register_keras_serializable(package="bids_dl")
def blob_dice_bce_loss(y_true, y_pred):
    """:func:`channelwise_dice_bce_loss` plus :data:`BLOB_WEIGHT` x the mean soft Dice loss
    of each lesion on its own (after Kofler et al.'s "blob loss"): for lesion ``i`` of a
    patch, Dice between its voxels and the lesion prediction in its neighbourhood (voxels
    within :data:`BLOB_RADIUS` nearer to it than to any other lesion), so a 10 mm³ lesion
    weighs as much as a confluent one and a halo of false positives around it counts
    against it. ``y_true`` carries two channels more than ``y_pred``: the lesions' instance
    ids and neighbourhoods (:func:`bids_dl.training.data.lesion_instances`); channels-first
    ``(batch, channels, x, y, z)``."""
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(y_true, y_pred.dtype)
    targets, instances, regions = y_true[:, :-2], y_true[:, -2], y_true[:, -1]
    base = channelwise_dice_bce_loss(targets, y_pred)
    lesion = y_pred[:, 0]
    axes = tuple(range(1, len(lesion.shape)))
    total, count = 0.0, 0.0
    for blob_id in range(1, MAX_BLOBS + 1):
        blob = ops.cast(ops.equal(instances, float(blob_id)), y_pred.dtype)
        near = lesion * ops.cast(ops.equal(regions, float(blob_id)), y_pred.dtype)
        size = ops.sum(blob, axis=axes)
        overlap = ops.sum(blob * near, axis=axes)
        dice = 1.0 - (2.0 * overlap + 1.0) / (size + ops.sum(near, axis=axes) + 1.0)
        present = ops.cast(size > 0, y_pred.dtype)
        total = total + ops.sum(dice * present)
        count = count + ops.sum(present)
    blobs = total / ops.maximum(count, 1.0)
    return base + BLOB_WEIGHT * ops.ones_like(y_pred[:, 0, 0, 0, 0]) * blobs


SSIM_WINDOW = 7  # voxels (cubic, uniform) of the local SSIM statistics
SSIM_RANGE = 2.0  # dynamic range L of the targets (MR: x white matter; CT: HU / 1000)


def _l1_ssim(y_true, y_pred):
    """Scalar L1 + (1 - mean local SSIM) of channels-first tensors."""
    l1 = ops.mean(ops.abs(y_true - y_pred))

    def local_mean(x):  # the cubic box filter as three 1D passes (5x faster, same values)
        for axis in range(3):
            size = [1, 1, 1]
            size[axis] = SSIM_WINDOW
            x = ops.average_pool(x, tuple(size), strides=1, padding="valid",
                                 data_format="channels_first")
        return x

    c1, c2 = (0.01 * SSIM_RANGE) ** 2, (0.03 * SSIM_RANGE) ** 2
    mu_true, mu_pred = local_mean(y_true), local_mean(y_pred)
    var_true = local_mean(y_true * y_true) - mu_true**2
    var_pred = local_mean(y_pred * y_pred) - mu_pred**2
    covariance = local_mean(y_true * y_pred) - mu_true * mu_pred
    ssim = ((2 * mu_true * mu_pred + c1) * (2 * covariance + c2)) / (
        (mu_true**2 + mu_pred**2 + c1) * (var_true + var_pred + c2))
    return l1 + (1.0 - ops.mean(ssim))


@keras.saving.register_keras_serializable(package="bids_dl")
def l1_ssim_loss(y_true, y_pred):
    """Mean absolute error plus ``1 - SSIM`` (local 7³ windows, constants for a dynamic range
    of :data:`SSIM_RANGE`), over every voxel and channel; channels-first tensors
    ``(batch, channels, x, y, z)`` (the synthesis targets)."""
    y_true = ops.cast(y_true, y_pred.dtype)
    return ops.ones_like(y_pred[:, 0, 0, 0, 0]) * _l1_ssim(y_true, y_pred)


SYNTHESIS_IMAGES = 3  # FLAIR, T2w, CT: the first channels of the synthesis net's training output
#: Weight of the lesion class (the last) in the tissue cross-entropy: lesions fill < 1 % of
#: the patches, and a mixture without them erases lesions from the synthetic FLAIR
LESION_CLASS_WEIGHT = 10.0
#: Weight of the soft Dice of the lesion class (pooled over the batch, as the lesion model's),
#: which does not shrink with the lesions' share of the voxels as the cross-entropy does
LESION_DICE_WEIGHT = 1.0


@keras.saving.register_keras_serializable(package="bids_dl")
def tissue_synthesis_loss(y_true, y_pred):
    """L1 + (1 - SSIM) of the rendered images (the first :data:`SYNTHESIS_IMAGES` channels)
    plus the cross-entropy of the predicted tissue mixture against the partial-volume tissue
    fractions (the other channels; the lesion class, last, weighs
    :data:`LESION_CLASS_WEIGHT`) plus :data:`LESION_DICE_WEIGHT` x the soft Dice loss of the
    lesion class over the batch; channels-first ``(batch, channels, x, y, z)``."""
    y_true = ops.cast(y_true, y_pred.dtype)
    images = _l1_ssim(y_true[:, :SYNTHESIS_IMAGES], y_pred[:, :SYNTHESIS_IMAGES])
    fractions = y_true[:, SYNTHESIS_IMAGES:]
    predicted = ops.clip(y_pred[:, SYNTHESIS_IMAGES:], 1e-6, 1.0)
    classes = fractions.shape[1]
    weights = ops.reshape(ops.convert_to_tensor([1.0] * (classes - 1) + [LESION_CLASS_WEIGHT],
                                                dtype=y_pred.dtype), (1, classes, 1, 1, 1))
    cross_entropy = -ops.mean(ops.sum(weights * fractions * ops.log(predicted), axis=1))
    lesion_true, lesion_pred = fractions[:, -1], y_pred[:, -1]
    overlap = ops.sum(lesion_true * lesion_pred)
    dice = 1.0 - (2.0 * overlap + 1.0) / (ops.sum(lesion_true) + ops.sum(lesion_pred) + 1.0)
    return ops.ones_like(y_pred[:, 0, 0, 0, 0]) * (images + cross_entropy
                                                   + LESION_DICE_WEIGHT * dice)


#: The loss each task trains with.
LOSSES = {"brain-extraction": dice_bce_loss, "lesion-segmentation": channelwise_dice_bce_loss,
          "contrast-synthesis": tissue_synthesis_loss}
