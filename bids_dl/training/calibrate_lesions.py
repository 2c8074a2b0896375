"""Calibrate the lesion threshold on validation heads: the training anatomies (never the
held-out jhu189 maps or Colin27) with lesions placed and rendered from seeds that neither
training nor the held-out evaluation uses.

The model's probabilities are computed once per head (FLAIR + T1w, the whole inference path)
and thresholded at each candidate; the highest threshold whose mean voxel Dice is within
``DICE_TOLERANCE`` of the best (where Dice hardly changes: fewer false positives) is stored in
the model card (``"threshold"``), which inference uses unless ``--threshold`` is given.

    python -m bids_dl.training.calibrate_lesions [--model-dir DIR] [--cases 3] [--write-card]
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

from ..synth.lesions import LesionAnatomy
from .data import load_label_maps
from .evaluate_lesions import lesion_metrics, render_case

VALIDATION_SEED = 5_000  # render_case seeds of validation heads (held-out ones use 0-199)
DICE_TOLERANCE = 0.01
THRESHOLDS = tuple(round(float(t), 2) for t in np.arange(0.2, 0.86, 0.05))
#: ``(flair_path, t1w_path) -> lesion probability`` on the FLAIR's grid.
ProbabilityFn = Callable[[str, str], np.ndarray]


def calibrate_threshold(probability: ProbabilityFn, labels_dir: Path, cases: int = 3,
                        thresholds: tuple[float, ...] = THRESHOLDS) -> dict:
    """Mean Dice, lesion-wise F1 and (on one lesion-free head) false-positive ml per
    threshold over ``cases`` validation heads with 15-40 lesions; ``threshold``: the highest
    one whose mean Dice is within ``DICE_TOLERANCE`` of the best."""
    from ..models.lesion_segmentation import MIN_LESION_MM3, remove_small

    maps, names = load_label_maps(labels_dir, "train")
    dice = {t: [] for t in thresholds}
    f1 = {t: [] for t in thresholds}
    free_ml: dict[float, float] = {}
    used = set()
    for case in range(cases + 1):
        index = (case * 5) % len(maps)  # spread over the template families
        labels = maps[index]
        used.add(names[index])
        count = 0 if case == cases else 15 + (case * 11) % 26
        flair, t1w, truth, _ = render_case(labels, LesionAnatomy.from_labels(labels),
                                           VALIDATION_SEED + case, count)
        with tempfile.TemporaryDirectory() as tmp:
            paths = [str(Path(tmp) / f"{name}.nii.gz") for name in ("FLAIR", "T1w")]
            nib.save(flair, paths[0])
            nib.save(t1w, paths[1])
            values = probability(*paths)
        voxel = abs(float(np.linalg.det(flair.affine[:3, :3])))
        for threshold in thresholds:
            mask = remove_small(values > threshold, flair.affine, MIN_LESION_MM3)
            if count == 0:
                free_ml[threshold] = round(float(mask.sum()) * voxel / 1000, 3)
                continue
            metrics = lesion_metrics(mask, truth, voxel)
            dice[threshold].append(metrics["dice"])
            f1[threshold].append(metrics["f1"])
    mean_dice = {t: round(float(np.mean(v)), 4) for t, v in dice.items()}
    top = max(mean_dice.values())
    best = max(t for t in thresholds if mean_dice[t] >= top - DICE_TOLERANCE)
    return {"threshold": best, "cases": cases,
            "label_maps": sorted(used),
            "seeds": f"render_case seeds {VALIDATION_SEED}-{VALIDATION_SEED + cases}",
            "criterion": f"highest threshold with a mean voxel Dice (FLAIR + T1w) within "
                         f"{DICE_TOLERANCE} of the best",
            "per_threshold": [{"threshold": t, "dice": mean_dice[t],
                               "f1": round(float(np.mean(f1[t])), 4),
                               "lesion_free_ml": free_ml.get(t)} for t in thresholds]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labels", type=Path, default=Path(".cache/labels"))
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="folder with the candidate model and card (default: shipped)")
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--write-card", action="store_true",
                        help="store the threshold and the calibration in the model card")
    args = parser.parse_args(argv)
    if args.model_dir:
        os.environ["BIDS_DL_MODEL_DIR"] = str(args.model_dir.resolve())
    from ..models.lesion_segmentation import segment_lesions
    from ..models.registry import get_entry
    from ..utils.io import atomic_path

    def probability(flair: str, t1w: str) -> np.ndarray:
        return np.asarray(segment_lesions(flair, t1w, device="cpu").probseg.dataobj,
                          np.float32)

    result = calibrate_threshold(probability, args.labels, args.cases)
    print("| threshold | Dice | lesion F1 | lesion-free ml |\n|---|---|---|---|")
    for row in result["per_threshold"]:
        print(f"| {row['threshold']:.2f} | {row['dice']:.3f} | {row['f1']:.3f} | "
              f"{row['lesion_free_ml']} |")
    print(f"\nchosen: {result['threshold']:.2f} ({result['criterion']})")
    if args.write_card:
        entry = get_entry("lesion-segmentation")
        card = entry.read_card()
        card["threshold"] = result["threshold"]
        card["threshold_calibration"] = result
        with atomic_path(entry.card_path) as tmp:
            Path(tmp).write_text(json.dumps(card, indent=2) + "\n")
        print(f"wrote {entry.card_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
