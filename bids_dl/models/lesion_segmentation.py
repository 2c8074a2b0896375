"""Lesion segmentation: white-matter lesions from FLAIR + T1w, FLAIR alone or T1w alone.

Path: load the images -> (both) rigid registration of the T1w to the FLAIR in world space ->
brain mask of the reference image (FLAIR, else T1w) by the brain-extraction model -> the
shared engine's grid (1.5 mm, centred on the brain) -> per-channel normalisation inside the
brain -> one U-Net (a missing contrast is a channel of zeros; averaged with its output for the
left-right mirrored input) -> lesion probability restricted
to the brain, resampled onto the reference grid -> mask and per-lesion table (volume, centroid,
probabilities, location from the model's ventricle, cortex and infratentorial outputs).
A FLAIR synthesised from the T1w is not registered; it is read by the model the card names
for that case (:func:`synthetic_flair_reader`: one model per input case, or the same model),
as that model's card says (:data:`SYNTHETIC_FLAIR_READINGS`: by default the mean of the U-Net's
outputs with and without it).
"""

from __future__ import annotations

import csv
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..utils.io import (
    InputImageError,
    atomic_path,
    derived_image,
    load_volume,
    probability_image,
    write_images_atomically,
)
from ..utils.resample import resample_to_grid
from .engine import GridSpec, InferenceEngine, brain_grid
from .grid import LESION_SPACING, lesion_grid_shape, normalise_in_mask

TASK = "lesion-segmentation"
THRESHOLD = 0.5  # without a calibrated threshold in the model card
#: The input combinations the model takes (a card calibrates a threshold for each).
INPUT_SETS = ("FLAIR+T1w", "FLAIR", "T1w")
#: A FLAIR synthesised from the T1w (``--synthesize-missing``) with that T1w: its own
#: calibrated threshold and way of reading the probability (:data:`SYNTHETIC_FLAIR_READINGS`).
SYNTHETIC_FLAIR_SET = "synthetic FLAIR+T1w"
#: How a synthetic FLAIR + T1w is read, by the card's ``"synthetic_flair_reading"``
#: (:func:`card_synthetic_reading`). ``mean`` (the default): a synthetic FLAIR carries no
#: information the T1w lacks, and a model trained on acquired FLAIRs trusts it too much, so
#: its reading is averaged with the T1w-alone one (6 held-out heads, session 14: Dice 0.681
#: against 0.622 for the FLAIR + T1w reading and 0.640 for the T1w alone; acquired 0.855).
#: ``joint``: the FLAIR + T1w reading alone, for a model trained with synthetic FLAIRs among
#: its inputs (``bids-dl-train lesion-segmentation --synthetic-flair P``); one tile pass.
SYNTHETIC_FLAIR_READINGS = {
    "mean": ("mean of the lesion model's probabilities for the synthetic FLAIR + T1w and for "
             "the T1w alone"),
    "joint": ("the lesion model's probability for the synthetic FLAIR + T1w (a model trained "
              "with synthetic FLAIRs among its inputs)"),
}
DEFAULT_SYNTHETIC_READING = "mean"
#: The registry entry of a separate model for :data:`SYNTHETIC_FLAIR_SET`, used where the lesion
#: card names it (``"synthetic_flair_model"``: its file and sha256)
SYNTHETIC_FLAIR_MODEL = "lesion-segmentation-synthetic-flair"
MIN_LESION_MM3 = 10.0
TILE = 64  # the model was trained on 64³ patches of the 1.5 mm grid: it runs on such tiles
TILE_OVERLAP = 0.05  # tiles over the brain's box overlap by >= 4 voxels: 2 per axis for
# brains up to 186 mm long (8 tiles instead of 12 at 0.25 over the whole grid; held-out Dice
# within the spread that moving the tiles alone gives)
#: Test-time mirroring: the lesion model's outputs are averaged with those for the
#: left-right mirrored input (held-out FLAIR + T1w Dice 0.777 -> 0.797 and lesion-free heads
#: with mimics 0.26 -> 0.03 ml for the session-9 model; the tiles take twice as long). The
#: card's thresholds are calibrated through this same path.
MIRROR = True
PERIVENTRICULAR_MM = 3.0  # a lesion this close to the ventricles is periventricular
JUXTACORTICAL_MM = 1.5  # ... this close to the cortex, juxtacortical (at least one voxel:
# on thick slices, touching through the slices is one slice thickness away)
#: A lesion is infratentorial when most of it and its surroundings up to this distance lie in
#: the infratentorial brain: the model's infratentorial output fades inside a lesion and a few
#: mm around it (half of the infratentorial lesions of 12 validation heads were read as
#: supratentorial from their own voxels alone; 1 of 25 with 5 mm of surroundings, and no
#: supratentorial lesion read as infratentorial either way; development log, session 26)
INFRATENTORIAL_SURROUNDINGS_MM = 5.0
#: Location classes of the per-lesion table (:func:`lesion_table` says how each is decided).
LOCATIONS = ("periventricular", "juxtacortical", "infratentorial", "deep")
THICK_SLICE_MM = 7.0  # thicker slices: a warning (small lesions are missed)
TABLE_COLUMNS = ("lesion_id", "volume_mm3", "centroid_x_mm", "centroid_y_mm", "centroid_z_mm",
                 "peak_probability", "mean_probability", "location")
_SUBJECT = re.compile(r"(?:^|_)sub-([A-Za-z0-9]+)")


@dataclass
class LesionResult:
    """Outputs on the reference grid (the FLAIR's, or the T1w's when alone): ``mask``
    (uint8), ``probseg`` (0-1), ``lesions`` (table rows), ``measures``, the inputs used, the
    T1w-to-FLAIR registration (4x4, RAS mm), the threshold used and warnings."""

    mask: nib.Nifti1Image
    probseg: nib.Nifti1Image
    lesions: list[dict]
    measures: dict
    inputs: dict[str, str]
    registration: list[list[float]] | None
    device: str
    model: dict
    threshold: float = THRESHOLD
    min_peak: float = 0.0  # lesions whose peak probability is below it were dropped
    warnings: list[str] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    reading: str | None = None  # how the probability was made, when not one model pass

    def write(self, out_prefix: str | os.PathLike) -> list[Path]:
        """``<prefix>_mask.nii.gz``, ``_probseg.nii.gz`` and ``_lesions.tsv`` (all or none)."""
        prefix = str(out_prefix)
        table = Path(f"{prefix}_lesions.tsv")
        with atomic_path(table) as tmp:
            write_lesion_table(self.lesions, Path(tmp))
            written = write_images_atomically({Path(f"{prefix}_mask.nii.gz"): self.mask,
                                               Path(f"{prefix}_probseg.nii.gz"): self.probseg})
        return [*written, table]


def write_lesion_table(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, TABLE_COLUMNS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _subject(path: str | os.PathLike) -> str | None:
    found = _SUBJECT.search(Path(path).name)
    return found.group(1) if found else None


def check_pair(flair: str | os.PathLike, t1w: str | os.PathLike) -> None:
    """FLAIR and T1w named for different BIDS participants are an error."""
    a, b = _subject(flair), _subject(t1w)
    if a and b and a != b:
        raise InputImageError(f"{flair} (sub-{a}) and {t1w} (sub-{b}): the FLAIR and the "
                              "T1w belong to different participants")


#: ``box -> (ventricles, cortex, infratentorial)`` boolean masks of a native-grid box (slices).
StructureSource = Callable[[tuple[slice, ...]], tuple[np.ndarray, np.ndarray, np.ndarray]]


def lesion_table(probability: np.ndarray, mask: np.ndarray, affine: np.ndarray,
                 ventricles: np.ndarray | None = None, cortex: np.ndarray | None = None,
                 infratentorial: np.ndarray | None = None,
                 structures: StructureSource | None = None,
                 infratentorial_surroundings_mm: float = INFRATENTORIAL_SURROUNDINGS_MM,
                 ) -> list[dict]:
    """One row per 26-connected lesion of ``mask`` (native grid, ``affine``): volume (mm³),
    centroid (world mm), peak and mean probability, and location: ``infratentorial`` (the
    lesion with its surroundings up to ``infratentorial_surroundings_mm``, at least one
    voxel, mostly in the infratentorial brain; 0: the lesion's own voxels, for true
    anatomy, whose labels lesions do not replace), ``periventricular`` (within 3 mm of the
    ventricles), ``juxtacortical`` (within 1.5 mm of the cortex; both at least one voxel) or
    ``deep``.

    The structures come as whole native-grid masks or as ``structures``, which gives them
    for a box: they are only needed (and distances only computed) in each lesion's bounding
    box grown by the largest distance that decides a class, which gives the same classes."""
    labels, count = ndimage.label(mask, np.ones((3, 3, 3)))
    if not count:
        return []
    if structures is None:
        def structures(box):
            return ventricles[box], cortex[box], infratentorial[box]
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(0))
    voxel_mm3 = abs(float(np.linalg.det(affine[:3, :3])))
    periventricular_mm = max(PERIVENTRICULAR_MM, zooms.max())
    juxtacortical_mm = max(JUXTACORTICAL_MM, zooms.max())
    surroundings_mm = (max(infratentorial_surroundings_mm, zooms.max())
                       if infratentorial_surroundings_mm > 0 else 0.0)
    margin = np.ceil(max(periventricular_mm, juxtacortical_mm, surroundings_mm) / zooms
                     ).astype(int) + 1
    sizes, centroids, peaks, means, locations = [], [], [], [], []
    for number, box in enumerate(ndimage.find_objects(labels), start=1):
        # per-lesion measures inside the lesion's own box (whole-volume ndimage measurements
        # over the label image cost ~2 s for a 1 mm head)
        inside = labels[box] == number
        values = probability[box][inside]
        start = np.array([s.start for s in box], float)
        sizes.append(float(inside.sum()))
        centroids.append(np.argwhere(inside).mean(0) + start)
        peaks.append(float(values.max()))
        means.append(float(values.mean()))
        grown = tuple(slice(max(s.start - m, 0), min(s.stop + m, n))
                      for s, m, n in zip(box, margin, mask.shape))
        own = labels[grown] == number
        near_ventricles, near_cortex, below = structures(grown)
        around = (ndimage.distance_transform_edt(~own, sampling=zooms) <= surroundings_mm
                  if surroundings_mm else own)
        if below[around].mean() > 0.5:
            locations.append("infratentorial")
        elif _nearest_mm(near_ventricles, own, zooms) <= periventricular_mm:
            locations.append("periventricular")
        elif _nearest_mm(near_cortex, own, zooms) <= juxtacortical_mm:
            locations.append("juxtacortical")
        else:
            locations.append("deep")
    sizes = np.array(sizes)
    order = np.argsort(-sizes, kind="stable")
    rows = []
    for rank, i in enumerate(order, start=1):
        world = affine[:3, :3] @ np.array(centroids[i]) + affine[:3, 3]
        rows.append({"lesion_id": rank, "volume_mm3": round(float(sizes[i]) * voxel_mm3, 1),
                     "centroid_x_mm": round(float(world[0]), 1),
                     "centroid_y_mm": round(float(world[1]), 1),
                     "centroid_z_mm": round(float(world[2]), 1),
                     "peak_probability": round(float(peaks[i]), 3),
                     "mean_probability": round(float(means[i]), 3), "location": locations[i]})
    return rows


def location_counts(rows: list[dict]) -> dict[str, int]:
    """Lesions per location class of table ``rows``: ``PeriventricularLesionCount``,
    ``JuxtacorticalLesionCount``, ``InfratentorialLesionCount``, ``DeepLesionCount`` (the
    places the MRI criteria for MS count lesions in)."""
    return {f"{location.capitalize()}LesionCount": sum(row["location"] == location
                                                       for row in rows)
            for location in LOCATIONS}


def _nearest_mm(structure: np.ndarray, lesion: np.ndarray, zooms: np.ndarray) -> float:
    """Distance (mm) from the lesion voxels to the nearest ``structure`` voxel (inf: none)."""
    if not structure.any():
        return float("inf")
    return float(ndimage.distance_transform_edt(~structure, sampling=zooms)[lesion].min())


def grid_structures(outputs: np.ndarray, grid_affine: np.ndarray, affine: np.ndarray,
                    ) -> StructureSource:
    """The model's ventricle, cortex and infratentorial outputs (channels 1-3 of ``outputs``,
    ``(x, y, z, 4)`` on the model grid), resampled onto a native-grid box on demand."""
    def structures(box: tuple[slice, ...]):
        start = np.array([s.start for s in box])
        box_affine = affine.copy()
        box_affine[:3, 3] = affine[:3, :3] @ start + affine[:3, 3]
        shape = tuple(s.stop - s.start for s in box)
        return tuple(resample_to_grid(outputs[..., k], grid_affine, shape, box_affine,
                                      order=1) > 0.5 for k in (1, 2, 3))
    return structures


def remove_small(mask: np.ndarray, affine: np.ndarray, min_mm3: float,
                 probability: np.ndarray | None = None, min_peak: float = 0.0) -> np.ndarray:
    """``mask`` without 26-connected components smaller than ``min_mm3`` and, with
    ``probability`` (same grid), without those whose peak probability is below
    ``min_peak`` (the lesion-wise confidence the card calibrates, :func:`card_min_peak`)."""
    labels, count = ndimage.label(mask, np.ones((3, 3, 3)))
    if not count:
        return mask
    voxel_mm3 = abs(float(np.linalg.det(affine[:3, :3])))
    sizes = np.bincount(labels.ravel()) * voxel_mm3
    keep = sizes >= min_mm3
    if probability is not None and min_peak > 0:
        # peaks over the component voxels only (ndimage.maximum sorts the whole volume: 2 s)
        inside = labels > 0
        peaks = np.full(count + 1, -np.inf)
        np.maximum.at(peaks, labels[inside], probability[inside])
        keep &= peaks >= min_peak
    keep[0] = False
    return keep[labels]


def input_set(flair: bool, t1w: bool, synthetic_flair: bool = False) -> str:
    """The name of an input combination (one of :data:`INPUT_SETS`, or
    :data:`SYNTHETIC_FLAIR_SET` for a synthetic FLAIR with its T1w)."""
    if not (flair or t1w):
        raise InputImageError("lesion segmentation needs a FLAIR, a T1w or both")
    if synthetic_flair and flair and t1w:
        return SYNTHETIC_FLAIR_SET
    return "FLAIR+T1w" if flair and t1w else "FLAIR" if flair else "T1w"


def card_threshold(card: dict, inputs: str) -> float:
    """The lesion probability cut-off a model card calibrated for ``inputs`` (one of
    :data:`INPUT_SETS` or :data:`SYNTHETIC_FLAIR_SET`): ``thresholds[inputs]``, else its single
    ``threshold``, else 0.5."""
    return float(card.get("thresholds", {}).get(inputs, card.get("threshold", THRESHOLD)))


def card_min_peak(card: dict, inputs: str) -> float:
    """The peak probability a lesion must reach to be kept, as a model card calibrated it for
    ``inputs`` (``min_peaks[inputs]``; 0: every component above the threshold is kept)."""
    return float(card.get("min_peaks", {}).get(inputs, 0.0))


def card_synthetic_reading(card: dict) -> str:
    """How a model card says a synthetic FLAIR + T1w is read: a key of
    :data:`SYNTHETIC_FLAIR_READINGS` (``"synthetic_flair_reading"``; default ``mean``)."""
    reading = card.get("synthetic_flair_reading", DEFAULT_SYNTHETIC_READING)
    if reading not in SYNTHETIC_FLAIR_READINGS:
        raise ValueError(f"model card: synthetic_flair_reading {reading!r} is not one of "
                         f"{sorted(SYNTHETIC_FLAIR_READINGS)}")
    return reading


def verified_synthetic_flair_card(card: dict) -> dict | None:
    """The card of the separate model a lesion ``card`` names for a synthetic FLAIR + T1w
    (``"synthetic_flair_model"``: the registry's :data:`SYNTHETIC_FLAIR_MODEL`), its weights
    checked against their card and against the sha256 the lesion card names; None where it
    names none. Raises :class:`~bids_dl.models.registry.ModelIntegrityError`."""
    named = card.get("synthetic_flair_model")
    if not named:
        return None
    from .registry import ModelIntegrityError, get_entry, verify

    entry = get_entry(SYNTHETIC_FLAIR_MODEL)
    reader_card = verify(entry)
    if reader_card.get("sha256") != named.get("sha256"):
        raise ModelIntegrityError(
            f"{entry.weights_path}: sha256 {reader_card.get('sha256')} is not the "
            f"synthetic-FLAIR model the lesion card names ({named.get('sha256')})")
    return reader_card


def synthetic_flair_reader(model, card: dict) -> tuple:
    """``(model, card)`` that read a synthetic FLAIR + T1w for the lesion ``model`` with
    ``card``: the separate model the card names (:func:`verified_synthetic_flair_card`),
    else ``model`` and ``card`` themselves."""
    if verified_synthetic_flair_card(card) is None:
        return model, card
    from .registry import load_model

    return load_model(SYNTHETIC_FLAIR_MODEL)


def synthetic_flair_card(card: dict) -> dict:
    """The card whose thresholds and reading apply to a synthetic FLAIR + T1w for a lesion
    model with ``card`` (the separate model's, where it names one; else ``card``)."""
    return verified_synthetic_flair_card(card) or card


def card_grid_spacing(card: dict) -> float:
    """The lesion grid's spacing (mm) a model was trained on: its card's
    ``input.spacing_mm``, else :data:`~bids_dl.models.grid.LESION_SPACING`."""
    return float(card.get("input", {}).get("spacing_mm", LESION_SPACING))


def _thickest_slice(image: nib.Nifti1Image) -> float:
    return float(np.sqrt((image.affine[:3, :3] ** 2).sum(0)).max())


def segment_lesions(flair: str | os.PathLike | None = None,
                    t1w: str | os.PathLike | None = None, device: str = "auto",
                    threshold: float | None = None, model=None,
                    brain_mask: str | os.PathLike | None = None,
                    synthetic_flair: bool = False,
                    grid_spacing: float | None = None,
                    synthetic_reading: str | None = None) -> LesionResult:
    """Segment white-matter lesions; at least one of ``flair`` and ``t1w``; ``model``: a
    Keras model to use instead of the shipped one (evaluation of a candidate);
    ``grid_spacing``: the model grid's spacing in mm (default: the card's,
    :func:`card_grid_spacing`; give it with a candidate ``model`` trained on another grid);
    ``threshold``: lesion probability cut-off (default: the card's threshold calibrated for
    the inputs given, :func:`card_threshold`);
    ``brain_mask``: the reference image's brain mask when already known (e.g. from the
    brain-extraction task of the same run; same grid as the reference), else the
    brain-extraction model makes it; ``synthetic_flair``: the FLAIR was synthesised from this
    T1w (on its grid, so not registered): it is read by the model the card names for that
    case (:func:`synthetic_flair_reader`; a candidate ``model``'s card names none, so the
    candidate reads it), as that model's card says
    (:func:`card_synthetic_reading`, or ``synthetic_reading``, a key of
    :data:`SYNTHETIC_FLAIR_READINGS`) and thresholded at the card's :data:`SYNTHETIC_FLAIR_SET`
    threshold. Raises
    :class:`InputImageError` for unusable input (before any model is loaded)."""
    if flair is None and t1w is None:
        raise InputImageError("lesion segmentation needs a FLAIR, a T1w or both")
    if flair is not None and t1w is not None:
        check_pair(flair, t1w)
    tic = time.perf_counter()
    loaded = {name: load_volume(path) for name, path in (("FLAIR", flair), ("T1w", t1w))
              if path is not None}
    reference_name = "FLAIR" if "FLAIR" in loaded else "T1w"
    ref_data, ref_image = loaded[reference_name]
    warnings = [f"{name}: {thickness:.1f} mm voxels; lesions smaller than that are missed"
                for name, (_, image) in loaded.items()
                if (thickness := _thickest_slice(image)) > THICK_SLICE_MM]
    timings = {"load": time.perf_counter() - tic}
    from ..utils.device import configure_device, device_in_use

    configure_device(device)
    affines = {name: image.affine for name, (_, image) in loaded.items()}
    registration = None
    synthetic_flair = synthetic_flair and len(loaded) == 2
    if len(loaded) == 2 and not synthetic_flair:
        from ..utils.registration import rigid_register

        tic = time.perf_counter()
        transform = rigid_register(loaded["FLAIR"][1], loaded["T1w"][1])
        affines["T1w"] = np.linalg.inv(transform) @ loaded["T1w"][1].affine
        registration = transform.round(6).tolist()
        timings["register"] = time.perf_counter() - tic
    from .brain_extraction import reference_brain
    from .registry import model_or_shipped

    tic = time.perf_counter()
    brain = reference_brain(ref_image, brain_mask)
    timings["brain_mask"] = time.perf_counter() - tic
    model, card = model_or_shipped(TASK, model)
    if synthetic_flair:  # the model the card names for this case (or the same one)
        model, card = synthetic_flair_reader(model, card)
    inputs = input_set("FLAIR" in loaded, "T1w" in loaded, synthetic_flair)
    if threshold is None:
        threshold = card_threshold(card, inputs)
    min_peak = card_min_peak(card, inputs)
    used = device_in_use(device)
    spacing = card_grid_spacing(card) if grid_spacing is None else float(grid_spacing)
    engine = InferenceEngine(model, GridSpec(lesion_grid_shape(spacing), spacing))
    tic = time.perf_counter()
    grid = brain_grid(engine, brain, ref_image.affine)
    grid_affine, grid_brain = grid.affine, grid.brain
    channels = []
    for name in ("FLAIR", "T1w"):
        if name in loaded:
            grid = engine.to_grid(loaded[name][0], affines[name], grid_affine)
            channels.append(normalise_in_mask(grid, grid_brain))
        else:
            channels.append(np.zeros(engine.grid.shape, np.float32))
    timings["resample_in"] = time.perf_counter() - tic
    tic = time.perf_counter()
    search = ndimage.binary_dilation(grid_brain, iterations=2)
    outputs = engine.predict_tiled(np.stack(channels, axis=-1), TILE, TILE_OVERLAP,
                                   where=search, mirror=MIRROR)
    reading = None
    if synthetic_flair:
        reading = synthetic_reading or card_synthetic_reading(card)
        if reading not in SYNTHETIC_FLAIR_READINGS:
            raise ValueError(f"synthetic_reading {reading!r} is not one of "
                             f"{sorted(SYNTHETIC_FLAIR_READINGS)}")
    if reading == "mean":  # the T1w-alone reading: the FLAIR channel left out (zeros)
        alone = engine.predict_tiled(np.stack([np.zeros_like(channels[1]), channels[1]], -1),
                                     TILE, TILE_OVERLAP, where=search, mirror=MIRROR)
        outputs[..., 0] = (outputs[..., 0] + alone[..., 0]) / 2
    timings["predict"] = time.perf_counter() - tic
    tic = time.perf_counter()
    outputs[..., 0] *= search
    probability = np.clip(engine.to_native(outputs[..., 0], grid_affine, ref_data.shape,
                                           ref_image.affine), 0, 1)
    mask = remove_small(probability > threshold, ref_image.affine, MIN_LESION_MM3,
                        probability, min_peak)
    rows = lesion_table(probability, mask, ref_image.affine,
                        structures=grid_structures(outputs, grid_affine, ref_image.affine))
    voxel_ml = abs(float(np.linalg.det(ref_image.affine[:3, :3]))) / 1000
    brain_ml = float(brain.sum()) * voxel_ml
    lesion_ml = float(mask.sum()) * voxel_ml
    measures = {"LesionCount": len(rows), **location_counts(rows),
                "LesionVolumeMl": round(lesion_ml, 3),
                "BrainVolumeMl": round(brain_ml, 2),
                "LesionFractionOfBrain": round(lesion_ml / brain_ml, 6) if brain_ml else 0.0}
    timings["postprocess"] = time.perf_counter() - tic
    return LesionResult(
        mask=derived_image(ref_image, mask, np.uint8),
        probseg=probability_image(ref_image, probability),
        lesions=rows, measures=measures,
        inputs={name: str(path) for name, path in (("FLAIR", flair), ("T1w", t1w)) if path},
        registration=registration, device=used,
        model={"name": card.get("name", TASK), "version": card.get("version"),
               "sha256": card.get("sha256"), "grid_spacing_mm": spacing},
        threshold=threshold, min_peak=min_peak, warnings=warnings, timings=timings,
        reading=SYNTHETIC_FLAIR_READINGS[reading] if reading else None)
