"""Synthetic white-matter lesions in synthetic heads: the training targets of lesion
segmentation.

Lesions are drawn on a head label map (1 mm grid, :data:`bids_dl.synth.labels.LABELS`) with
the shapes and places real white-matter hyperintensities and MS lesions take:

- ``periventricular``: caps and bands hugging the ventricles (flattened along the distance
  to the ventricles);
- ``deep``: ovoids in the deep white matter, long axis perpendicular to the ventricle wall
  (along the gradient of the distance to the ventricles, like Dawson's fingers);
- ``confluent``: large patches made of several overlapping periventricular blobs;
- ``juxtacortical``: small blobs in the white matter touching the cortex;
- ``infratentorial``: small ovoids in the brainstem and cerebellar white matter.

Each lesion is an ellipsoid roughened by smooth noise and clipped to the white matter; its
volume is drawn log-uniformly within its class's range (10 mm³ to 30 ml). A head gets 0 to
60 lesions; lesion-free heads are drawn on purpose, so that a model learns to say "none".

Lesion mimics that are not lesions: enlarged perivascular spaces
(:func:`simulate_perivascular_spaces`), thin CSF-filled tubes along the perforating arteries
in the basal ganglia and the white matter, dark on T1w like lesions but dark on FLAIR too;
and the choroid plexus (:func:`simulate_choroid_plexus`), grey-matter-like tissue inside the
lateral ventricles (the glomus in each atrium, a strand along the floor of the body, some of
the temporal horn), darker than white matter on T1w like a lesion and brighter than the CSF
around it on FLAIR: every real head has one, and the healthy Colin27 T1w showed it to be
the main false positive of a model trained without it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..utils.resample import smooth_noise
from .labels import HEAD_AFFINE, LABELS

LESION_CLASSES = ("periventricular", "deep", "confluent", "juxtacortical", "infratentorial")
CLASS_WEIGHTS = np.array([0.32, 0.3, 0.08, 0.15, 0.15])
#: Volume range (mm³) of one lesion of each class.
VOLUME_RANGE_MM3 = {"periventricular": (30.0, 4000.0), "deep": (10.0, 1500.0),
                    "confluent": (2000.0, 30000.0), "juxtacortical": (10.0, 400.0),
                    "infratentorial": (10.0, 600.0)}
MAX_LESIONS = 60
MIN_LESION_MM3 = 10
P_LESION_FREE = 0.15
#: Enlarged perivascular spaces (Wardlaw et al. 2013, STRIVE: round or linear, <= 3 mm
#: across, CSF-like in every contrast; basal ganglia and centrum semiovale).
PVS_DIAMETER_MM = (1.0, 3.0)
PVS_LENGTH_MM = (3.0, 15.0)
PVS_MAX_TILT_DEG = 30.0  # from the superior-inferior axis (the course of the perforators)
MAX_PVS = 40
#: Choroid plexus (a head has one with probability P_CHOROID_PLEXUS): glomus radii (mm) about
#: the atrium of each lateral ventricle (nominal centre |x|, y, z in the MNI-like head grid,
#: jittered by ATRIUM_JITTER_MM), a strand of CHOROID_STRAND_MM over the medial floor of the
#: body in front of it, CHOROID_THICKNESS_MM thick, and a random part of the temporal horn.
P_CHOROID_PLEXUS = 0.85
GLOMUS_RADIUS_MM = (2.5, 7.0)
ATRIUM_MM = (25.0, -40.0, 9.0)
ATRIUM_JITTER_MM = 3.0
CHOROID_STRAND_MM = (5.0, 35.0)
CHOROID_THICKNESS_MM = (1, 3)
CEREBRAL_WM = LABELS["cerebral_wm"]
GREY_MATTER = tuple(LABELS[name] for name in ("cortical_gm", "deep_gm", "cerebellar_gm"))
#: FLAIR lesion intensity: this range x white matter, and at least the matching point of
#: ``FLAIR_LESION_OVER_GREY`` x the brightest grey matter (see :func:`lesion_intensity`).
FLAIR_LESION_OVER_WM = (1.35, 2.0)
FLAIR_LESION_OVER_GREY = (1.1, 1.4)
#: T1w lesion intensity: this fraction of the way from white matter to CSF.
T1W_LESION_TOWARDS_CSF = (0.3, 0.75)
#: The lesion contrasts above, in words (model cards, evaluation metrics).
LESION_CONTRAST_TEXT = (
    f"FLAIR lesions {FLAIR_LESION_OVER_WM[0]}-{FLAIR_LESION_OVER_WM[1]} x WM and at least "
    f"{FLAIR_LESION_OVER_GREY[0]}-{FLAIR_LESION_OVER_GREY[1]} x the brightest grey matter")
INFRATENTORIAL_WM = (LABELS["cerebellar_wm"], LABELS["brainstem"])


@dataclass
class LesionAnatomy:
    """Where lesions can go in one head label map (voxel indices on its 1 mm grid):
    ``allowed`` white matter, the distance to the ventricles (mm) and its gradient, and
    candidate lesion centres of each class (``(n, 3)`` int arrays)."""

    allowed: np.ndarray
    ventricle_distance: np.ndarray
    ventricle_gradient: np.ndarray
    candidates: dict[str, np.ndarray]

    @classmethod
    def from_labels(cls, labels: np.ndarray, stride: int = 2) -> LesionAnatomy:
        """Analyse ``labels`` (uint8 head label map). ``stride`` thins the candidate lists."""
        cerebral = labels == CEREBRAL_WM
        infratentorial = np.isin(labels, INFRATENTORIAL_WM)
        ventricle_distance = ndimage.distance_transform_edt(
            labels != LABELS["ventricles"]).astype(np.float32)
        cortex_distance = ndimage.distance_transform_edt(
            labels != LABELS["cortical_gm"]).astype(np.float32)
        gradient = np.stack(np.gradient(ndimage.gaussian_filter(ventricle_distance, 1.5)))
        thin = np.zeros(labels.shape, bool)
        thin[::stride, ::stride, ::stride] = True
        classes = {
            "periventricular": cerebral & (ventricle_distance <= 4) & (ventricle_distance > 1),
            "deep": cerebral & (ventricle_distance > 6) & (ventricle_distance < 25)
            & (cortex_distance > 4),
            "confluent": cerebral & (ventricle_distance <= 8) & (ventricle_distance > 1),
            "juxtacortical": cerebral & (cortex_distance <= 2),
            "infratentorial": infratentorial & (ndimage.binary_erosion(infratentorial, None, 2)),
        }
        candidates = {name: np.argwhere(mask & thin).astype(np.int32)
                      for name, mask in classes.items()}
        return cls(cerebral | infratentorial, ventricle_distance,
                   gradient.astype(np.float32), candidates)


def _rotation_to(axis: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix whose first column is ``axis`` (unit), the others random."""
    axis = axis / max(float(np.linalg.norm(axis)), 1e-6)
    helper = rng.standard_normal(3)
    second = helper - helper.dot(axis) * axis
    second /= max(float(np.linalg.norm(second)), 1e-6)
    return np.stack([axis, second, np.cross(axis, second)], axis=1)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


def _blob(anatomy: LesionAnatomy, centre: np.ndarray, volume: float, kind: str,
          rng: np.random.Generator) -> tuple[tuple[slice, ...], np.ndarray]:
    """One lesion around ``centre`` (voxel): a noisy ellipsoid of about ``volume`` mm³,
    oriented by class, clipped to the white matter. Returns the box and its mask."""
    gradient = anatomy.ventricle_gradient[(slice(None), *centre)]
    if kind == "deep":  # long axis perpendicular to the ventricle wall
        elongation = rng.uniform(1.5, 3.0)
        radii = np.array([elongation, 1.0, 1.0])
        rotation = _rotation_to(gradient, rng)
    elif kind in ("periventricular", "confluent"):  # flat along the wall
        flatness = rng.uniform(1.5, 3.0)
        radii = np.array([1.0 / flatness, 1.0, rng.uniform(1.0, 2.0)])
        rotation = _rotation_to(gradient, rng)
    else:
        radii = rng.uniform(0.7, 1.4, 3)
        rotation = _random_rotation(rng)
    radii = radii * (3 * volume / (4 * np.pi * radii.prod())) ** (1 / 3)
    half = int(np.ceil(radii.max() * 1.5)) + 2
    shape = anatomy.allowed.shape
    low = np.maximum(centre - half, 0)
    high = np.minimum(centre + half + 1, shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(low, high))
    grid = np.indices(tuple(high - low), dtype=np.float32).reshape(3, -1)
    offsets = grid - (centre - low)[:, None]
    local = rotation.T @ offsets / radii[:, None]
    distance = np.sqrt((local**2).sum(0)).reshape(tuple(high - low))
    roughness = rng.uniform(0.1, 0.4)
    noise = smooth_noise(distance.shape, rng, tuple(max(2, s // 4) for s in distance.shape))
    inside = (distance + roughness * noise < 1.0) & anatomy.allowed[box]
    labels, count = ndimage.label(inside)
    here = tuple(centre - low)
    if count > 1 and labels[here]:
        inside = labels == labels[here]
    return box, inside


def simulate_lesions(anatomy: LesionAnatomy, rng: np.random.Generator,
                     count: int | None = None) -> np.ndarray:
    """A lesion mask (uint8, the label map's grid) with ``count`` lesions (default: none
    with probability :data:`P_LESION_FREE`, else 1-60, mostly few)."""
    if count is None:
        free = rng.random() < P_LESION_FREE
        count = 0 if free else min(MAX_LESIONS, 1 + int(rng.exponential(10)))
    mask = np.zeros(anatomy.allowed.shape, np.uint8)
    weights = CLASS_WEIGHTS / CLASS_WEIGHTS.sum()
    for _ in range(count):
        kind = LESION_CLASSES[int(rng.choice(len(LESION_CLASSES), p=weights))]
        pool = anatomy.candidates[kind]
        if not len(pool):
            continue
        low, high = VOLUME_RANGE_MM3[kind]
        volume = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        centre = pool[int(rng.integers(len(pool)))]
        parts = 1 if kind != "confluent" else int(rng.integers(3, 8))
        for _ in range(parts):
            jitter = rng.normal(0, 4, 3).round().astype(int) if parts > 1 else 0
            here = np.clip(centre + jitter, 0, np.array(mask.shape) - 1)
            if not anatomy.allowed[tuple(here)]:
                here = centre
            box, blob = _blob(anatomy, here, volume / parts, kind, rng)
            mask[box] |= blob.astype(np.uint8)
    return remove_small_lesions(mask, MIN_LESION_MM3)


def simulate_perivascular_spaces(labels: np.ndarray, rng: np.random.Generator,
                                 count: int | None = None,
                                 avoid: np.ndarray | None = None) -> np.ndarray:
    """Enlarged perivascular spaces of one head (bool mask on the 1 mm label grid of
    ``labels``): ``count`` tubes (default: none in half of the heads, else 1-40, mostly
    few) of :data:`PVS_DIAMETER_MM` across and :data:`PVS_LENGTH_MM` long, running within
    :data:`PVS_MAX_TILT_DEG` of the superior-inferior axis, centred in the deep grey matter
    or the cerebral white matter and clipped to them, never inside ``avoid`` (the lesions)."""
    if count is None:
        count = 0 if rng.random() < 0.5 else min(MAX_PVS, 1 + int(rng.exponential(8)))
    mask = np.zeros(labels.shape, bool)
    if not count:
        return mask
    tissue = np.isin(labels, (LABELS["deep_gm"], CEREBRAL_WM))
    if avoid is not None:
        tissue &= ~avoid.astype(bool)
    centres = np.argwhere(tissue[::2, ::2, ::2]) * 2
    if not len(centres):
        return mask
    for _ in range(count):
        centre = centres[int(rng.integers(len(centres)))]
        radius = rng.uniform(*PVS_DIAMETER_MM) / 2
        half_length = rng.uniform(*PVS_LENGTH_MM) / 2
        tilt = np.deg2rad(rng.uniform(0, PVS_MAX_TILT_DEG))
        turn = rng.uniform(0, 2 * np.pi)
        axis = np.array([np.sin(tilt) * np.cos(turn), np.sin(tilt) * np.sin(turn),
                         np.cos(tilt)])
        half = int(np.ceil(half_length + radius)) + 1
        low = np.maximum(centre - half, 0)
        high = np.minimum(centre + half + 1, labels.shape)
        box = tuple(slice(int(a), int(b)) for a, b in zip(low, high))
        offsets = np.indices(tuple(high - low), dtype=np.float32).reshape(3, -1) - (
            centre - low)[:, None]
        along = np.clip(axis @ offsets, -half_length, half_length)
        across = np.linalg.norm(offsets - axis[:, None] * along, axis=0)
        mask[box] |= (across <= radius).reshape(tuple(high - low)) & tissue[box]
    return mask


def with_perivascular_spaces(labels: np.ndarray, spaces: np.ndarray) -> np.ndarray:
    """``labels`` with the ``spaces`` (:func:`simulate_perivascular_spaces`) labelled as CSF
    (``sulcal_csf``), so that every contrast renders them CSF-like."""
    if not spaces.any():
        return labels
    return np.where(spaces, np.uint8(LABELS["sulcal_csf"]), labels).astype(labels.dtype)


def simulate_choroid_plexus(labels: np.ndarray, rng: np.random.Generator,
                            present: bool | None = None,
                            affine: np.ndarray = HEAD_AFFINE) -> np.ndarray:
    """The choroid plexus of one head (bool mask inside the ventricles of ``labels``, the 1 mm
    head grid ``affine``, MNI-like world mm; none when ``present`` is False, default: drawn
    with probability :data:`P_CHOROID_PLEXUS`): in each lateral ventricle (off the midline,
    above the fourth ventricle) an ellipsoidal glomus about the atrium, a strand over the
    medial half of the floor of the body in front of it, and a random 20-60 % of the
    temporal horn's voxels (each drawn on its own; where the map has a temporal horn)."""
    if present is None:
        present = rng.random() < P_CHOROID_PLEXUS
    ventricles = labels == LABELS["ventricles"]
    mask = np.zeros(labels.shape, bool)
    if not present or not ventricles.any():
        return mask
    voxels = np.argwhere(ventricles)
    world = voxels @ affine[:3, :3].T + affine[:3, 3]
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(0))
    for side in (-1.0, 1.0):
        lateral = (world[:, 0] * side > 3.0) & (world[:, 2] > -5.0)
        if not lateral.any():
            continue
        points, where = world[lateral], voxels[lateral]
        target = np.array([side * ATRIUM_MM[0], *ATRIUM_MM[1:]]) + rng.normal(
            0, ATRIUM_JITTER_MM, 3)
        centre = points[int(np.argmin(np.linalg.norm(points - target, axis=1)))]
        radii = rng.uniform(*GLOMUS_RADIUS_MM, 3)
        glomus = (((points - centre) / radii) ** 2).sum(1) <= 1.0
        mask[tuple(where[glomus].T)] = True
        # strand: ventricle voxels within `thickness` mm of the floor, medial half of the body
        thickness = int(rng.integers(CHOROID_THICKNESS_MM[0], CHOROID_THICKNESS_MM[1] + 1))
        steps = max(1, int(round(thickness / zooms[2])))
        below = where[:, None, :] - np.array([0, 0, 1]) * np.arange(1, steps + 1)[:, None]
        inside = np.clip(below, 0, np.array(labels.shape) - 1)
        on_floor = ~ventricles[tuple(np.moveaxis(inside, -1, 0))].all(1)
        length = rng.uniform(*CHOROID_STRAND_MM)
        body = on_floor & (points[:, 1] >= centre[1]) & (points[:, 1] <= centre[1] + length) & (
            points[:, 2] > centre[2] - 5.0)
        for y in np.unique(points[body, 1]):
            here = body & (points[:, 1] == y)
            medial = np.abs(points[:, 0]) <= np.median(np.abs(points[here, 0]))
            mask[tuple(where[here & medial].T)] = True
        temporal = (world[:, 0] * side > 18.0) & (world[:, 2] <= -5.0) & (world[:, 2] > -35.0) & (
            world[:, 1] > -45.0) & (world[:, 1] < 5.0)
        if temporal.any():
            fill = rng.uniform(0.2, 0.6)
            noise = rng.random(int(temporal.sum()))
            mask[tuple(voxels[temporal][noise < fill].T)] = True
    return mask


def with_choroid_plexus(labels: np.ndarray, plexus: np.ndarray) -> np.ndarray:
    """``labels`` with the ``plexus`` (:func:`simulate_choroid_plexus`) labelled as deep grey
    matter (``deep_gm``), so that every contrast renders it grey-matter-like; it is no longer
    a ventricle target either."""
    if not plexus.any():
        return labels
    return np.where(plexus, np.uint8(LABELS["deep_gm"]), labels).astype(labels.dtype)


def remove_small_lesions(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    """``mask`` without 26-connected components smaller than ``min_voxels``."""
    labels, count = ndimage.label(mask, np.ones((3, 3, 3)))
    if not count:
        return mask
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[labels].astype(np.uint8)


def paint_lesions(rendered: np.ndarray, lesions: np.ndarray, intensity: float,
                  rng: np.random.Generator) -> np.ndarray:
    """``rendered`` (label means on the label grid) with the binary ``lesions`` painted in at
    ``intensity``: soft edges (partial volume) and a slowly varying texture inside."""
    if not lesions.any():
        return rendered
    fraction = ndimage.gaussian_filter(lesions.astype(np.float32), 0.7)
    return paint_lesion_fraction(rendered, fraction, intensity, rng)


def paint_lesion_fraction(rendered: np.ndarray, fraction: np.ndarray, intensity: float,
                          rng: np.random.Generator) -> np.ndarray:
    """``rendered`` mixed with lesion tissue of ``intensity`` (times a slowly varying
    texture) by the lesion partial-volume ``fraction`` (0-1, same grid)."""
    texture = 1.0 + 0.08 * smooth_noise(rendered.shape, rng, 24)
    return rendered * (1 - fraction) + intensity * texture * fraction


def lesion_intensity(contrast: str, means: np.ndarray, rng: np.random.Generator) -> float:
    """Mean lesion intensity for one image, from its label means, in the ordering each
    contrast has: FLAIR brighter than white matter and than the cortex, PD brighter than
    white matter, T1w darker than white matter (but brighter than CSF), T2w between white
    matter and CSF; ``random``: anything.

    FLAIR: 1.35-2.0 x WM and at least 1.1-1.4 x the brightest grey matter (cortical,
    deep, cerebellar; one draw sets both factors, the stronger lesions brighter against
    both). White-matter hyperintensities are by definition hyperintense on FLAIR against
    normal brain, grey matter included (STRIVE, Wardlaw et al. 2013; LST's lesion growth
    finds them as FLAIR outliers of every T1w tissue class, Schmidt et al. 2012); the
    contrast families let cortical GM reach 1.9 x WM on FLAIR, where a lesion drawn against
    WM alone could be darker than the cortex beside it."""
    wm, csf = float(means[CEREBRAL_WM]), float(means[LABELS["ventricles"]])
    if contrast == "FLAIR":
        factor = rng.uniform(*FLAIR_LESION_OVER_WM)
        (low, high), (grey_low, grey_high) = FLAIR_LESION_OVER_WM, FLAIR_LESION_OVER_GREY
        span, grey_span = round(high - low, 9), round(grey_high - grey_low, 9)
        over_grey = grey_low + grey_span * (factor - low) / span
        grey = float(means[list(GREY_MATTER)].max())
        return min(1.0, max(wm * factor, grey * over_grey))
    if contrast == "T1w":
        return wm - rng.uniform(*T1W_LESION_TOWARDS_CSF) * (wm - csf)
    if contrast == "T2w":
        return wm + rng.uniform(0.45, 0.9) * (csf - wm)
    if contrast == "PD":
        return min(1.0, wm * rng.uniform(1.1, 1.35))
    return float(rng.uniform(0, 1))


class HeadsWithLesions:
    """Head label maps (uint8, :data:`~bids_dl.synth.labels.HEAD_AFFINE` grid) with their
    brain centres (world mm) and, built on first use, their lesion anatomies: the base of
    the generators that simulate lesions."""

    def __init__(self, label_maps: list[np.ndarray]):
        from .generator import brain_centre
        from .labels import brain_mask

        if not label_maps:
            raise ValueError("no label maps given")
        self.label_maps = label_maps
        self.centres = [brain_centre(brain_mask(labels).astype(np.float32))
                        for labels in label_maps]
        self._anatomies: dict[int, LesionAnatomy] = {}

    def anatomy(self, index: int) -> LesionAnatomy:
        if index not in self._anatomies:
            self._anatomies[index] = LesionAnatomy.from_labels(self.label_maps[index])
        return self._anatomies[index]

    def on_grid(self, index: int, rng: np.random.Generator, geometry,
                lesion_count: int | None = None, perivascular: bool = False,
                choroid_plexus: bool = False,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Head ``index`` with fresh lesions under one random geometry
        (:class:`~bids_dl.synth.generator.GeneratorConfig`), resampled once onto the model
        grid: labels (nearest neighbour, uint8), the lesions' partial-volume fraction
        (float32, 0-1) and the grid's voxel-to-world affine. ``perivascular``: enlarged
        perivascular spaces drawn too (:func:`simulate_perivascular_spaces`), labelled as
        CSF (``sulcal_csf``) and so rendered CSF-like in every contrast; never lesions.
        ``choroid_plexus``: a choroid plexus drawn (in most heads,
        :func:`simulate_choroid_plexus`), labelled as deep grey matter."""
        from .generator import sample_coordinates

        labels = self.label_maps[index]
        lesions = simulate_lesions(self.anatomy(index), rng, lesion_count)
        if perivascular:
            labels = with_perivascular_spaces(
                labels, simulate_perivascular_spaces(labels, rng, avoid=lesions))
        if choroid_plexus:
            labels = with_choroid_plexus(labels, simulate_choroid_plexus(labels, rng))
        coordinates, affine = sample_coordinates(labels.shape, self.centres[index], rng,
                                                 geometry)
        grid_labels = ndimage.map_coordinates(labels, coordinates, order=0, prefilter=False)
        fraction = (ndimage.map_coordinates(lesions.astype(np.float32), coordinates, order=1,
                                            prefilter=False) if lesions.any()
                    else np.zeros(grid_labels.shape, np.float32))
        return grid_labels, fraction, affine
