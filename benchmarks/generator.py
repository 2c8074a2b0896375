"""Throughput of the synthetic-image generators of the three tasks on this machine (one
process): what the CPU side can feed a training run.

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
    from bids_dl.synth.lesions import HeadsWithLesions
    from bids_dl.training.data import load_label_maps
    from bids_dl.training.train import make_heads

    maps, _ = load_label_maps(args.labels, "train")
    print("| task | output | samples/s (1 process) | s/sample |")
    print("|---|---|---|---|")
    for task, name, patch, pooled in (
            ("brain-extraction", "whole grid 96x112x96 (2 mm)", None, False),
            ("brain-extraction", "patch 64^3", 64, False),
            ("lesion-segmentation", "whole head for a patch pool (1.5 mm)", None, True),
            ("lesion-segmentation", "patch 64^3", 64, False),
            ("contrast-synthesis", "whole head for a patch pool", None, True),
            ("contrast-synthesis", "patch 64^3", 64, False)):
        heads = make_heads(task, maps, patch, pooled=pooled)
        for index in range(len(maps) if isinstance(heads, HeadsWithLesions) else 0):
            heads.anatomy(index)  # once per label map in a run: steady state below
        heads.sample(0)
        start = time.perf_counter()
        for seed in range(1, args.samples + 1):
            heads.sample(seed)
        seconds = (time.perf_counter() - start) / args.samples
        print(f"| {task} | {name} | {1 / seconds:.2f} | {seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
