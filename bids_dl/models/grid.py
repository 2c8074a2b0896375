"""The model grid every brain-extraction CNN sees, and its intensity normalisation.

Model grid: ``MODEL_SHAPE`` voxels of ``MODEL_SPACING`` mm, axes along world R, A, S
(192 x 224 x 192 mm, room for any adult head's brain).
"""

from __future__ import annotations

import numpy as np

MODEL_SHAPE = (96, 112, 96)
MODEL_SPACING = 2.0


def normalise_intensity(image: np.ndarray) -> np.ndarray:
    """Map the 0.5th-99.5th percentile range of ``image`` to 0-1 (clipped), float32."""
    low, high = np.percentile(image, (0.5, 99.5))
    if high <= low:
        high = low + 1.0
    return np.clip((image - low) / (high - low), 0.0, 1.0).astype(np.float32)
