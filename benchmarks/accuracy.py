"""Accuracy of the shipped brain-extraction model: Colin27 (real, held out), robustness
variants of Colin27, and held-out synthetic heads of four contrasts at 1 mm and 5 mm slices.

    python benchmarks/accuracy.py [--labels .cache/labels] [--model-dir DIR] [--write-card]
        [--from-card]

The same measurement as the card's (:func:`bids_dl.training.card.evaluate_model`).
``--write-card`` stores the metrics in the model card of ``--model-dir``; ``--from-card``
prints the stored ones instead of measuring again.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def measure(labels_dir: Path, cases: int, entry) -> dict:
    """Held-out metrics of ``entry``'s model (every held-out head: ``cases`` is unused)."""
    from bids_dl.training.card import evaluate_model

    return evaluate_model(entry.weights_path, labels_dir)


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
    from benchmarks.card_metrics import run

    run("brain-extraction", __doc__.split("\n")[0], measure, table, 4, "benchmarks/accuracy.py")


if __name__ == "__main__":
    main()
