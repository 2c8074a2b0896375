"""Paired training samples for contrast synthesis: one synthetic head (with or without
lesions) rendered through the physics of several acquisitions (:mod:`bids_dl.synth.physics`)
on one geometry, so source and targets match voxel for voxel.

Source: a T1w (MPRAGE or SPGR, random parameters at 1.5 or 3 T) with everything a real scan
has (texture, bias field, resolution, noise, gamma), normalised inside the brain as at
inference. Targets: the same head's clean FLAIR and T2w of the reference protocols (the middle
of each parameter range of :data:`~bids_dl.synth.physics.SEQUENCES`, at 3 T whatever the
source's field) on the source's
white-matter scale (white matter = 1) and its reference CT (the middle of each tissue's HU
range) in Hounsfield units / 1000, all without bias or noise: the model learns one
well-defined image per target. The head's own tissue T1, T2 and PD (jittered around the
literature values) are shared by the source and the targets. Every tissue shares one
microtexture field across the contrasts, so texture is paired too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..models.grid import LESION_SHAPE, LESION_SPACING, normalise_in_mask
from ..utils.resample import smooth_noise
from .generator import (
    GeneratorConfig,
    add_noise,
    degrade_resolution,
    random_cube,
)
from .labels import LABELS, N_LABELS, brain_mask
from .lesions import HeadsWithLesions
from .physics import (
    REFERENCE_FIELD_T,
    TissueProperties,
    at_field,
    contrast_means,
    hounsfield_units,
    tissue_properties,
)

#: Targets of the synthesis model, in output-channel order.
TARGETS = ("FLAIR", "T2w", "CT")
HU_SCALE = 1000.0  # CT targets are HU / HU_SCALE
MAX_RELATIVE = 4.0  # MR targets clipped to 0-4 x white matter
#: Tissue classes of the mixture the synthesis model predicts: every label, then lesions.
N_TISSUE_CLASSES = N_LABELS + 1
PARTIAL_VOLUME_SIGMA = 0.5  # voxels: the blur of label edges on the rendered images


@dataclass
class PairConfig:
    """Ranges of the paired samples (grid in mm)."""

    geometry: GeneratorConfig = field(default_factory=lambda: GeneratorConfig(
        out_shape=LESION_SHAPE, spacing=LESION_SPACING, max_rotation=20.0, max_shift=8.0,
        max_warp=2.0, max_bias=0.35, max_noise=0.05, p_thick_slices=0.2))
    p_lesions: float = 0.5
    #: Targets rendered with the reference protocols (FLAIR, T2w: the middle of each
    #: parameter range; CT: the middle of each tissue's HU range), so the model has one
    #: well-defined output; False: random protocols like the source (not predictable from it)
    reference_targets: bool = True
    #: Field strength (T) of the reference targets (the same head's tissues there); None:
    #: the source's own field (1.5 or 3 T, which the T1w shows only faintly)
    target_field_t: float | None = REFERENCE_FIELD_T
    texture: float = 0.04  # relative amplitude of the shared tissue microtexture
    patch: int | None = None  # cubic patches of this many voxels (None: whole grid)
    #: Chance that a patch of a head with lesions is centred on a lesion voxel (lesions
    #: fill < 1 % of the brain: a mixture trained on brain-centred patches drops them)
    p_patch_on_lesion: float = 0.0


@dataclass
class PairSample:
    """``source`` (float32 ``(1, x, y, z)``, normalised T1w), ``targets`` (float32
    ``(3, x, y, z)``: FLAIR, T2w relative to white matter; CT in HU/1000), ``brain`` and
    ``head`` (uint8), ``lesions`` (uint8), ``affine`` (grid voxel -> label-map mm),
    ``labels`` (uint8, the head's labels on the grid) and ``lesion_fraction`` (0-1)."""

    source: np.ndarray
    targets: np.ndarray
    brain: np.ndarray
    head: np.ndarray
    lesions: np.ndarray
    affine: np.ndarray
    labels: np.ndarray
    lesion_fraction: np.ndarray

    @property
    def image(self) -> np.ndarray:  # the training interface (BatchStream) reads these two
        return self.source

    @property
    def mask(self) -> np.ndarray:
        """Training targets ``(3 + N_TISSUE_CLASSES, x, y, z)``: the images, then the tissue
        fractions (:func:`tissue_fractions`)."""
        fractions = tissue_fractions(self.labels, self.lesion_fraction)
        return np.concatenate([self.targets, fractions]).astype(np.float32)


def tissue_fractions(labels: np.ndarray, lesion_fraction: np.ndarray) -> np.ndarray:
    """Partial-volume fraction of every tissue class per voxel, ``(N_TISSUE_CLASSES, x, y,
    z)`` float32 summing to 1: each label's indicator blurred as the rendered images' edges
    are (:data:`PARTIAL_VOLUME_SIGMA`), lesions mixed in by their fraction (last class). The
    rendered clean image is exactly these fractions weighted by the tissues' values."""
    lesion_fraction = np.asarray(lesion_fraction, np.float32)
    out = np.empty((N_TISSUE_CLASSES, *labels.shape), np.float32)
    for label in range(N_LABELS):
        indicator = (labels == label).astype(np.float32)
        if indicator.any():
            ndimage.gaussian_filter(indicator, PARTIAL_VOLUME_SIGMA, output=out[label])
        else:
            out[label] = 0.0
    out[:N_LABELS] *= 1 - lesion_fraction
    out[N_LABELS] = lesion_fraction
    return out


@dataclass
class HeadDraw:
    """One random head of :class:`PairedHeads` on the model grid: ``labels`` (uint8), the
    lesions' partial-volume ``lesion_fraction`` (float32, 0-1), ``affine`` (grid voxel ->
    label-map mm), the microtexture shared by every contrast (``texture``, float32 around 1)
    and the head's own ``tissues`` (T1, T2, PD jittered around the tables)."""

    labels: np.ndarray
    lesion_fraction: np.ndarray
    affine: np.ndarray
    texture: np.ndarray
    tissues: TissueProperties


class PairedHeads(HeadsWithLesions):
    """Renders paired samples from head label maps (uint8, :data:`HEAD_AFFINE` grid)."""

    def __init__(self, label_maps: list[np.ndarray], config: PairConfig | None = None):
        super().__init__(label_maps)
        self.config = config or PairConfig()

    sample_type = PairSample

    def crop(self, sample: PairSample, patch: int, rng: np.random.Generator) -> PairSample:
        """A training patch of a whole-grid ``sample``, centred on a random lesion voxel at
        the configured rate, else on a random brain voxel."""
        return crop_pair(sample, patch, rng, self.config.p_patch_on_lesion)

    def sample(self, seed, label_map: int | None = None,
               lesion_count: int | None = None) -> PairSample:
        """One paired sample, a pure function of ``seed`` (and the optional fixed choices)."""
        return self.samples(seed, 1, label_map, lesion_count)[0]

    def samples(self, seed, patches: int = 1, label_map: int | None = None,
                lesion_count: int | None = None) -> list[PairSample]:
        """``patches`` cubic patches cut from one rendered head (the whole grid once when
        ``config.patch`` is None); a pure function of its arguments."""
        rng = np.random.default_rng(seed)
        config = self.config
        draw = self.draw_head(rng, label_map, lesion_count)
        source_means = contrast_means("T1w", draw.tissues, rng)
        source = self._clean(draw.labels, draw.lesion_fraction, source_means.labels,
                             source_means.lesion)
        source = self._acquire(source * draw.texture, rng)
        target_rng = None if config.reference_targets else rng
        targets = [self.render_target(draw, target, rng=target_rng) for target in TARGETS]
        brain = brain_mask(draw.labels)
        sample = PairSample(normalise_in_mask(source, brain)[None], np.stack(targets),
                            brain.astype(np.uint8),
                            (draw.labels != LABELS["background"]).astype(np.uint8),
                            (draw.lesion_fraction >= 0.5).astype(np.uint8), draw.affine,
                            draw.labels.astype(np.uint8),
                            draw.lesion_fraction.astype(np.float32))
        if not config.patch:
            return [sample]
        return [crop_pair(sample, config.patch, rng, config.p_patch_on_lesion)
                for _ in range(patches)]

    def draw_head(self, rng: np.random.Generator, label_map: int | None = None,
                  lesion_count: int | None = None) -> HeadDraw:
        """The random head every image of one sample is rendered from (the first draws
        of ``rng`` in :meth:`samples`)."""
        config = self.config
        index = int(rng.integers(len(self.label_maps))) if label_map is None else label_map
        if lesion_count is None and rng.random() >= config.p_lesions:
            lesion_count = 0
        grid_labels, fraction, affine = self.on_grid(index, rng, config.geometry,
                                                     lesion_count)
        texture = 1.0 + config.texture * smooth_noise(config.geometry.out_shape, rng, 24)
        return HeadDraw(grid_labels, fraction, affine, texture.astype(np.float32),
                        tissue_properties(rng))

    def target_tissues(self, draw: HeadDraw) -> TissueProperties:
        """The head's tissues as the targets see them (at the reference field)."""
        config = self.config
        if config.reference_targets and config.target_field_t:
            return at_field(draw.tissues, config.target_field_t)
        return draw.tissues

    def render_target(self, draw: HeadDraw, target: str,
                      tissues: TissueProperties | None = None,
                      rng: np.random.Generator | None = None,
                      textured: bool = True) -> np.ndarray:
        """One clean target of ``draw`` (float32 on the grid): FLAIR or T2w relative to white
        matter (the reference protocol when ``rng`` is None) with the head's tissues (or
        ``tissues``) and its texture (unless ``textured`` is False); CT in HU / 1000."""
        if target == "CT":
            hounsfield, lesion_hu = hounsfield_units(rng)
            clean = self._clean(draw.labels, draw.lesion_fraction, hounsfield, lesion_hu)
            return (clean / HU_SCALE).astype(np.float32)
        tissues = self.target_tissues(draw) if tissues is None else tissues
        means = contrast_means(target, tissues, rng)
        clean = self._clean(draw.labels, draw.lesion_fraction, means.labels, means.lesion)
        return np.clip(clean * draw.texture if textured else clean, 0.0,
                       MAX_RELATIVE).astype(np.float32)

    @staticmethod
    def _clean(grid_labels: np.ndarray, lesion_fraction: np.ndarray, label_values: np.ndarray,
               lesion_value: float) -> np.ndarray:
        """Label values on the grid, partial volume at tissue edges, lesions mixed in."""
        image = ndimage.gaussian_filter(np.asarray(label_values, np.float32)[grid_labels], 0.5)
        return image * (1 - lesion_fraction) + lesion_value * lesion_fraction

    def _acquire(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The source's acquisition: bias field, resolution, noise and gamma."""
        geometry = self.config.geometry
        shape = geometry.out_shape
        image = image * np.exp(rng.uniform(0, geometry.max_bias) * smooth_noise(shape, rng, 4))
        image = degrade_resolution(image, rng, geometry)
        image = add_noise(image / max(float(image.max()), 1e-6), rng, geometry)
        return (np.clip(image, 0, None) ** np.exp(rng.uniform(-0.2, 0.2))).astype(np.float32)


def crop_pair(sample: PairSample, patch: int | None, rng: np.random.Generator,
              p_on_lesion: float = 0.0) -> PairSample:
    """A cubic ``patch`` of ``sample`` (after normalisation over the whole brain, as at
    inference) centred on a random lesion voxel with probability ``p_on_lesion`` when the
    sample has lesions, else on a random brain voxel (no extra random draw when
    ``p_on_lesion`` is 0: the patches of older runs are unchanged)."""
    if not patch:
        return sample
    candidates = np.argwhere(sample.brain)
    if p_on_lesion > 0 and sample.lesions.any() and rng.random() < p_on_lesion:
        candidates = np.argwhere(sample.lesions)
    box, affine = random_cube(candidates, sample.brain.shape, patch, rng, sample.affine)
    return PairSample(sample.source[(slice(None), *box)], sample.targets[(slice(None), *box)],
                      sample.brain[box], sample.head[box], sample.lesions[box], affine,
                      sample.labels[box], sample.lesion_fraction[box])
