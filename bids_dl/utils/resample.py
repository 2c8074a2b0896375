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
    linearly upsampled (float32; corner points aligned, as ``ndimage.zoom(order=1,
    grid_mode=False)``). Larger ``coarse`` gives finer structure."""
    coarse_shape = (coarse,) * len(shape) if np.isscalar(coarse) else tuple(coarse)
    field = rng.standard_normal(coarse_shape).astype(np.float32).astype(np.float64)
    # Linear interpolation is separable: one small matrix product per axis (each contracts
    # the first axis and appends the upsampled one last, so the order is restored at the
    # end) instead of 8 taps per output voxel; 0.3-0.6 s -> 0.03 s for a 1 mm head grid.
    for n_in, n_out in zip(coarse_shape, shape):
        field = np.tensordot(field, linear_weights(n_in, n_out), axes=([0], [0]))
    field = field.astype(np.float32)
    return field / max(float(field.std()), 1e-6)


def linear_weights(n_in: int, n_out: int) -> np.ndarray:
    """``(n_in, n_out)`` weights that linearly interpolate ``n_in`` samples at ``n_out``
    points spanning the same extent (first and last points aligned)."""
    position = np.arange(n_out) * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(1)
    lower = np.minimum(np.floor(position).astype(int), n_in - 1)
    upper = np.minimum(lower + 1, n_in - 1)
    fraction = position - lower
    weights = np.zeros((n_in, n_out))
    columns = np.arange(n_out)
    np.add.at(weights, (lower, columns), 1 - fraction)
    np.add.at(weights, (upper, columns), fraction)
    return weights


def fit_shape(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Crop or edge-pad ``array`` to exactly ``shape`` (zoom rounding can be off by one)."""
    slices = tuple(slice(0, min(a, s)) for a, s in zip(array.shape, shape))
    array = array[slices]
    pad = [(0, s - a) for a, s in zip(array.shape, shape)]
    return np.pad(array, pad, mode="edge") if any(p[1] for p in pad) else array
