"""The model grid every brain-extraction CNN sees, and its intensity normalisation.

Brain-extraction grid: ``MODEL_SHAPE`` voxels of ``MODEL_SPACING`` mm, axes along world R, A, S
(192 x 224 x 192 mm, room for any adult head's brain).
"""

from __future__ import annotations

import numpy as np

MODEL_SHAPE = (96, 112, 96)
MODEL_SPACING = 2.0
#: Lesion segmentation grid: 168 x 192 x 168 mm at 1.5 mm, centred on the brain.
LESION_SHAPE = (112, 128, 112)
LESION_SPACING = 1.5


def normalise_intensity(image: np.ndarray) -> np.ndarray:
    """Map the 0.5th-99.5th percentile range of ``image`` to 0-1 (clipped), float32."""
    low, high = np.percentile(image, (0.5, 99.5))
    if high <= low:
        high = low + 1.0
    return np.clip((image - low) / (high - low), 0.0, 1.0).astype(np.float32)


def normalise_in_mask(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Map the 1st-99th percentile range of ``image`` inside ``mask`` (the brain) to 0-1;
    values are clipped to 0-2, so lesions brighter than most of the brain keep their
    contrast. Falls back to the whole image when the mask is (nearly) empty."""
    inside = image[mask > 0] if np.count_nonzero(mask) > 100 else image.ravel()
    low, high = np.percentile(inside, (1, 99))
    if high <= low:
        high = low + 1.0
    return np.clip((image - low) / (high - low), 0.0, 2.0).astype(np.float32)
