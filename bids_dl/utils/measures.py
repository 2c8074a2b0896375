"""Image-level measures written to the sidecars and gathered at group level."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def head_mask(data: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """The head (everything that is not background air) on the image grid: smoothed image
    above 10 % of its 99th percentile, largest component, holes filled, plus the brain."""
    smooth = ndimage.gaussian_filter(data.astype(np.float32), 1.5)
    foreground = smooth > 0.1 * np.percentile(smooth, 99)
    labels, count = ndimage.label(foreground)
    if count > 1:
        sizes = ndimage.sum_labels(foreground, labels, range(1, count + 1))
        foreground = labels == 1 + int(np.argmax(sizes))
    return ndimage.binary_fill_holes(foreground | brain.astype(bool))


def brain_measures(data: np.ndarray, mask: np.ndarray, affine: np.ndarray) -> dict[str, float]:
    """``BrainVolumeMl`` (intracranial mask volume, ml) and ``IntracranialFraction`` (share
    of the head's volume inside the mask, 0-1: low for wide fields of view with neck, high
    for tight ones; outliers flag failed masks or cropped heads)."""
    voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    brain = mask.astype(bool)
    head = head_mask(data, brain)
    return {"BrainVolumeMl": round(float(brain.sum()) * voxel_ml, 2),
            "IntracranialFraction": round(float(brain.sum()) / max(int(head.sum()), 1), 4)}
