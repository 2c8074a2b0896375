"""Resampling between voxel grids through their world (scanner, mm) coordinates."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def resample_to_grid(
    data: np.ndarray,
    src_affine: np.ndarray,
    dst_shape: tuple[int, ...],
    dst_affine: np.ndarray,
    order: int = 1,
    cval: float = 0.0,
    output: type | None = None,
) -> np.ndarray:
    """Sample ``data`` (3D, voxel grid ``src_affine``) on the grid ``dst_shape``/``dst_affine``.

    Affines are 4x4 voxel-to-world (mm). ``order`` 0 is nearest neighbour (labels), 1 linear.
    Points outside the source take ``cval``.
    """
    vox_to_vox = np.linalg.inv(src_affine) @ dst_affine
    return ndimage.affine_transform(
        data,
        vox_to_vox[:3, :3],
        offset=vox_to_vox[:3, 3],
        output_shape=tuple(dst_shape),
        order=order,
        mode="constant",
        cval=cval,
        output=output or (data.dtype if order == 0 else np.float32),
        prefilter=False,
    )


def smooth_noise(
    shape: tuple[int, ...], rng: np.random.Generator, coarse: int | tuple[int, ...] = 6
) -> np.ndarray:
    """Smooth random field of ``shape``: unit-variance Gaussian noise on a ``coarse`` grid,
    linearly upsampled (float32). Larger ``coarse`` gives finer structure."""
    coarse_shape = (coarse,) * len(shape) if np.isscalar(coarse) else tuple(coarse)
    small = rng.standard_normal(coarse_shape).astype(np.float32)
    field = ndimage.zoom(small, np.divide(shape, coarse_shape), order=1, grid_mode=False)
    field = fit_shape(field, shape)
    return field / max(float(field.std()), 1e-6)


def fit_shape(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Crop or edge-pad ``array`` to exactly ``shape`` (zoom rounding can be off by one)."""
    slices = tuple(slice(0, min(a, s)) for a, s in zip(array.shape, shape))
    array = array[slices]
    pad = [(0, s - a) for a, s in zip(array.shape, shape)]
    return np.pad(array, pad, mode="edge") if any(p[1] for p in pad) else array
