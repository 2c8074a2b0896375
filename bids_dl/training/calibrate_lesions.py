"""Calibrate the lesion thresholds on validation heads: the training anatomies (never the
held-out jhu189 maps or Colin27) with lesions placed and rendered from seeds that neither
training nor the held-out evaluation uses, each with lesion mimics (enlarged perivascular
spaces and a choroid plexus).

The model's probabilities are computed once per head and input combination (FLAIR + T1w,
FLAIR alone, T1w alone; the whole inference path) and thresholded at each candidate; for each
combination, the highest threshold whose mean voxel Dice is within ``DICE_TOLERANCE`` of the
best (where Dice hardly changes: fewer false positives) among those that leave at most
``FALSE_POSITIVE_BUDGET_ML`` on average in the lesion-free validation heads
(:data:`LESION_FREE_HEADS` of them, each on another training anatomy) is stored in the model
card (``"thresholds"``; ``"threshold"`` is the FLAIR + T1w one), which inference uses unless
``--threshold`` is given. At that threshold a lesion-wise confidence filter is chosen the same
way (``"min_peaks"``, :func:`choose_min_peak`): lesions whose peak probability stays below it
are dropped.

``--synthetic-flair`` calibrates, the same way, the threshold for a FLAIR synthesised from the
T1w by the shipped contrast-synthesis model (``"synthetic FLAIR+T1w"``) for each way of reading
it (:data:`~bids_dl.models.lesion_segmentation.SYNTHETIC_FLAIR_READINGS`: the mean of the
model's readings of synthetic FLAIR + T1w and of the T1w alone, or the joint reading alone),
keeps the reading with the best Dice at its threshold (:func:`choose_reading`) and stores both
beside the others with the synthesis model's sha256 (``"synthetic_flair_reading"``,
``"synthetic_flair_calibration"``): a new synthesis model needs it recalibrated. Where the
lesion card names a separate model for synthetic FLAIRs (``"synthetic_flair_model"``), that
model is the one calibrated and its card the one written.

    python -m bids_dl.training.calibrate_lesions [--model-dir DIR] [--cases 3]
        [--lesion-free-heads 7] [--write-card] [--synthetic-flair]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..models.lesion_segmentation import (
    INPUT_SETS,
    SYNTHETIC_FLAIR_MODEL,
    SYNTHETIC_FLAIR_READINGS,
    SYNTHETIC_FLAIR_SET,
)
from ..synth.lesions import LesionAnatomy
from .data import load_label_maps
from .evaluate_lesions import HELDOUT_LESION_CONTRAST, MODES, lesion_metrics, render_case

VALIDATION_SEED = 5_000  # render_case seeds of validation heads (held-out ones use 0-199)
#: Enlarged perivascular spaces in every validation head: the lesion mimics the generator
#: trains with (CSF-like; dark on T1w like lesions), so a threshold that calls them lesions
#: pays for it in Dice.
VALIDATION_PERIVASCULAR_SPACES = 20
DICE_TOLERANCE = 0.01
#: False-positive volume (ml) a threshold may leave on average in the lesion-free validation
#: heads (the issue's target on lesion-free heads): thresholds that leave more are not chosen
#: while another keeps within it. The mean, not the worst head: it estimates what a healthy
#: participant gets and, unlike the worst of N heads, does not tighten as heads are added.
FALSE_POSITIVE_BUDGET_ML = 0.5
#: Lesion-free validation heads, each on another training anatomy (seven of the twelve, all
#: three template families): a single head decided the T1w-alone threshold by 0.03 ml once.
LESION_FREE_HEADS = 7
THRESHOLDS = tuple(round(float(t), 2) for t in np.arange(0.2, 0.86, 0.05))
#: Candidate lesion-wise confidence filters: a lesion (component above the threshold) is
#: kept only when its peak probability reaches this (0: no filter)
MIN_PEAKS = (0.0, 0.6, 0.7, 0.8, 0.9)
#: ``(flair_path or None, t1w_path or None) -> lesion probability`` on the reference grid
#: (the FLAIR's, the T1w's when alone; one grid here).
ProbabilityFn = Callable[[str | None, str | None], np.ndarray]
#: ``T1w path -> FLAIR synthesised from it`` (on the T1w's grid).
FlairSynthesiser = Callable[[str], nib.Nifti1Image]


def choose_threshold(mean_dice: dict[float, float], lesion_free_ml: dict[float, float],
                     ) -> float:
    """The threshold to store: among those whose lesion-free false positives (ml, the mean
    over the lesion-free heads) keep within :data:`FALSE_POSITIVE_BUDGET_ML` (when none does, the
    one with the fewest), the highest whose mean Dice is within :data:`DICE_TOLERANCE` of the
    best of them."""
    feasible = [t for t in mean_dice if lesion_free_ml[t] <= FALSE_POSITIVE_BUDGET_ML]
    if not feasible:
        fewest = min(lesion_free_ml.values())
        feasible = [t for t in mean_dice if lesion_free_ml[t] == fewest]
    top = max(mean_dice[t] for t in feasible)
    return max(t for t in feasible if mean_dice[t] >= top - DICE_TOLERANCE)


def choose_min_peak(rows: list[dict]) -> float:
    """The lesion-wise confidence filter to store, from ``rows`` (one per candidate
    ``min_peak`` at the chosen threshold, the first without a filter: ``dice``, ``f1``,
    ``lesion_free_ml``): the one with the best mean lesion F1 among those whose Dice is within
    :data:`DICE_TOLERANCE` of the unfiltered Dice and whose lesion-free volume (mean) is no
    larger than the unfiltered one's (ties: the weaker filter)."""
    plain = rows[0]
    allowed = [r for r in rows if r["dice"] >= plain["dice"] - DICE_TOLERANCE
               and (r["lesion_free_ml"] or 0.0) <= (plain["lesion_free_ml"] or 0.0)]
    best = max(r["f1"] for r in allowed)
    return min(r["min_peak"] for r in allowed if r["f1"] == best)


def choose_reading(per_reading: dict[str, dict]) -> str:
    """The way to read a synthetic FLAIR + T1w, from ``per_reading`` (reading -> its
    calibration: ``threshold``, ``per_threshold`` rows): among the readings whose chosen
    threshold keeps the lesion-free heads within :data:`FALSE_POSITIVE_BUDGET_ML` (all, when
    none does), the one with the best mean Dice there (ties: the first)."""
    def chosen_row(calibration: dict) -> dict:
        return next(row for row in calibration["per_threshold"]
                    if row["threshold"] == calibration["threshold"])

    rows = {reading: chosen_row(calibration) for reading, calibration in per_reading.items()}
    feasible = [r for r in rows if (rows[r]["lesion_free_ml"] or 0.0) <= FALSE_POSITIVE_BUDGET_ML]
    feasible = feasible or list(rows)
    return max(feasible, key=lambda r: (rows[r]["dice"], -feasible.index(r)))


def calibrate_threshold(probability: ProbabilityFn, labels_dir: Path, cases: int = 3,
                        lesion_free: int = LESION_FREE_HEADS,
                        thresholds: tuple[float, ...] = THRESHOLDS,
                        input_sets: tuple[str, ...] = INPUT_SETS,
                        synthesise_flair: FlairSynthesiser | None = None,
                        synthetic_probability: ProbabilityFn | dict[str, ProbabilityFn]
                        | None = None) -> dict:
    """Per input combination: mean Dice and lesion-wise F1 over ``cases`` validation heads
    with 15-40 lesions and false-positive ml in ``lesion_free`` lesion-free heads (the mean,
    the worst and each) per threshold, and the chosen threshold (:func:`choose_threshold`).
    ``threshold`` is the first combination's (FLAIR + T1w). :data:`SYNTHETIC_FLAIR_SET` in
    ``input_sets`` needs ``synthesise_flair`` and ``synthetic_probability`` (``(synthetic
    FLAIR, T1w) -> probability``, or one such function per way of reading it: then each is
    calibrated, the best kept (:func:`choose_reading`) and named in ``synthetic_flair_reading``)."""
    if SYNTHETIC_FLAIR_SET in input_sets and not (synthesise_flair and synthetic_probability):
        raise ValueError(f"{SYNTHETIC_FLAIR_SET}: give synthesise_flair and "
                         "synthetic_probability")
    readings = (synthetic_probability if isinstance(synthetic_probability, dict)
                else {None: synthetic_probability})
    maps, names = load_label_maps(labels_dir, "train")
    # (values, truth, affine) per input set and, for the synthetic set, per reading
    kept: dict[tuple, list] = {(inputs, reading): [] for inputs in input_sets
                               for reading in (readings if inputs == SYNTHETIC_FLAIR_SET
                                               else (None,))}
    used = set()
    for case in range(cases + lesion_free):
        index = (case * 5) % len(maps)  # spread over the template families
        labels = maps[index]
        used.add(names[index])
        count = 0 if case >= cases else 15 + (case * 11) % 26
        flair, t1w, truth, _ = render_case(labels, LesionAnatomy.from_labels(labels),
                                           VALIDATION_SEED + case, count,
                                           perivascular_spaces=VALIDATION_PERIVASCULAR_SPACES,
                                           choroid_plexus=True)
        with tempfile.TemporaryDirectory() as tmp:
            # uncompressed: written once, read once (gzip took a second per image)
            paths = {name: str(Path(tmp) / f"{name}.nii") for name in ("FLAIR", "T1w")}
            nib.save(flair, paths["FLAIR"])
            nib.save(t1w, paths["T1w"])
            if SYNTHETIC_FLAIR_SET in input_sets:
                paths[SYNTHETIC_FLAIR_SET] = str(Path(tmp) / "synthetic_FLAIR.nii")
                nib.save(synthesise_flair(paths["T1w"]), paths[SYNTHETIC_FLAIR_SET])
            for inputs, reading in kept:
                if inputs == SYNTHETIC_FLAIR_SET:
                    values = readings[reading](paths[SYNTHETIC_FLAIR_SET], paths["T1w"])
                else:
                    with_flair, with_t1w = MODES[inputs]
                    values = probability(paths["FLAIR"] if with_flair else None,
                                         paths["T1w"] if with_t1w else None)
                kept[inputs, reading].append((values, truth if count else None, flair.affine))
    calibrations = {key: _calibrate(heads, thresholds) for key, heads in kept.items()}
    per_input, extra = {}, {}
    for inputs in input_sets:
        if inputs == SYNTHETIC_FLAIR_SET and None not in readings:
            per_reading = {reading: calibrations[inputs, reading] for reading in readings}
            best = choose_reading(per_reading)
            per_input[inputs] = {**per_reading[best], "reading": best}
            extra = {"synthetic_flair_reading": best, "per_reading": per_reading}
        else:
            per_input[inputs] = calibrations[inputs, None]
    return {"threshold": per_input[input_sets[0]]["threshold"],
            "thresholds": {inputs: per_input[inputs]["threshold"] for inputs in input_sets},
            "min_peaks": {inputs: per_input[inputs]["min_peak"] for inputs in input_sets},
            "cases": cases, "lesion_free_heads": lesion_free, "label_maps": sorted(used),
            "seeds": f"render_case seeds {VALIDATION_SEED}-"
                     f"{VALIDATION_SEED + cases + lesion_free - 1} (lesion-free from "
                     f"{VALIDATION_SEED + cases})",
            "perivascular_spaces_per_head": VALIDATION_PERIVASCULAR_SPACES,
            "choroid_plexus": "in every head",
            "lesion_contrast": HELDOUT_LESION_CONTRAST,
            "criterion": f"per input combination, among the thresholds that leave at most "
                         f"{FALSE_POSITIVE_BUDGET_ML} ml on average in the {lesion_free} "
                         f"lesion-free heads (all when none does: then the one that leaves "
                         f"least), the highest with a mean voxel Dice within "
                         f"{DICE_TOLERANCE} of the best of them",
            "per_input": per_input, **extra}


def _calibrate(heads: list, thresholds: tuple[float, ...]) -> dict:
    """One input combination's calibration from its ``heads`` (``(probability, truth or
    None, affine)``): the rows per threshold, the chosen threshold and confidence filter."""
    heads = [_crop(values, truth, min(thresholds)) + (affine,)
             for values, truth, affine in heads]
    rows = {t: _peak_row(heads, t, 0.0) for t in thresholds}
    chosen = choose_threshold({t: row["dice"] for t, row in rows.items()},
                              {t: row["lesion_free_ml"] or 0.0 for t, row in rows.items()})
    peak_rows = [_peak_row(heads, chosen, peak) for peak in MIN_PEAKS]
    return {"threshold": chosen, "min_peak": choose_min_peak(peak_rows),
            "per_threshold": [{"threshold": t, **{key: value for key, value in row.items()
                                                   if key != "min_peak"}}
                              for t, row in rows.items()],
            "per_min_peak": peak_rows}


def _crop(values: np.ndarray, truth: np.ndarray | None,
          lowest: float) -> tuple[np.ndarray, np.ndarray | None]:
    """``values`` and ``truth`` cut to the box around the voxels above ``lowest`` and the
    true lesions: every threshold at or above ``lowest`` gives the same components, Dice,
    F1 and volumes there as on the whole grid, at a fraction of the cost."""
    region = values > lowest
    if truth is not None:
        region = region | truth
    (box,) = ndimage.find_objects(region.astype(np.uint8)) or [(slice(0, 1),) * values.ndim]
    return values[box], None if truth is None else truth[box]


def _peak_row(heads: list, threshold: float, min_peak: float) -> dict:
    """Mean Dice and F1 over the lesion heads and the lesion-free heads' ml (``lesion_free_ml``:
    the mean; the worst and each beside it) of ``heads`` (``(probability, truth or None,
    affine)``) at ``threshold`` with the confidence filter ``min_peak``."""
    from ..models.lesion_segmentation import MIN_LESION_MM3, remove_small

    dice, f1, free = [], [], []
    for values, truth, affine in heads:
        mask = remove_small(values > threshold, affine, MIN_LESION_MM3, values, min_peak)
        voxel = abs(float(np.linalg.det(affine[:3, :3])))
        if truth is None:
            free.append(round(float(mask.sum()) * voxel / 1000, 3))
            continue
        metrics = lesion_metrics(mask, truth, voxel)
        dice.append(metrics["dice"])
        f1.append(metrics["f1"])
    return {"min_peak": min_peak, "dice": round(float(np.mean(dice)), 4),
            "f1": round(float(np.mean(f1)), 4),
            "lesion_free_ml": round(float(np.mean(free)), 3) if free else None,
            "lesion_free_worst_ml": max(free) if free else None,
            "lesion_free_per_head_ml": free}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labels", type=Path, default=Path(".cache/labels"))
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="folder with the candidate model and card (default: shipped)")
    parser.add_argument("--cases", type=int, default=3, help="validation heads with lesions")
    parser.add_argument("--lesion-free-heads", type=int, default=LESION_FREE_HEADS)
    parser.add_argument("--write-card", action="store_true",
                        help="store the threshold and the calibration in the model card")
    parser.add_argument("--synthetic-flair", action="store_true",
                        help=f"calibrate only the {SYNTHETIC_FLAIR_SET!r} threshold (with the "
                        "shipped, or --model-dir's, contrast-synthesis model)")
    args = parser.parse_args(argv)
    if args.model_dir:
        os.environ["BIDS_DL_MODEL_DIR"] = str(args.model_dir.resolve())
    from ..models.lesion_segmentation import segment_lesions
    from ..models.registry import get_entry
    from ..utils.io import atomic_path

    def probability(flair: str | None, t1w: str | None) -> np.ndarray:
        return np.asarray(segment_lesions(flair, t1w, device="cpu").probseg.dataobj,
                          np.float32)

    def synthetic_probability(reading: str) -> ProbabilityFn:
        def read(flair: str | None, t1w: str | None) -> np.ndarray:
            return np.asarray(segment_lesions(flair, t1w, device="cpu", synthetic_flair=True,
                                              synthetic_reading=reading).probseg.dataobj,
                              np.float32)
        return read

    def synthesise_flair(t1w: str) -> nib.Nifti1Image:
        from ..models.contrast_synthesis import synthesize

        return synthesize(t1w, ("FLAIR",), device="cpu").images["FLAIR"]

    if args.synthetic_flair:
        result = calibrate_threshold(probability, args.labels, args.cases,
                                     args.lesion_free_heads,
                                     input_sets=(SYNTHETIC_FLAIR_SET,),
                                     synthesise_flair=synthesise_flair,
                                     synthetic_probability={
                                         reading: synthetic_probability(reading)
                                         for reading in SYNTHETIC_FLAIR_READINGS})
        result["synthesis_model_sha256"] = get_entry("contrast-synthesis").read_card()["sha256"]
    else:
        result = calibrate_threshold(probability, args.labels, args.cases,
                                     args.lesion_free_heads)
    shown = dict(result["per_input"])
    if "per_reading" in result:  # each reading below; the chosen one is named after them
        del shown[SYNTHETIC_FLAIR_SET]
    for reading, calibration in result.get("per_reading", {}).items():
        shown[f"{SYNTHETIC_FLAIR_SET}, {reading} reading"] = calibration
    for inputs, calibration in shown.items():
        print(f"\n{inputs}\n\n| threshold | Dice | lesion F1 | lesion-free ml, mean / worst |"
              "\n|---|---|---|---|")
        for row in calibration["per_threshold"]:
            print(f"| {row['threshold']:.2f} | {row['dice']:.3f} | {row['f1']:.3f} | "
                  f"{row['lesion_free_ml']} / {row['lesion_free_worst_ml']} |")
        print(f"\nchosen for {inputs}: {calibration['threshold']:.2f}\n\n"
              "| min peak | Dice | lesion F1 | lesion-free ml, mean / worst |\n|---|---|---|---|")
        for row in calibration["per_min_peak"]:
            print(f"| {row['min_peak']:.2f} | {row['dice']:.3f} | {row['f1']:.3f} | "
                  f"{row['lesion_free_ml']} / {row['lesion_free_worst_ml']} |")
        print(f"\nchosen minimum peak for {inputs}: {calibration['min_peak']:.2f}")
    if "synthetic_flair_reading" in result:
        print(f"\nchosen reading of a synthetic FLAIR: {result['synthetic_flair_reading']}")
    print(f"\n({result['criterion']})")
    if args.write_card:
        entry = get_entry("lesion-segmentation")
        card = entry.read_card()
        if args.synthetic_flair and card.get("synthetic_flair_model"):
            entry = get_entry(SYNTHETIC_FLAIR_MODEL)  # the separate model that was calibrated
            card = entry.read_card()
        if args.synthetic_flair:
            card["thresholds"] = {**card.get("thresholds", {}), **result["thresholds"]}
            card["min_peaks"] = {**card.get("min_peaks", {}), **result["min_peaks"]}
            card["synthetic_flair_reading"] = result["synthetic_flair_reading"]
            card["synthetic_flair_calibration"] = result
        else:  # keeps a calibrated synthetic-FLAIR threshold
            card["threshold"] = result["threshold"]
            card["thresholds"] = {**card.get("thresholds", {}), **result["thresholds"]}
            card["min_peaks"] = {**card.get("min_peaks", {}), **result["min_peaks"]}
            card["threshold_calibration"] = result
        with atomic_path(entry.card_path) as tmp:
            Path(tmp).write_text(json.dumps(card, indent=2) + "\n")
        print(f"wrote {entry.card_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
