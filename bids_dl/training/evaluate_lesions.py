"""Held-out evaluation of lesion segmentation: synthetic heads of the held-out anatomy with
lesions (seeds never used in training), lesion-free heads, and the healthy Colin27 T1w.

Metrics: voxel Dice; lesion-wise sensitivity (true lesions of at least 100 mm³ touched by the
predicted mask), precision (predicted lesions touching a true one) and F1; false-positive
volume (ml) where there are no lesions; how often the per-lesion table's location class
(read from the model's structure outputs) is the one the true anatomy gives. Everything goes
through the shipped inference path (:func:`bids_dl.models.lesion_segmentation.segment_lesions`)
on NIfTI files.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..models.lesion_segmentation import LOCATIONS, lesion_table
from ..synth.contrasts import label_intensities
from ..synth.generator import GeneratorConfig, add_noise
from ..synth.labels import HEAD_AFFINE
from ..synth.lesion_generator import STRUCTURE_LABELS
from ..synth.lesions import (
    LESION_CONTRAST_TEXT,
    T1W_LESION_TOWARDS_CSF,
    LesionAnatomy,
    lesion_intensity,
    paint_lesions,
    simulate_choroid_plexus,
    simulate_lesions,
    simulate_perivascular_spaces,
    with_choroid_plexus,
    with_perivascular_spaces,
)
from ..utils.resample import smooth_noise
from .data import load_label_maps

SEED_OFFSET = 10_000_000  # evaluation seeds: far from any training (seed, step, index)
MODES = {"FLAIR+T1w": (True, True), "FLAIR": (True, False), "T1w": (False, True)}
Segmenter = Callable[[str | None, str | None], np.ndarray]
#: ``(FLAIR path, T1w path) -> (mask on the FLAIR's grid, the per-lesion table's rows)``
TableSegmenter = Callable[[str | None, str | None], tuple[np.ndarray, list[dict]]]


def render_case(labels: np.ndarray, anatomy: LesionAnatomy, seed: int,
                lesion_count: int | None = None, flair_slice_mm: int | None = None,
                perivascular_spaces: int = 0, choroid_plexus: bool = False,
                ) -> tuple[nib.Nifti1Image, nib.Nifti1Image, np.ndarray, np.ndarray]:
    """A FLAIR and a T1w (1 mm, the label grid; the FLAIR with thick axial slices when
    ``flair_slice_mm``) of one head with lesions (and lesion mimics: ``perivascular_spaces``
    enlarged perivascular spaces, CSF-like; a grey-matter-like choroid plexus when
    ``choroid_plexus``); returns them and the true lesion masks on the FLAIR's and on the
    T1w's grid."""
    rng = np.random.default_rng([SEED_OFFSET, seed])
    lesions = simulate_lesions(anatomy, rng, lesion_count)
    if perivascular_spaces:
        labels = with_perivascular_spaces(
            labels, simulate_perivascular_spaces(labels, rng, perivascular_spaces, lesions))
    if choroid_plexus:
        labels = with_choroid_plexus(labels, simulate_choroid_plexus(labels, rng, True))
    images = {}
    for contrast in ("FLAIR", "T1w"):
        means = label_intensities(contrast, rng)
        volume = paint_lesions(means[labels], lesions, lesion_intensity(contrast, means, rng),
                               rng)
        volume = ndimage.gaussian_filter(volume, 0.5)
        volume *= np.exp(0.2 * smooth_noise(labels.shape, rng, 4))
        affine = HEAD_AFFINE.copy()
        truth = lesions
        if contrast == "FLAIR" and flair_slice_mm:
            step = int(flair_slice_mm)
            volume = ndimage.gaussian_filter1d(volume, step / 2.355, axis=2)[:, :, step // 2::step]
            truth = lesions[:, :, step // 2::step]
            affine[:3, 3] += HEAD_AFFINE[:3, :3] @ np.array([0, 0, step // 2])
            affine[:3, 2] *= step
        volume = add_noise(volume / volume.max(), rng, GeneratorConfig(max_noise=0.03))
        images[contrast] = (nib.Nifti1Image((volume * 1000).astype(np.float32), affine), truth)
    return images["FLAIR"][0], images["T1w"][0], images["FLAIR"][1], images["T1w"][1]


def lesion_metrics(predicted: np.ndarray, truth: np.ndarray, voxel_mm3: float,
                   min_true_mm3: float = 100.0) -> dict[str, float]:
    """Voxel Dice and lesion-wise sensitivity (true lesions >= ``min_true_mm3``), precision,
    F1 (26-connected lesions; a lesion is found when the other mask touches it)."""
    predicted, truth = predicted.astype(bool), truth.astype(bool)
    structure = np.ones((3, 3, 3))
    total = predicted.sum() + truth.sum()
    dice = 2 * float((predicted & truth).sum()) / total if total else 1.0
    true_labels, n_true = ndimage.label(truth, structure)
    pred_labels, n_pred = ndimage.label(predicted, structure)
    sizes = np.bincount(true_labels.ravel())[1:] * voxel_mm3
    # a lesion is hit when any of its voxels lies in the other mask
    hit_true = np.bincount(true_labels[predicted], minlength=n_true + 1)[1:] > 0
    hit_pred = np.bincount(pred_labels[truth], minlength=n_pred + 1)[1:] > 0
    large = sizes >= min_true_mm3
    sensitivity = float(hit_true[large].mean()) if large.any() else 1.0
    recall_all = float(hit_true.mean()) if n_true else 1.0
    precision = float(hit_pred.mean()) if n_pred else 1.0
    f1 = 2 * precision * recall_all / (precision + recall_all) if precision + recall_all else 0.0
    return {"dice": round(dice, 4), "sensitivity_ge_100mm3": round(sensitivity, 4),
            "precision": round(precision, 4), "f1": round(f1, 4), "true_lesions": int(n_true),
            "predicted_lesions": int(n_pred),
            "false_positive_ml": round(float((predicted & ~truth).sum()) * voxel_mm3 / 1000, 3)}


def _segment_files(segment: Segmenter | TableSegmenter, flair, t1w, mode: str):
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name, image, wanted in (("FLAIR", flair, MODES[mode][0]),
                                    ("T1w", t1w, MODES[mode][1])):
            if wanted:
                paths[name] = str(Path(tmp) / f"{name}.nii.gz")
                nib.save(image, paths[name])
        return segment(paths.get("FLAIR"), paths.get("T1w"))


def heldout_lesion_heads(labels_dir: Path, cases: int, flair_slice_mm: int | None = None,
                         ) -> Iterator[tuple[np.ndarray, tuple]]:
    """The held-out heads with 15-40 lesions, as ``(label map, render_case(...))``: head
    ``case`` is held-out label map ``case`` modulo their number, rendered with seed ``case``."""
    maps, _ = load_label_maps(labels_dir, "heldout")
    for case in range(cases):
        labels = maps[case % len(maps)]
        count = 15 + (case * 11) % 26
        yield labels, render_case(labels, LesionAnatomy.from_labels(labels), case, count,
                                  flair_slice_mm)


def synthetic_lesions(segment: Segmenter, labels_dir: Path, cases: int = 3,
                      modes: tuple[str, ...] = tuple(MODES), flair_slice_mm: int | None = None,
                      ) -> dict[str, dict[str, float]]:
    """Mean metrics per input mode over ``cases`` held-out heads with 15-40 lesions (head
    ``case``: held-out label map ``case`` modulo their number, render seed ``case``), with
    the spread over heads (``dice_sd``, ``f1_sd``: sample standard deviations, 0 for one
    head) and the worst head's Dice (``dice_min``)."""
    results: dict[str, list[dict]] = {mode: [] for mode in modes}
    for _, (flair, t1w, truth, truth_t1w) in heldout_lesion_heads(labels_dir, cases,
                                                                  flair_slice_mm):
        voxel = abs(float(np.linalg.det(flair.affine[:3, :3])))
        for mode in modes:
            predicted = _segment_files(segment, flair, t1w, mode)
            if mode == "T1w":  # predicted on the T1w grid: compare there
                results[mode].append(lesion_metrics(predicted, truth_t1w, 1.0))
            else:
                results[mode].append(lesion_metrics(predicted, truth, voxel))
    return {mode: {**{key: round(float(np.mean([r[key] for r in rows])), 4) for key in rows[0]},
                   **spread(rows)}
            for mode, rows in results.items()}


def spread(rows: list[dict]) -> dict[str, float]:
    """How per-head metrics ``rows`` (from :func:`lesion_metrics`) vary: sample standard
    deviations of Dice and F1 (0 for one head) and the lowest Dice."""
    def sd(key: str) -> float:
        values = [r[key] for r in rows]
        return round(float(np.std(values, ddof=1)), 4) if len(values) > 1 else 0.0

    return {"dice_sd": sd("dice"), "f1_sd": sd("f1"),
            "dice_min": round(float(min(r["dice"] for r in rows)), 4)}


def synthetic_flair_dice_ratio(segment: Segmenter,
                               synthesise_flair: Callable[[str], nib.Nifti1Image],
                               labels_dir: Path, cases: int = 2,
                               segment_synthetic: Segmenter | None = None) -> dict:
    """Lesion Dice on a synthetic FLAIR (made from the T1w by ``synthesise_flair``) + T1w
    against Dice on the acquired FLAIR + T1w, on held-out heads with lesions (1 mm, one
    grid); ``ratio`` is the mean synthetic Dice over the mean acquired Dice.
    ``segment_synthetic``: how the pipeline segments a synthetic FLAIR + T1w (its
    ``synthetic_flair`` reading); the plain FLAIR + T1w reading (``segment``) of the same
    images is reported beside it (``..._single_reading``)."""
    maps, _ = load_label_maps(labels_dir, "heldout")
    acquired, synthetic, single = [], [], []
    for case in range(cases):
        labels = maps[case % len(maps)]
        count = 15 + (case * 11) % 26
        flair, t1w, truth, _ = render_case(labels, LesionAnatomy.from_labels(labels),
                                           200 + case, count)
        acquired.append(lesion_metrics(_segment_files(segment, flair, t1w, "FLAIR+T1w"),
                                       truth, 1.0)["dice"])
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "T1w.nii.gz")
            nib.save(t1w, path)
            made = synthesise_flair(path)
        single.append(lesion_metrics(_segment_files(segment, made, t1w, "FLAIR+T1w"),
                                     truth, 1.0)["dice"])
        if segment_synthetic is not None:
            synthetic.append(lesion_metrics(
                _segment_files(segment_synthetic, made, t1w, "FLAIR+T1w"), truth, 1.0)["dice"])
    synthetic = synthetic or single
    mean_acquired = float(np.mean(acquired))

    def ratio(values: list[float]) -> float | None:
        return round(float(np.mean(values)) / mean_acquired, 4) if mean_acquired else None

    return {"cases": cases, "dice_acquired_flair": round(mean_acquired, 4),
            "dice_synthetic_flair": round(float(np.mean(synthetic)), 4),
            "ratio": ratio(synthetic),
            "dice_synthetic_flair_single_reading": round(float(np.mean(single)), 4),
            "ratio_single_reading": ratio(single),
            "per_case": {"acquired": acquired, "synthetic": synthetic,
                         "single_reading": single}}


def lesion_free(segment: Segmenter, labels_dir: Path, cases: int = 2,
                flair_slice_mm: int | None = None) -> dict[str, float]:
    """False-positive volume (ml) on held-out heads without lesions, FLAIR + T1w (the FLAIR
    with thick axial slices when ``flair_slice_mm``; the same heads either way): mean, worst
    and each head's (seeds 100, 101, ...)."""
    maps, _ = load_label_maps(labels_dir, "heldout")
    volumes = []
    for case in range(cases):
        labels = maps[case % len(maps)]
        flair, t1w, _, _ = render_case(labels, LesionAnatomy.from_labels(labels), 100 + case,
                                       0, flair_slice_mm)
        predicted = _segment_files(segment, flair, t1w, "FLAIR+T1w")
        volumes.append(float(predicted.sum()) * abs(np.linalg.det(flair.affine[:3, :3])) / 1000)
    return _false_positive_summary(volumes)


def _false_positive_summary(volumes: list[float]) -> dict:
    """Mean, worst and each head's false-positive ml (3 decimals)."""
    return {"mean_false_positive_ml": round(float(np.mean(volumes)), 3),
            "max_false_positive_ml": round(float(np.max(volumes)), 3),
            "per_head_ml": [round(float(v), 3) for v in volumes]}


def lesion_free_with_mimics(segment: Segmenter, labels_dir: Path, cases: int = 2,
                            spaces: int = 30) -> dict[str, dict[str, float]]:
    """False-positive volume (ml) per input mode on held-out heads without lesions but with
    lesion mimics: ``spaces`` enlarged perivascular spaces (CSF-like tubes in the basal
    ganglia and white matter: dark on T1w like lesions, dark on FLAIR unlike them) and a
    choroid plexus (grey-matter-like tissue in the lateral ventricles)."""
    maps, _ = load_label_maps(labels_dir, "heldout")
    volumes: dict[str, list[float]] = {mode: [] for mode in MODES}
    for case in range(cases):
        labels = maps[case % len(maps)]
        flair, t1w, _, _ = render_case(labels, LesionAnatomy.from_labels(labels), 300 + case,
                                       0, perivascular_spaces=spaces, choroid_plexus=True)
        voxel_ml = abs(float(np.linalg.det(flair.affine[:3, :3]))) / 1000
        for mode in MODES:
            volumes[mode].append(float(_segment_files(segment, flair, t1w, mode).sum())
                                 * voxel_ml)
    return {mode: _false_positive_summary(values) for mode, values in volumes.items()}


def true_structures(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ventricles, cortex and infratentorial brain of a label map (bool masks on its grid):
    the structures the lesion model is trained to output, from the true labels."""
    return tuple(np.isin(labels, STRUCTURE_LABELS[name])
                 for name in ("ventricles", "cortex", "infratentorial"))


def location_confusion(reported: list[str], reference: list[str]) -> dict:
    """Agreement of ``reported`` location classes with ``reference`` ones (same lesions, same
    order): the share that agree, Cohen's kappa and the confusion counts
    (``confusion[reference][reported]``)."""
    confusion = {a: {b: 0 for b in LOCATIONS} for a in LOCATIONS}
    for truth, given in zip(reference, reported, strict=True):
        confusion[truth][given] += 1
    total = len(reported)
    if not total:
        return {"lesions": 0, "agreement": None, "kappa": None, "confusion": confusion}
    agreement = sum(confusion[c][c] for c in LOCATIONS) / total
    chance = sum(sum(confusion[c].values()) * sum(confusion[a][c] for a in LOCATIONS)
                 for c in LOCATIONS) / total ** 2
    kappa = (agreement - chance) / (1 - chance) if chance < 1 else 1.0
    return {"lesions": total, "agreement": round(agreement, 4), "kappa": round(kappa, 4),
            "confusion": confusion}


def _component_hits(mask: np.ndarray, truth: np.ndarray) -> list[bool]:
    """Whether each 26-connected lesion of ``mask`` touches ``truth``, in the per-lesion
    table's order (largest first, ties in label order)."""
    labels, count = ndimage.label(mask, np.ones((3, 3, 3)))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    hits = ndimage.maximum(truth, labels, np.arange(1, count + 1)) if count else []
    return [bool(hits[i]) for i in np.argsort(-sizes, kind="stable")]


def location_agreement(segment: TableSegmenter, labels_dir: Path, cases: int = 3,
                       mode: str = "FLAIR+T1w") -> dict:
    """How well the per-lesion table's location classes hold on the held-out heads of
    :func:`synthetic_lesions` (1 mm; ``mode``'s inputs): each reported lesion's class
    against the class the same voxels get from the true ventricles, cortex and
    infratentorial brain (the table's rule, with infratentorial read from the lesion's own
    voxels: true labels are intact under lesions; ``all``: every reported lesion;
    ``true_positives``: those touching a true lesion), and per class the lesions counted
    over all heads: the true lesions (true mask, true structures) against the reported
    ones."""
    reported, reference, hits = [], [], []
    counted = {name: {"true": 0, "reported": 0} for name in LOCATIONS}
    for labels, (flair, t1w, truth, _) in heldout_lesion_heads(labels_dir, cases):
        mask, rows = _segment_files(segment, flair, t1w, mode)
        structures = true_structures(labels)
        by_truth = lesion_table(mask.astype(np.float32), mask, flair.affine, *structures,
                                infratentorial_surroundings_mm=0)
        if [r["volume_mm3"] for r in by_truth] != [r["volume_mm3"] for r in rows]:
            raise RuntimeError("the reported lesions are not the mask's components")
        reported += [row["location"] for row in rows]
        reference += [row["location"] for row in by_truth]
        hits += _component_hits(mask, truth)
        for row in lesion_table(truth.astype(np.float32), truth, flair.affine, *structures,
                                infratentorial_surroundings_mm=0):
            counted[row["location"]]["true"] += 1
        for row in rows:
            counted[row["location"]]["reported"] += 1
    found = [i for i, hit in enumerate(hits) if hit]
    return {"mode": mode, "heads": cases,
            "all": location_confusion(reported, reference),
            "true_positives": location_confusion([reported[i] for i in found],
                                                 [reference[i] for i in found]),
            "lesions_per_class": counted}


def colin27_t1w_false_positives(segment: Segmenter) -> float:
    """Lesion volume (ml) found in the healthy Colin27 head (T1w alone)."""
    from ..synth.sources import colin27

    head, _ = colin27()
    predicted = segment(None, str(head))
    image = nib.load(str(head))
    return round(float(predicted.sum()) * abs(np.linalg.det(image.affine[:3, :3])) / 1000, 3)


#: How the evaluation heads' lesions look, stored with their metrics (the heads changed once).
HELDOUT_LESION_CONTRAST = (
    f"{LESION_CONTRAST_TEXT} (bids_dl.synth.lesions.lesion_intensity; since 2026-12-02, "
    f"before against WM only); T1w lesions {T1W_LESION_TOWARDS_CSF[0]}-"
    f"{T1W_LESION_TOWARDS_CSF[1]} of the way from WM to CSF")


def lesion_free_heads(cases: int) -> int:
    """Lesion-free heads (each set) measured beside ``cases`` heads with lesions: a third as
    many, at least 2 (12 -> 4: one per held-out label map)."""
    return max(2, cases // 3)


def evaluate_all(segment: Segmenter, labels_dir: Path, cases: int = 3,
                 locate: TableSegmenter | None = None) -> dict:
    """Every lesion metric of the model card: held-out synthetic heads (three input modes;
    FLAIR with 4 mm slices), lesion-free heads (also with 4 mm FLAIR slices, and with lesion
    mimics: perivascular spaces and a choroid plexus, every input mode), the Colin27 T1w and,
    with ``locate`` (``segment`` that also returns the table), the location classes (FLAIR +
    T1w; FLAIR alone and T1w alone in ``location_classes_other_inputs``)."""
    thick, free = max(1, cases - 1), lesion_free_heads(cases)
    metrics = {"lesion_contrast": HELDOUT_LESION_CONTRAST,
               "heads": {"with_lesions": cases, "flair_4mm_slices": thick,
                         "lesion_free_each_set": free},
               "synthetic_heldout": synthetic_lesions(segment, labels_dir, cases),
               "synthetic_heldout_flair_4mm_slices": synthetic_lesions(
                   segment, labels_dir, thick, ("FLAIR+T1w",), 4),
               "lesion_free": lesion_free(segment, labels_dir, free),
               "lesion_free_flair_4mm_slices": lesion_free(segment, labels_dir, free,
                                                           flair_slice_mm=4),
               "lesion_free_with_mimics": lesion_free_with_mimics(segment, labels_dir, free)}
    if locate is not None:
        metrics["location_classes"] = location_agreement(locate, labels_dir, cases)
        metrics["location_classes_other_inputs"] = {
            mode: location_agreement(locate, labels_dir, cases, mode)
            for mode in MODES if mode != "FLAIR+T1w"}
    try:
        metrics["colin27_t1w_false_positive_ml"] = colin27_t1w_false_positives(segment)
    except FileNotFoundError as error:
        metrics["colin27_t1w_false_positive_ml"] = f"not measured: {error}"
    return metrics
