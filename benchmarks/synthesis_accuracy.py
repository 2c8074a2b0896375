"""Accuracy of the contrast-synthesis model: held-out synthetic heads (SSIM and PSNR inside
the brain for FLAIR and T2w, CT MAE over the head, lesion contrast on the synthetic FLAIR),
the real Colin27 T1w (tissue orderings, HU), and lesion segmentation on a synthetic FLAIR +
T1w against the acquired FLAIR + T1w (needs the lesion model too).

    python benchmarks/synthesis_accuracy.py [--labels .cache/labels] [--cases 8]
        [--model-dir DIR] [--write-card] [--from-card]

``--model-dir``: a folder with the synthesis model (and the brain-extraction and lesion
models, or they come from the package). ``--write-card`` stores the metrics in the
synthesis model's card (its sha256 stays valid: the card is not hashed). ``--cases N``: N
paired heads (half with lesions) and the lesion Dice ratio on 3N/4 lesion heads (session 12:
8 and 6; two lesion heads per set moved the lesion metrics by 0.1-0.2 between sets).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TARGETS = {"FLAIR_ssim_brain": "≥ 0.90", "FLAIR_psnr_db_brain": "≥ 28",
           "T2w_ssim_brain": "≥ 0.90", "T2w_psnr_db_brain": "≥ 28", "CT_mae_hu_head": "≤ 60",
           "FLAIR_lesion_to_wm_contrast": "> 1.2", "lesion_dice_ratio": "≥ 0.8"}


def measure(labels_dir: Path, cases: int, entry) -> dict:
    import numpy as np

    from bids_dl.models.contrast_synthesis import synthesize
    from bids_dl.models.lesion_segmentation import (
        SYNTHETIC_FLAIR_READINGS,
        SYNTHETIC_FLAIR_SET,
        card_synthetic_reading,
        segment_lesions,
        synthetic_flair_card,
    )
    from bids_dl.models.registry import available, get_entry
    from bids_dl.training import evaluate_lesions, evaluate_synthesis
    from bids_dl.training.card import evaluate_synthesis_model

    metrics = {"synthetic_heldout": evaluate_synthesis_model(entry.weights_path, labels_dir,
                                                              cases)}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            metrics["colin27"] = evaluate_synthesis.colin27_synthesis(Path(tmp))
        except FileNotFoundError as error:
            metrics["colin27"] = f"not measured: {error}"
    if available("lesion-segmentation"):
        def segment(flair, t1w):
            return np.asarray(segment_lesions(flair, t1w).mask.dataobj) > 0

        def segment_synthetic(flair, t1w):  # the pipeline's reading (--synthesize-missing)
            return np.asarray(segment_lesions(flair, t1w, synthetic_flair=True).mask.dataobj) > 0

        def synthesise_flair(path):
            return synthesize(path, ("FLAIR",), device="cpu").images["FLAIR"]

        metrics["lesions_on_synthetic_flair"] = evaluate_lesions.synthetic_flair_dice_ratio(
            segment, synthesise_flair, labels_dir, max(2, cases * 3 // 4), segment_synthetic)
        lesion_card = get_entry("lesion-segmentation").read_card()
        reader_card = synthetic_flair_card(lesion_card)  # reads the synthetic FLAIRs
        metrics["lesions_on_synthetic_flair"]["reading"] = SYNTHETIC_FLAIR_READINGS[
            card_synthetic_reading(reader_card)]
        thresholds = ", ".join(f"{inputs} {value:.2f}"
                               for inputs, value in lesion_card.get("thresholds", {}).items())
        metrics["lesions_on_synthetic_flair"]["lesion_model"] = (
            f"sha256 {str(lesion_card.get('sha256'))[:12]}, mirrored inference, "
            f"thresholds {thresholds or 'the default'}")
        if reader_card is not lesion_card:
            metrics["lesions_on_synthetic_flair"]["synthetic_flair_model"] = (
                f"sha256 {str(reader_card.get('sha256'))[:12]}, synthetic FLAIR+T1w threshold "
                f"{reader_card.get('thresholds', {}).get(SYNTHETIC_FLAIR_SET, 0.5):.2f}")
    else:
        metrics["lesions_on_synthetic_flair"] = "not measured: no lesion model"
    return metrics


def table(metrics: dict) -> str:
    held = metrics["synthetic_heldout"]
    lines = ["| test | value | target |", "|---|---|---|"]
    for key, target in TARGETS.items():
        if key in held:
            lines.append(f"| held-out synthetic ({held['cases']} heads): {key} | "
                         f"{held[key]:.3f} | {target} |")
    lesions = metrics.get("lesions_on_synthetic_flair")
    if isinstance(lesions, dict):
        lines.append(f"| lesion Dice, synthetic FLAIR + T1w / acquired FLAIR + T1w "
                     f"({lesions['cases']} heads) | {lesions['dice_synthetic_flair']:.3f} / "
                     f"{lesions['dice_acquired_flair']:.3f} = {lesions['ratio']} | "
                     f"{TARGETS['lesion_dice_ratio']} |")
        if "ratio_single_reading" in lesions:
            lines.append(f"| ... the synthetic FLAIR + T1w reading alone (not the pipeline's) | "
                         f"{lesions['dice_synthetic_flair_single_reading']:.3f} / "
                         f"{lesions['dice_acquired_flair']:.3f} = "
                         f"{lesions['ratio_single_reading']} | |")
    colin = metrics.get("colin27")
    if isinstance(colin, dict):
        for target in ("FLAIR", "T2w"):
            values = colin[target]
            lines.append(f"| Colin27 {target} CSF / GM / WM (WM = 1) | {values['csf']:.2f} / "
                         f"{values['gm']:.2f} / {values['wm']:.2f} | ordering holds: "
                         f"{colin['orderings_hold'][target]} |")
        lines.append(f"| Colin27 CT brain median / outside-brain 99th percentile (HU) | "
                     f"{colin['CT']['brain_median_hu']:.0f} / "
                     f"{colin['CT']['outside_brain_p99_hu']:.0f} | 20-45 / > 500: "
                     f"{colin['orderings_hold']['CT']} |")
    return "\n".join(lines)


def main() -> None:
    from benchmarks.card_metrics import run

    run("contrast-synthesis", __doc__.split("\n")[0], measure, table, 8,
        "benchmarks/synthesis_accuracy.py")


if __name__ == "__main__":
    main()
