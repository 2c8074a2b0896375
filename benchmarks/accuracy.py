"""Accuracy of the shipped brain-extraction model: Colin27 (real, held out), robustness
variants of Colin27, and held-out synthetic heads of four contrasts at 1 mm and 5 mm slices.

    python benchmarks/accuracy.py [--labels .cache/labels] [--from-card]

``--from-card`` prints the metrics stored in the model card (measured by the same code when
the model was written) instead of measuring again.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def measure(labels_dir: Path) -> dict:
    from bids_dl.models.brain_extraction import brain_probability
    from bids_dl.training import evaluate

    def segment(image):
        return brain_probability(image) > 0.5

    return {
        "colin27": evaluate.colin27(segment),
        "colin27_robustness_dice_to_clean": evaluate.robustness(brain_probability,
                                                                evaluate.colin27_head()),
        "synthetic_heldout_dice": evaluate.synthetic_heldout(segment, labels_dir),
    }


def table(metrics: dict) -> str:
    colin = metrics["colin27"]
    lines = ["| test | result | target |", "|---|---|---|",
             f"| Colin27 Dice vs `ch2bet > 0` | {colin['dice_vs_ch2bet']:.3f} | ≥ 0.93 |",
             f"| Colin27 brain volume | {colin['volume_ml']:.0f} ml | peers 1860-1960 ml "
             f"(`ch2bet`: {colin['ch2bet_volume_ml']:.0f} ml) |"]
    for name, value in metrics["colin27_robustness_dice_to_clean"].items():
        lines.append(f"| Colin27 {name}: Dice to the clean result | {value:.3f} | ≥ 0.98 |")
    for resolution, scores in metrics["synthetic_heldout_dice"].items():
        for contrast, value in scores.items():
            lines.append(f"| held-out synthetic {contrast}, {resolution} | {value:.3f} | ≥ 0.97 |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labels", type=Path, default=ROOT / ".cache" / "labels")
    parser.add_argument("--from-card", action="store_true")
    args = parser.parse_args()
    if args.from_card:
        from bids_dl.models.registry import get_entry

        metrics = get_entry("brain-extraction").read_card()["metrics"]
    else:
        metrics = measure(args.labels)
    print(table(metrics))


if __name__ == "__main__":
    main()
