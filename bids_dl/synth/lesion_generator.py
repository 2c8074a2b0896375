"""Training samples for lesion segmentation: co-registered FLAIR and T1w of one synthetic head
with synthetic lesions, on the lesion model grid.

Each sample: a head label map, fresh lesions and lesion mimics (enlarged perivascular spaces,
CSF-like, and the choroid plexus, grey-matter-like; :mod:`bids_dl.synth.lesions`), one random
geometry (affine + warp) shared by both contrasts, then per contrast its own label
intensities (FLAIR or T1w ordering, lesions painted in), texture, bias field, resolution (FLAIR
often with thick slices), noise and gamma, normalised inside the brain. A contrast is left out
(all zeros) at random, so one model serves FLAIR + T1w, FLAIR alone and T1w alone; for pooled
training the whole heads keep both and every patch cut from them draws its own inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage

from ..models.grid import LESION_SHAPE, LESION_SPACING, lesion_grid_shape, normalise_in_mask
from ..utils.resample import smooth_noise
from .contrasts import label_intensities
from .generator import (
    GeneratorConfig,
    add_noise,
    degrade_resolution,
    draw_thick_slices,
    random_cube,
)
from .labels import LABELS, brain_mask
from .lesions import (
    HeadsWithLesions,
    lesion_intensity,
    paint_lesion_fraction,
)

CHANNELS = ("FLAIR", "T1w")
#: Output channels of the lesion model: the lesions, plus the structures that place them
#: (ventricles, cortex, infratentorial brain) for the per-lesion location classes.
TARGETS = ("lesions", "ventricles", "cortex", "infratentorial")
STRUCTURE_LABELS = {"ventricles": (LABELS["ventricles"],), "cortex": (LABELS["cortical_gm"],),
                    "infratentorial": (LABELS["cerebellar_gm"], LABELS["cerebellar_wm"],
                                       LABELS["brainstem"])}


def lesion_geometry(geometry: GeneratorConfig, spacing: float) -> GeneratorConfig:
    """``geometry`` on a lesion grid of ``spacing`` mm (same field of view,
    :func:`~bids_dl.models.grid.lesion_grid_shape`)."""
    return replace(geometry, spacing=float(spacing), out_shape=lesion_grid_shape(spacing))


@dataclass
class LesionConfig:
    """Ranges of the lesion samples (grid in mm; probabilities of left-out contrasts)."""

    geometry: GeneratorConfig = field(default_factory=lambda: GeneratorConfig(
        out_shape=LESION_SHAPE, spacing=LESION_SPACING, max_rotation=20.0, max_shift=8.0,
        max_warp=2.0, max_bias=0.35, max_noise=0.05))
    p_flair_only: float = 0.35
    p_t1w_only: float = 0.2
    #: True: a sample keeps both contrasts and each patch cut by ``LesionHeads.crop`` draws
    #: which to leave out (pooled training: a pre-rendered head serves every input case).
    leave_out_in_crop: bool = False
    #: Pooled training: chance that a FLAIR + T1w patch of a head with a ``synthetic_flair``
    #: reads that (the synthesis model's FLAIR from the T1w) as its FLAIR, so the model also
    #: learns the synthetic-FLAIR input of ``--synthesize-missing``; 0: never
    p_synthetic_flair: float = 0.0
    p_thick_flair: float = 0.5
    p_thick_t1w: float = 0.15
    patch: int | None = None  # cubic training patches of this many voxels (None: whole grid)
    p_patch_on_lesion: float = 0.7
    #: Lesion mimics: enlarged perivascular spaces (CSF-like tubes) in half of the heads
    #: (:func:`~bids_dl.synth.lesions.simulate_perivascular_spaces`); off: none
    perivascular_spaces: bool = True
    #: Lesion mimics: a choroid plexus (grey-matter-like, inside the lateral ventricles) in
    #: most heads (:func:`~bids_dl.synth.lesions.simulate_choroid_plexus`); off: none
    choroid_plexus: bool = True


@dataclass
class LesionSample:
    """``image`` (channels-first float32 ``(2, x, y, z)``: FLAIR, T1w; a left-out contrast is
    zeros), ``mask`` (uint8 ``(4, x, y, z)``, :data:`TARGETS`), ``brain`` (uint8),
    ``present`` (which contrasts); ``synthetic_flair`` (``(x, y, z)``, normalised like the
    FLAIR channel, or None): the synthesis model's FLAIR from the T1w, for pooled training
    (:func:`~bids_dl.training.synthetic_inputs.add_synthetic_flairs`)."""

    image: np.ndarray
    mask: np.ndarray
    brain: np.ndarray
    present: tuple[bool, bool]
    affine: np.ndarray
    synthetic_flair: np.ndarray | None = None
    #: True when the FLAIR channel holds the synthetic FLAIR (a pooled training patch)
    flair_is_synthetic: bool = False
    #: True when the FLAIR was rendered with thick slices (3-7 mm along one axis), where
    #: lesions of a few voxels do not show
    flair_thick: bool = False

    def __post_init__(self):
        self.present = tuple(bool(v) for v in self.present)  # also from a stored array


class LesionHeads(HeadsWithLesions):
    """Renders lesion samples from head label maps (uint8, :data:`HEAD_AFFINE` grid)."""

    def __init__(self, label_maps: list[np.ndarray], config: LesionConfig | None = None):
        super().__init__(label_maps)
        self.config = config or LesionConfig()

    sample_type = LesionSample

    def crop(self, sample: LesionSample, patch: int, rng: np.random.Generator,
             ) -> LesionSample:
        """A training patch of a whole-grid ``sample`` (lesion-centred at the configured
        rate); with ``config.leave_out_in_crop`` a patch of a sample with both contrasts
        leaves one out at the configured rates, and a FLAIR + T1w patch reads the sample's
        synthetic FLAIR instead of its FLAIR at ``config.p_synthetic_flair``. The patch
        carries no ``synthetic_flair`` of its own."""
        config = self.config
        cropped = crop_patch(sample, patch, rng, config.p_patch_on_lesion)
        if config.leave_out_in_crop and all(sample.present):
            present = self.draw_inputs(rng)
            if (config.p_synthetic_flair > 0 and all(present)
                    and cropped.synthetic_flair is not None
                    and rng.random() < config.p_synthetic_flair):
                image = cropped.image.copy()
                image[0] = cropped.synthetic_flair
                cropped = replace(cropped, image=image, flair_is_synthetic=True)
            cropped = leave_out(cropped, present)
        return replace(cropped, synthetic_flair=None)

    def draw_inputs(self, rng: np.random.Generator) -> tuple[bool, bool]:
        """Which contrasts (FLAIR, T1w) a sample keeps: FLAIR alone, T1w alone or both, at
        the configured rates."""
        draw = rng.random()
        config = self.config
        if draw < config.p_flair_only:
            return True, False
        if draw < config.p_flair_only + config.p_t1w_only:
            return False, True
        return True, True

    def sample(self, seed, label_map: int | None = None, lesion_count: int | None = None,
               present: tuple[bool, bool] | None = None) -> LesionSample:
        """One sample (a cubic patch when ``config.patch``), a pure function of ``seed`` (and
        the optional fixed choices)."""
        return self.samples(seed, 1, label_map, lesion_count, present)[0]

    def samples(self, seed, patches: int = 1, label_map: int | None = None,
                lesion_count: int | None = None, present: tuple[bool, bool] | None = None,
                ) -> list[LesionSample]:
        """``patches`` cubic patches cut from one rendered head (the whole grid once when
        ``config.patch`` is None); a pure function of its arguments.

        The label map and the lesion mask are resampled once onto the model grid (labels by
        nearest neighbour, lesions as a partial-volume fraction), and each contrast is rendered
        there, so a sample costs two resamplings however many contrasts and targets it has."""
        rng = np.random.default_rng(seed)
        config = self.config
        index = int(rng.integers(len(self.label_maps))) if label_map is None else label_map
        grid_labels, fraction, affine = self.on_grid(index, rng, config.geometry,
                                                     lesion_count, config.perivascular_spaces,
                                                     config.choroid_plexus)
        brain = brain_mask(grid_labels)
        targets = [fraction >= 0.5] + [np.isin(grid_labels, STRUCTURE_LABELS[name])
                                       for name in TARGETS[1:]]
        if present is None:
            present = (True, True) if config.leave_out_in_crop else self.draw_inputs(rng)
        channels, thick = [], {}
        for contrast, kept in zip(CHANNELS, present):
            image, thick[contrast] = self._render(grid_labels, fraction, contrast, rng)
            channels.append(image if kept else np.zeros_like(image))
        image = normalise_channels(np.stack(channels), brain)
        sample = LesionSample(image, np.stack(targets).astype(np.uint8),
                              brain.astype(np.uint8), tuple(present), affine,
                              flair_thick=thick["FLAIR"])
        if not config.patch:
            return [sample]
        return [self.crop(sample, config.patch, rng) for _ in range(patches)]

    def _render(self, grid_labels: np.ndarray, lesion_fraction: np.ndarray, contrast: str,
                rng: np.random.Generator) -> tuple[np.ndarray, bool]:
        """One contrast of the head on the model grid (label means, partial volume at tissue
        edges, lesions, texture, bias, resolution, noise, gamma), float32 scaled to max 1, and
        whether it was given thick slices."""
        config = self.config
        means = label_intensities(contrast, rng)
        image = ndimage.gaussian_filter(means[grid_labels].astype(np.float32), 0.5)
        if lesion_fraction.any():
            image = paint_lesion_fraction(image, lesion_fraction,
                                          lesion_intensity(contrast, means, rng), rng)
        shape = config.geometry.out_shape
        image *= 1.0 + rng.uniform(0, 0.08) * smooth_noise(shape, rng, 24)
        image *= np.exp(rng.uniform(0, config.geometry.max_bias) * smooth_noise(shape, rng, 4))
        p_thick = config.p_thick_flair if contrast == "FLAIR" else config.p_thick_t1w
        geometry = replace(config.geometry, p_thick_slices=p_thick)
        thick_slices = draw_thick_slices(rng, geometry)
        image = degrade_resolution(image, rng, geometry, thick_slices)
        image = add_noise(image / max(float(image.max()), 1e-6), rng, geometry)
        image = np.clip(image, 0, None) ** np.exp(rng.uniform(-0.2, 0.2))
        return image.astype(np.float32), thick_slices


def crop_patch(sample: LesionSample, patch: int | None, rng: np.random.Generator,
               p_on_lesion: float) -> LesionSample:
    """A cubic ``patch`` of ``sample`` (after normalisation over the whole brain, as at
    inference), centred on a random lesion voxel with probability ``p_on_lesion`` when there
    are lesions, else on a random brain voxel."""
    if not patch:
        return sample
    lesion_voxels = np.argwhere(sample.mask[0])
    pool = (lesion_voxels if len(lesion_voxels) and rng.random() < p_on_lesion
            else np.argwhere(sample.brain))
    box, affine = random_cube(pool, sample.brain.shape, patch, rng, sample.affine)
    synthetic = None if sample.synthetic_flair is None else sample.synthetic_flair[box]
    return LesionSample(sample.image[(slice(None), *box)], sample.mask[(slice(None), *box)],
                        sample.brain[box], sample.present, affine, synthetic,
                        flair_thick=bool(sample.flair_thick))


def leave_out(sample: LesionSample, present: tuple[bool, bool]) -> LesionSample:
    """``sample`` with the contrasts not in ``present`` set to zeros (each channel is
    normalised on its own, so the kept ones are unchanged)."""
    image = sample.image.copy()
    image[~np.asarray(present)] = 0
    return replace(sample, image=image, present=present)


def normalise_channels(image: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Each present (non-zero) channel of ``(C, x, y, z)`` normalised inside ``brain``."""
    out = np.zeros_like(image, dtype=np.float32)
    for channel in range(image.shape[0]):
        if image[channel].any():
            out[channel] = normalise_in_mask(image[channel], brain)
    return out
