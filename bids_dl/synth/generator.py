"""Label map to training image: the synthetic-image generator (SynthStrip/SynthSeg style).

One sample = one label map (1 mm head grid) put through, in order:
spatial transform (random affine + smooth non-linear warp, into the model grid) ->
per-label intensities (a contrast family or random) with partial volume at boundaries ->
texture -> bias field -> resolution (blur, thick slices on any axis) -> noise (Gaussian or
Rician) -> gamma -> field-of-view crop -> normalisation. Every stage takes a
``numpy.random.Generator`` so a sample is a pure function of its seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..models.grid import MODEL_SHAPE, MODEL_SPACING, normalise_intensity
from ..utils.resample import fit_shape, smooth_noise
from .contrasts import FAMILIES, label_intensities
from .labels import HEAD_AFFINE, brain_mask

CONTRASTS = (*FAMILIES, "random")


@dataclass
class GeneratorConfig:
    """Ranges of every random stage (angles in degrees, lengths in mm)."""

    out_shape: tuple[int, int, int] = MODEL_SHAPE
    spacing: float = MODEL_SPACING
    max_rotation: float = 30.0
    scale_range: tuple[float, float] = (0.85, 1.15)
    max_shear: float = 0.05
    max_shift: float = 15.0
    max_warp: float = 3.0
    contrast_weights: dict[str, float] = field(
        default_factory=lambda: {"T1w": 0.2, "T2w": 0.1, "FLAIR": 0.1, "PD": 0.1, "random": 0.5}
    )
    max_bias: float = 0.8
    p_thick_slices: float = 0.5
    max_slice_thickness: float = 7.0
    max_noise: float = 0.08
    max_gamma: float = 0.3
    p_crop: float = 0.25


@dataclass
class Sample:
    """One training pair on the model grid: ``image`` (float32, 0-1) and ``mask`` (uint8)."""

    image: np.ndarray
    mask: np.ndarray
    contrast: str
    affine: np.ndarray
    labels: np.ndarray | None = None  # nearest-neighbour labels, when asked for


def rotation_matrix(angles_deg) -> np.ndarray:
    """3x3 rotation: about x, then y, then z, by ``angles_deg`` (degrees)."""
    matrix = np.eye(3)
    for axis, angle in enumerate(np.deg2rad(angles_deg)):
        c, s = np.cos(angle), np.sin(angle)
        i, j = [a for a in range(3) if a != axis]
        rotation = np.eye(3)
        rotation[i, i], rotation[i, j], rotation[j, i], rotation[j, j] = c, -s, s, c
        matrix = rotation @ matrix
    return matrix


def brain_centre(mask: np.ndarray) -> np.ndarray:
    """World (mm) centre of mass of a brain mask on the :data:`HEAD_AFFINE` grid (the grid's
    centre for an empty mask, instead of NaN)."""
    if not np.any(mask):
        centre_voxel = (np.array(mask.shape[:3]) - 1) / 2
    else:
        centre_voxel = np.array(ndimage.center_of_mass(mask))
    return HEAD_AFFINE[:3, :3] @ centre_voxel + HEAD_AFFINE[:3, 3]


def random_affine(rng: np.random.Generator, config: GeneratorConfig) -> np.ndarray:
    """3x3 matrix: rotations about x, y, z (uniform +-max_rotation), scaling, shear."""
    matrix = rotation_matrix(rng.uniform(-config.max_rotation, config.max_rotation, 3))
    shear = np.eye(3) + np.triu(rng.uniform(-config.max_shear, config.max_shear, (3, 3)), 1)
    return matrix @ shear @ np.diag(rng.uniform(*config.scale_range, 3))


def sample_coordinates(
    labels_shape: tuple[int, ...], centre_mm: np.ndarray, rng: np.random.Generator,
    config: GeneratorConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Source-voxel coordinates (3, *out_shape) of every model-grid voxel, and the model grid's
    voxel-to-world affine (world = the label map's mm, before the random transform)."""
    shape = np.array(config.out_shape)
    grid = np.indices(config.out_shape, dtype=np.float32).reshape(3, -1)
    offsets = (grid - ((shape - 1) / 2)[:, None]) * config.spacing  # mm about the grid centre
    matrix = random_affine(rng, config)
    centre = centre_mm + rng.uniform(-config.max_shift, config.max_shift, 3)
    world = matrix @ offsets + centre[:, None]
    warp_scale = rng.uniform(0, config.max_warp)
    for axis in range(3):
        coarse = tuple(int(c) for c in rng.integers(3, 7, 3))
        world[axis] += warp_scale * smooth_noise(config.out_shape, rng, coarse).ravel()
    source = np.linalg.inv(HEAD_AFFINE)
    voxels = source[:3, :3] @ world + source[:3, 3:]
    affine = np.eye(4)
    affine[:3, :3] = np.eye(3) * config.spacing
    affine[:3, 3] = centre - (shape - 1) / 2 * config.spacing
    return voxels.reshape(3, *config.out_shape).astype(np.float32), affine


def draw_thick_slices(rng: np.random.Generator, config: GeneratorConfig) -> bool:
    """Whether :func:`degrade_resolution` gives an image thick slices (chance
    ``p_thick_slices``): its first draw, for callers that need to know the choice."""
    return bool(rng.random() < config.p_thick_slices)


def degrade_resolution(image: np.ndarray, rng: np.random.Generator, config: GeneratorConfig,
                       thick: bool | None = None) -> np.ndarray:
    """Blur; with probability ``p_thick_slices`` simulate thick slices along one random axis
    (Gaussian slice profile, subsampled then linearly interpolated back). ``thick``: that
    choice, already drawn by the caller with :func:`draw_thick_slices`."""
    if thick is None:
        thick = draw_thick_slices(rng, config)
    if thick:
        axis = int(rng.integers(3))
        thickness = rng.uniform(2 * config.spacing, config.max_slice_thickness)
        factor = thickness / config.spacing
        sigma = [0.0] * 3
        sigma[axis] = factor / 2.355
        blurred = ndimage.gaussian_filter(image, sigma)
        step = [1.0] * 3
        step[axis] = 1.0 / factor
        low = ndimage.zoom(blurred, step, order=1)
        back = ndimage.zoom(low, np.divide(image.shape, low.shape), order=1)
        return fit_shape(back, image.shape)
    return ndimage.gaussian_filter(image, rng.uniform(0.0, 0.8))


def add_noise(image: np.ndarray, rng: np.random.Generator, config: GeneratorConfig) -> np.ndarray:
    """Gaussian, or Rician (magnitude of complex Gaussian) noise of random level."""
    sigma = rng.uniform(0, config.max_noise)
    real = image + sigma * rng.standard_normal(image.shape, dtype=np.float32)
    if rng.random() < 0.5:
        return np.abs(real)
    imaginary = sigma * rng.standard_normal(image.shape, dtype=np.float32)
    return np.sqrt(real**2 + imaginary**2)


def crop_field_of_view(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Zero a slab on one side of one axis (a field of view that misses part of the head)."""
    axis = int(rng.integers(3))
    keep = int(image.shape[axis] * rng.uniform(0.6, 0.9))
    index = [slice(None)] * 3
    index[axis] = slice(keep, None) if rng.random() < 0.5 else slice(0, image.shape[axis] - keep)
    image, mask = image.copy(), mask.copy()
    image[tuple(index)] = 0
    mask[tuple(index)] = 0
    return image, mask


class SyntheticHeads:
    """Renders training samples from a list of label maps (uint8 arrays on the head grid)."""

    def __init__(self, label_maps: list[np.ndarray], config: GeneratorConfig | None = None):
        if not label_maps:
            raise ValueError("no label maps given")
        self.label_maps = label_maps
        self.masks = [brain_mask(labels).astype(np.float32) for labels in label_maps]
        self.centres = [brain_centre(mask) for mask in self.masks]
        self.config = config or GeneratorConfig()

    def sample(self, seed, contrast: str | None = None, label_map: int | None = None,
               with_labels: bool = False) -> Sample:
        """One sample, a pure function of ``seed`` (int or sequence of ints); ``with_labels``
        also samples the label map onto the model grid (nearest neighbour)."""
        rng = np.random.default_rng(seed)
        config = self.config
        index = int(rng.integers(len(self.label_maps))) if label_map is None else label_map
        if contrast is None:
            names = list(config.contrast_weights)
            weights = np.array([config.contrast_weights[n] for n in names])
            contrast = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        coordinates, affine = sample_coordinates(
            self.label_maps[index].shape, self.centres[index], rng, config)
        means = label_intensities(contrast, rng)
        rendered = means[self.label_maps[index]]
        image = ndimage.map_coordinates(rendered, coordinates, order=1, prefilter=False)
        mask = ndimage.map_coordinates(self.masks[index], coordinates, order=1, prefilter=False)
        mask = (mask >= 0.5).astype(np.uint8)
        labels = (ndimage.map_coordinates(self.label_maps[index], coordinates, order=0)
                  if with_labels else None)
        texture = 1.0 + rng.uniform(0, 0.1) * smooth_noise(config.out_shape, rng, 24)
        image = image * texture
        bias = np.exp(rng.uniform(0, config.max_bias) * smooth_noise(config.out_shape, rng, 4))
        image = degrade_resolution(image * bias, rng, config)
        image = add_noise(image, rng, config)
        image = np.clip(image / max(float(image.max()), 1e-6), 0, 1)
        image = image ** np.exp(rng.uniform(-config.max_gamma, config.max_gamma))
        if rng.random() < config.p_crop:
            image, mask = crop_field_of_view(image, mask, rng)
        return Sample(normalise_intensity(image.astype(np.float32)), mask, contrast, affine,
                      labels)


def random_cube(candidates: np.ndarray, shape, patch: int, rng: np.random.Generator,
                affine: np.ndarray) -> tuple[tuple[slice, ...], np.ndarray]:
    """A cube of ``patch`` voxels inside a grid of ``shape``, centred (as far as the grid
    allows) on one random row of ``candidates`` (``(n, 3)`` voxel indices; the grid centre
    when there are none): its slices and the voxel-to-world ``affine`` of its first voxel."""
    shape = np.array(shape)
    centre = (candidates[int(rng.integers(len(candidates)))] if len(candidates)
              else shape // 2)
    low = np.clip(centre - patch // 2, 0, shape - patch)
    box = tuple(slice(int(a), int(a) + patch) for a in low)
    moved = affine.copy()
    moved[:3, 3] += affine[:3, :3] @ low
    return box, moved


def render_native(labels: np.ndarray, contrast: str, rng: np.random.Generator,
                  slice_thickness: float | None = None, bias: float = 0.3, noise: float = 0.03,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A synthetic acquisition of a label map on its own 1 mm grid (no warp), for evaluation.

    Returns ``(image, affine, brain_mask)``. With ``slice_thickness`` (mm) the image has thick
    axial slices (Gaussian profile) of that spacing: shape ``(x, y, z / thickness)``.
    """
    means = label_intensities(contrast, rng)
    image = means[labels] * np.exp(bias * smooth_noise(labels.shape, rng, 4))
    image = ndimage.gaussian_filter(image, 0.5)
    mask = brain_mask(labels)
    affine = HEAD_AFFINE.copy()
    if slice_thickness:
        step = int(round(slice_thickness))
        image = ndimage.gaussian_filter1d(image, slice_thickness / 2.355, axis=2)
        image, mask = image[:, :, step // 2::step], mask[:, :, step // 2::step]
        affine[:3, 3] += HEAD_AFFINE[:3, :3] @ np.array([0, 0, step // 2])
        affine[:3, 2] *= step
    image = add_noise(image, rng, GeneratorConfig(max_noise=noise))
    return image.astype(np.float32), affine, mask.astype(np.uint8)
