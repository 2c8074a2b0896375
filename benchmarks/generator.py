"""Throughput of the synthetic-image generator on this machine (one process).

    python benchmarks/generator.py [--labels .cache/labels] [--samples 10]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labels", type=Path, default=ROOT / ".cache" / "labels")
    parser.add_argument("--samples", type=int, default=10)
    args = parser.parse_args()
    from bids_dl.synth.generator import SyntheticHeads
    from bids_dl.training.data import load_label_maps, patch_config

    maps, _ = load_label_maps(args.labels, "train")
    print("| output | samples/s (1 process) | s/sample |")
    print("|---|---|---|")
    for name, patch in (("whole grid 96x112x96 (2 mm)", None), ("patch 64^3", 64)):
        heads = SyntheticHeads(maps, patch_config(patch))
        heads.sample(0)
        start = time.perf_counter()
        for seed in range(1, args.samples + 1):
            heads.sample(seed)
        seconds = (time.perf_counter() - start) / args.samples
        print(f"| {name} | {1 / seconds:.2f} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
