"""Speed and memory of ``bids-dl-infer contrast-synthesis`` (whole process) on a 1 mm T1w
(the demo head, 192x228x200), one target and all three, plus the stage timings of a warm
in-process call with and without a given brain mask (the BIDS-App reuses the
brain-extraction task's mask).

Prints a Markdown table. Needs a synthesis model: the shipped one, or
``BIDS_DL_MODEL_DIR=folder`` (with a brain-extraction model beside it).

    python benchmarks/synthesis.py [--runs 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.brain_extraction import cpu_env, timed  # noqa: E402


def write_t1w(folder: Path) -> Path:
    """A 1 mm T1w of the demo head (as in the demo dataset)."""
    from bids_dl.synth.demo import LABELS_FILE, DemoImage, render_image

    template = nib.load(str(LABELS_FILE))
    image = render_image(template.get_fdata().astype("uint8"), template.affine,
                         DemoImage("01", None, None, "T1w", (1.0, 1.0, 1.0), 3))
    path = folder / "sub-01_T1w.nii.gz"
    nib.save(image, str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads allowed")
    args = parser.parse_args()
    env = cpu_env(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t1w = write_t1w(Path(tmp))
        base = [sys.executable, "-m", "bids_dl.cli.infer", "contrast-synthesis", "--device",
                "cpu", "-q"]
        cases = {"T1w -> FLAIR": ["--to", "FLAIR"],
                 "T1w -> FLAIR, T2w, CT": ["--to", "FLAIR", "--to", "T2w", "--to", "CT"]}
        for name, targets in cases.items():
            command = [*base, *targets, str(t1w), f"{tmp}/out"]
            results = [timed(command, env) for _ in range(args.runs)]
            walls = [wall for wall, _ in results]
            rows.append((name, min(walls), statistics.median(walls),
                         max(mb for _, mb in results)))
        os.environ.update(env)
        from bids_dl.models.brain_extraction import extract_brain
        from bids_dl.models.contrast_synthesis import synthesize

        synthesize(t1w, ("FLAIR",), device="cpu")
        tic = time.perf_counter()
        warm = synthesize(t1w, ("FLAIR",), device="cpu")
        warm_seconds = time.perf_counter() - tic
        mask = Path(tmp) / "brain_mask.nii.gz"
        nib.save(extract_brain(t1w, device="cpu").mask, str(mask))
        tic = time.perf_counter()
        reused = synthesize(t1w, ("FLAIR",), device="cpu", brain_mask=mask)
        reused_seconds = time.perf_counter() - tic
    print(f"\n{args.threads} threads, TensorFlow backend, CPU\n")
    print("| case | best wall s | median wall s | peak RSS MB |")
    print("|---|---|---|---|")
    for name, best, median, peak in rows:
        print(f"| whole process, {name} | {best:.2f} | {median:.2f} | {peak:.0f} |")
    for label, seconds, result in (("warm call, T1w -> FLAIR", warm_seconds, warm),
                                   ("warm call, brain mask given (BIDS-App)", reused_seconds,
                                    reused)):
        stages = ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items())
        print(f"| {label} ({stages}) | {seconds:.2f} | | |")


if __name__ == "__main__":
    main()
