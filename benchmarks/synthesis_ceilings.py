"""How far a T1w -> FLAIR / T2w model can get on the synthesis benchmark's heads: SSIM and
PSNR of oracle renderings that know more of each head than its T1w shows
(:func:`bids_dl.training.evaluate_synthesis.oracle_ceilings`), beside the shipped model's
held-out scores from its card and the issue's targets.

    python benchmarks/synthesis_ceilings.py [--labels .cache/labels] [--cases 8]
        [--split heldout|train]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET = {"ssim": "≥ 0.90", "psnr_db": "≥ 28"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labels", type=Path, default=ROOT / ".cache" / "labels")
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--split", choices=("heldout", "train"), default="heldout")
    args = parser.parse_args()
    from bids_dl.models.registry import get_entry
    from bids_dl.training.evaluate_synthesis import ORACLES, oracle_ceilings

    ceilings = oracle_ceilings(args.labels, args.cases, args.split)
    shipped = get_entry("contrast-synthesis").read_card().get("metrics", {}).get(
        "synthetic_heldout", {})
    rows = [*(f"oracle: {name}" for name in ORACLES), "shipped model (card, held out)",
            "target"]
    print(f"{args.cases} {args.split} heads; SSIM / PSNR (dB) inside the brain\n")
    print("| rendering | FLAIR | T2w |\n|---|---|---|")
    for row in rows:
        cells = []
        for target in ("FLAIR", "T2w"):
            if row == "target":
                cells.append(f"{TARGET['ssim']} / {TARGET['psnr_db']}")
                continue
            source = shipped if row.startswith("shipped") else ceilings
            prefix = "" if row.startswith("shipped") else row.removeprefix("oracle: ") + ": "
            ssim = source.get(f"{prefix}{target}_ssim_brain")
            psnr = source.get(f"{prefix}{target}_psnr_db_brain")
            cells.append("-" if ssim is None else f"{ssim:.3f} / {psnr:.1f}")
        print(f"| {row} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
