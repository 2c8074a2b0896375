"""The one inference engine every CNN task shares.

NIfTI in any orientation/storage order -> world-aligned model grid (RAS axes, fixed spacing,
centred on the head) -> intensity normalisation -> predict -> probabilities resampled back
onto the native grid and affine -> threshold + post-processing. The model grid is found in
two passes: centred on the image's foreground first, then on the predicted structure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..utils.resample import resample_to_grid
from .grid import MODEL_SHAPE, MODEL_SPACING, normalise_intensity

RECENTRE_MM = 12.0  # re-run the model when the structure's centre is this far off the grid's
# (training shifts the head by up to 15 mm, so smaller offsets are well inside what it saw)


@dataclass
class GridSpec:
    """A model grid: ``shape`` voxels of ``spacing`` mm along world R, A, S."""

    shape: tuple[int, int, int] = MODEL_SHAPE
    spacing: float = MODEL_SPACING

    def affine(self, centre_mm: np.ndarray) -> np.ndarray:
        """Voxel-to-world affine of the grid centred on ``centre_mm`` (world, mm)."""
        affine = np.eye(4)
        affine[:3, :3] *= self.spacing
        affine[:3, 3] = np.asarray(centre_mm) - (np.array(self.shape) - 1) / 2 * self.spacing
        return affine


@dataclass
class EngineResult:
    """Probabilities (float32, native grid), the timing of each stage and the grid used."""

    probability: np.ndarray
    grid_affine: np.ndarray
    passes: int
    timings: dict[str, float] = field(default_factory=dict)


def foreground_centre(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """World (mm) centroid of voxels brighter than 10 % of the 99th percentile."""
    step = max(1, int(round(np.cbrt(data.size / 2e6))))  # subsample big images
    sub = data[::step, ::step, ::step]
    threshold = 0.1 * np.percentile(sub, 99)
    centre = np.array(ndimage.center_of_mass(sub > threshold)) * step
    if not np.all(np.isfinite(centre)):
        centre = (np.array(data.shape) - 1) / 2
    return affine[:3, :3] @ centre + affine[:3, 3]


def anti_alias(data: np.ndarray, affine: np.ndarray, spacing: float) -> np.ndarray:
    """Gaussian pre-filter along axes whose voxels are finer than half the grid ``spacing``."""
    voxel = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    sigma = np.where(voxel < spacing / 2, (spacing / 2 / voxel) / 2.355, 0.0)
    return ndimage.gaussian_filter(data, sigma) if sigma.any() else data


class InferenceEngine:
    """Runs one Keras model (input and output ``(1, x, y, z, 1)``) through the shared path."""

    def __init__(self, model, grid: GridSpec | None = None,
                 grid_postprocess: Callable[[np.ndarray], np.ndarray] | None = None):
        """``grid_postprocess`` maps the model-grid probabilities to cleaned ones before they
        are resampled (cheap on the 2 mm grid, costly on a native 0.5-1 mm grid)."""
        self.model = model
        self.grid = grid or GridSpec()
        self.grid_postprocess = grid_postprocess

    def predict_grid(self, grid_image: np.ndarray) -> np.ndarray:
        """Model output (float32 probabilities) for one normalised grid image."""
        return self.predict_channels(grid_image[..., None])[..., 0]

    def predict_channels(self, grid_channels: np.ndarray) -> np.ndarray:
        """Model output ``(x, y, z, outputs)`` for normalised inputs ``(x, y, z, inputs)``."""
        batch = grid_channels[None].astype(np.float32)
        output = self.model.predict_on_batch(batch)  # NumPy out on every backend
        return np.asarray(output, dtype=np.float32)[0]

    def predict_tiled(self, grid_channels: np.ndarray, tile: int, overlap: float = 0.25,
                      where: np.ndarray | None = None, mirror: bool = False) -> np.ndarray:
        """Model output ``(x, y, z, outputs)`` from cubic ``tile``-voxel tiles of
        ``grid_channels`` (``(x, y, z, inputs)``) overlapping by at least ``overlap`` of a
        tile, blended with weights that fall towards each tile's faces (for models trained
        on patches of that size: the same normalisation statistics; also the low-memory
        path). With ``where`` (boolean, grid shape), tiles cover only its bounding box
        (grown to a tile where smaller) and tiles without a voxel of it are skipped:
        elsewhere the output is 0. ``mirror``: test-time mirroring, the mean of the outputs
        for the input and for its left-right mirror image (grid axis 0, world x; mirrored
        back), which takes twice as long."""
        if mirror:
            mirrored = self.predict_tiled(grid_channels[::-1], tile, overlap,
                                          None if where is None else where[::-1])
            return (self.predict_tiled(grid_channels, tile, overlap, where)
                    + mirrored[::-1]) / 2
        shape = grid_channels.shape[:3]
        low, high = np.zeros(3, int), np.array(shape)
        if where is not None:
            if not where.any():
                return self._nothing(shape)
            found = np.argwhere(where)
            low, high = found.min(0), found.max(0) + 1
            grow = np.maximum(tile - (high - low), 0)  # a box smaller than a tile: grow it
            low = np.clip(low - grow // 2, 0, None)
            high = np.minimum(np.maximum(high, low + tile), shape)
            low = np.maximum(np.minimum(low, high - tile), 0)
        starts = []
        for first, last in zip(low, high):
            size = int(last - first)
            if size <= tile:
                starts.append([int(first)])
                continue
            count = int(np.ceil((size - tile) / (tile * (1 - overlap)))) + 1
            starts.append(sorted({int(first) + int(round(v))
                                  for v in np.linspace(0, size - tile, count)}))
        ramp = np.minimum(np.arange(tile) + 0.5, tile - 0.5 - np.arange(tile)) / (tile / 2)
        ramp = np.clip(ramp, 0.0, 1.0).astype(np.float32) ** 2  # ~0 at the faces
        window = ramp[:, None, None] * ramp[None, :, None] * ramp[None, None, :]
        total, weights = None, np.zeros(shape, np.float32)
        for x in starts[0]:
            for y in starts[1]:
                for z in starts[2]:
                    box = (slice(x, x + tile), slice(y, y + tile), slice(z, z + tile))
                    if where is not None and not where[box].any():
                        continue
                    part = self.predict_channels(grid_channels[box])
                    sub = window[tuple(slice(0, b.stop - b.start) for b in box)]
                    if total is None:
                        total = np.zeros((*shape, part.shape[-1]), np.float32)
                    total[box] += part * sub[..., None]
                    weights[box] += sub
        if total is None:  # nothing to predict
            return self._nothing(shape)
        return total / np.maximum(weights, 1e-6)[..., None]

    def _nothing(self, shape: tuple[int, ...]) -> np.ndarray:
        """The output where nothing is predicted: zeros ``(*shape, outputs)``."""
        return np.zeros((*shape, self.model.outputs[0].shape[-1]), np.float32)

    def to_grid(self, data: np.ndarray, affine: np.ndarray, grid_affine: np.ndarray,
                order: int = 1) -> np.ndarray:
        """``data`` (native grid, ``affine``) on the model grid at ``grid_affine``:
        anti-aliased, linear, outside the field of view filled with the image's minimum."""
        source = anti_alias(data, affine, self.grid.spacing) if order else data
        return resample_to_grid(source, affine, self.grid.shape, grid_affine, order=order,
                                cval=float(data.min()))

    @staticmethod
    def to_native(grid_data: np.ndarray, grid_affine: np.ndarray, shape: tuple[int, ...],
                  affine: np.ndarray) -> np.ndarray:
        """Model-grid values resampled (linear) onto a native grid (``shape``, ``affine``)."""
        return resample_to_grid(grid_data, grid_affine, shape, affine, order=1)

    def run(self, data: np.ndarray, affine: np.ndarray) -> EngineResult:
        """Probability map on the native grid of ``data`` (3D, voxel-to-world ``affine``)."""
        timings: dict[str, float] = {}
        tic = time.perf_counter()
        source = anti_alias(data, affine, self.grid.spacing)
        centre = foreground_centre(data, affine)
        background = float(data.min())  # outside the field of view looks like the background
        passes = 0
        for _ in range(2):
            passes += 1
            grid_affine = self.grid.affine(centre)
            grid_image = resample_to_grid(source, affine, self.grid.shape, grid_affine, order=1,
                                          cval=background)
            grid_image = normalise_intensity(grid_image)
            timings["resample_in"] = timings.get("resample_in", 0) + time.perf_counter() - tic
            tic = time.perf_counter()
            probability = self.predict_grid(grid_image)
            timings["predict"] = timings.get("predict", 0) + time.perf_counter() - tic
            tic = time.perf_counter()
            structure = probability > 0.5
            if not structure.any():
                break
            found = np.array(ndimage.center_of_mass(structure))
            found = grid_affine[:3, :3] @ found + grid_affine[:3, 3]
            if np.linalg.norm(found - centre) < RECENTRE_MM:
                break
            centre = found
        if self.grid_postprocess is not None:
            probability = self.grid_postprocess(probability)
        native = self.to_native(probability, grid_affine, data.shape, affine)
        timings["resample_out"] = time.perf_counter() - tic
        return EngineResult(native, grid_affine, passes, timings)


def keep_largest_structure(probability: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Grid post-processing for one solid structure (a brain): probabilities outside the
    largest component above ``threshold`` (dilated by one voxel, so that the boundary still
    interpolates) become 0, and enclosed holes become 1."""
    component = largest_component(probability > threshold, fill_holes=False)
    if not component.any():
        return probability
    filled = ndimage.binary_fill_holes(component)
    cleaned = np.where(ndimage.binary_dilation(filled), probability, 0.0)
    cleaned[filled & ~component] = 1.0
    return cleaned.astype(np.float32)


def largest_component(mask: np.ndarray, fill_holes: bool = True) -> np.ndarray:
    """Keep the largest 6-connected component of a boolean mask; optionally fill its holes."""
    components, count = ndimage.label(mask)
    if count > 1:
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        mask = components == int(np.argmax(sizes))
    if fill_holes:
        mask = ndimage.binary_fill_holes(mask)
    return mask


@dataclass
class BrainGrid:
    """The model grid centred on a brain: ``affine`` (grid voxel -> world mm) and ``brain``
    (boolean mask on the grid), for tasks whose inputs are normalised inside the brain."""

    affine: np.ndarray
    brain: np.ndarray


def brain_grid(engine: InferenceEngine, brain: np.ndarray, affine: np.ndarray) -> BrainGrid:
    """``engine``'s grid centred on the centre of mass of ``brain`` (a native-grid mask with
    voxel-to-world ``affine``; the volume's centre when empty), with the mask moved onto it."""
    voxel = (np.array(ndimage.center_of_mass(brain)) if brain.any()
             else (np.array(brain.shape) - 1) / 2)
    centre = affine[:3, :3] @ voxel + affine[:3, 3]
    grid_affine = engine.grid.affine(centre)
    grid_brain = engine.to_grid(brain.astype(np.float32), affine, grid_affine) > 0.5
    return BrainGrid(grid_affine, grid_brain)
