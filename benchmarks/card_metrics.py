"""The command line the task accuracy benchmarks share: measure a model's metrics, or read
them from its card, and optionally store them in the card (the card is not hashed, so the
model's sha256 stays valid)."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(task: str, description: str, measure: Callable, table: Callable[[dict], str],
        default_cases: int, script: str) -> None:
    """``measure(labels_dir, cases, entry) -> metrics`` of ``task``'s model; prints
    ``table(metrics)``. Options: --labels, --cases, --model-dir, --write-card, --from-card."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--labels", type=Path, default=ROOT / ".cache" / "labels")
    parser.add_argument("--cases", type=int, default=default_cases)
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--write-card", action="store_true")
    parser.add_argument("--from-card", action="store_true")
    args = parser.parse_args()
    if args.model_dir:
        os.environ["BIDS_DL_MODEL_DIR"] = str(args.model_dir.resolve())
    from bids_dl.models.registry import get_entry

    entry = get_entry(task)
    if args.from_card:
        metrics = entry.read_card()["metrics"]
    else:
        metrics = measure(args.labels, args.cases, entry)
        if args.write_card:
            from bids_dl.utils.io import atomic_path

            card = entry.read_card()
            card["metrics"] = metrics
            card["metrics_measured_with"] = (
                "KERAS_BACKEND=tensorflow, CPU, accurate group normalisation "
                f"(bids_dl.models.layers) ({script})")
            with atomic_path(entry.card_path) as tmp:
                Path(tmp).write_text(json.dumps(card, indent=2) + "\n")
    print(table(metrics))
