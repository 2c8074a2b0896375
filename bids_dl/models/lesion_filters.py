"""Lesion-wise anatomy filter: drop predicted lesions that the model's own cortex output
surrounds.

White-matter lesions lie in white matter (juxtacortical ones touch the cortex on one side);
the false lesions the lesion model leaves are mostly bright patches of cortex (a bias field,
a grey matter brighter on that FLAIR), which the cortex output encloses. A lesion's *shell*
is the voxels outside it within :data:`CORTEX_SHELL_MM`; a lesion whose shell lies more than
the card's ``max_cortex_shells[inputs]`` inside the cortex output is dropped (1: no filter).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

#: Width (mm) of the shell around a lesion in which the cortex output is read.
CORTEX_SHELL_MM = 2.0
#: No filter: a shell fraction never exceeds 1.
NO_CORTEX_FILTER = 1.0
#: ``box -> (ventricles, cortex, infratentorial)`` boolean masks of that native-grid box
#: (:func:`bids_dl.models.lesion_segmentation.grid_structures`).
StructureSource = Callable[[tuple[slice, ...]], tuple[np.ndarray, np.ndarray, np.ndarray]]


def cortex_shell_fractions(mask: np.ndarray, affine: np.ndarray,
                           structures: StructureSource) -> tuple[np.ndarray, np.ndarray]:
    """26-connected components of ``mask`` (native grid, ``affine``) and, per component
    (index ``k - 1`` for label ``k``), the fraction of its shell (voxels outside it within
    :data:`CORTEX_SHELL_MM` mm, in the anisotropic voxel sizes of ``affine``) that
    ``structures`` calls cortex. Returns ``(labels, fractions)``."""
    labels, count = ndimage.label(mask, np.ones((3, 3, 3)))
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(0))
    margin = np.ceil(CORTEX_SHELL_MM / zooms).astype(int) + 1
    fractions = np.zeros(count)
    for number, box in enumerate(ndimage.find_objects(labels), start=1):
        grown = tuple(slice(max(s.start - m, 0), min(s.stop + m, n))
                      for s, m, n in zip(box, margin, mask.shape))
        own = labels[grown] == number
        distance = ndimage.distance_transform_edt(~own, sampling=zooms)
        shell = (distance > 0) & (distance <= CORTEX_SHELL_MM)
        cortex = structures(grown)[1]
        fractions[number - 1] = float(cortex[shell].mean()) if shell.any() else 0.0
    return labels, fractions


def remove_cortical(mask: np.ndarray, affine: np.ndarray, structures: StructureSource | None,
                    max_fraction: float) -> np.ndarray:
    """``mask`` without the components whose cortex-shell fraction
    (:func:`cortex_shell_fractions`) exceeds ``max_fraction`` (unchanged at
    :data:`NO_CORTEX_FILTER` or without ``structures``)."""
    if structures is None or max_fraction >= NO_CORTEX_FILTER or not mask.any():
        return mask
    labels, fractions = cortex_shell_fractions(mask, affine, structures)
    keep = np.concatenate([[False], fractions <= max_fraction])
    return keep[labels]
