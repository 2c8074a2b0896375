"""The model grid every brain-extraction CNN sees, and its intensity normalisation.

Brain-extraction grid: ``MODEL_SHAPE`` voxels of ``MODEL_SPACING`` mm, axes along world R, A, S
(192 x 224 x 192 mm, room for any adult head's brain).
"""

from __future__ import annotations

import numpy as np

MODEL_SHAPE = (96, 112, 96)
MODEL_SPACING = 2.0
#: Lesion segmentation grid: 168 x 192 x 168 mm (``LESION_FOV_MM``) centred on the brain, at
#: 1.5 mm by default; a lesion model trained on another spacing says so in its card
#: (``input.spacing_mm``) and inference follows it (:func:`lesion_grid_shape`).
LESION_FOV_MM = (168.0, 192.0, 168.0)
LESION_SPACING = 1.5
#: The U-Nets halve the grid three times: grid sides are multiples of this.
GRID_MULTIPLE = 8


def lesion_grid_shape(spacing: float = LESION_SPACING) -> tuple[int, int, int]:
    """Voxels per axis of the lesion grid at ``spacing`` mm: at least ``LESION_FOV_MM``,
    rounded up to a multiple of :data:`GRID_MULTIPLE` (1.5 mm: 112 x 128 x 112)."""
    if not 0.5 <= spacing <= 3.0:
        raise ValueError(f"lesion grid spacing {spacing} mm is outside 0.5-3 mm")
    return tuple(int(np.ceil(fov / spacing / GRID_MULTIPLE - 1e-6)) * GRID_MULTIPLE
                 for fov in LESION_FOV_MM)


LESION_SHAPE = lesion_grid_shape(LESION_SPACING)


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
