"""Speed and memory of ``bids-dl-infer lesion-segmentation`` (whole process) on a synthetic
1 mm FLAIR + T1w pair with lesions (rendered from the demo head), FLAIR alone and T1w alone;
in process, also the synthetic-FLAIR reading (``--synthetic-flair``: a second pass of the tiles,
no registration; the rendered FLAIR stands in for a synthetic one, which costs the same).

Prints a Markdown table: best and median wall seconds of N runs and peak resident memory,
plus the in-process stage timings of one warm call.

    python benchmarks/lesions.py [--runs 2] [--threads 2] [--grid-spacings 1.2 1.0]

``--grid-spacings``: also time the warm call (brain mask given) with the model run on finer
grids than its own 1.5 mm (``bids-dl-train lesion-segmentation --grid-spacing``): what a model
trained there would cost; the shipped weights stand in (same architecture), so only the time
means anything.
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
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.brain_extraction import cpu_env, timed  # noqa: E402


def write_pair(folder: Path) -> tuple[Path, Path]:
    """A 1 mm FLAIR and T1w of the demo head with 25 lesions."""
    from bids_dl.synth.demo import LABELS_FILE
    from bids_dl.synth.lesions import LesionAnatomy
    from bids_dl.training.evaluate_lesions import render_case

    template = nib.load(str(LABELS_FILE))
    labels = np.asarray(template.dataobj)
    flair, t1w, _, _ = render_case(labels, LesionAnatomy.from_labels(labels), 7, 25)
    paths = folder / "sub-01_FLAIR.nii.gz", folder / "sub-01_T1w.nii.gz"
    nib.save(flair, str(paths[0]))
    nib.save(t1w, str(paths[1]))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads allowed")
    parser.add_argument("--grid-spacings", type=float, nargs="*", default=[], metavar="MM")
    args = parser.parse_args()
    env = cpu_env(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        flair, t1w = write_pair(Path(tmp))
        base = [sys.executable, "-m", "bids_dl.cli.infer", "lesion-segmentation", "--device",
                "cpu", "-q"]
        cases = {"FLAIR + T1w (1 mm)": ["--flair", str(flair), "--t1w", str(t1w)],
                 "FLAIR alone (1 mm)": ["--flair", str(flair)],
                 "T1w alone (1 mm)": ["--t1w", str(t1w)]}
        for name, inputs in cases.items():
            command = [*base, *inputs, f"{tmp}/out"]
            results = [timed(command, env) for _ in range(args.runs)]
            walls = [wall for wall, _ in results]
            rows.append((name, min(walls), statistics.median(walls),
                         max(mb for _, mb in results)))
        os.environ.update(env)
        from bids_dl.models.lesion_segmentation import segment_lesions

        segment_lesions(flair, t1w, device="cpu")
        tic = time.perf_counter()
        warm = segment_lesions(flair, t1w, device="cpu")
        warm_seconds = time.perf_counter() - tic
        # in the BIDS-App the brain mask of the brain-extraction task is reused
        from bids_dl.models.brain_extraction import extract_brain

        mask = Path(tmp) / "brain_mask.nii.gz"
        nib.save(extract_brain(flair, device="cpu").mask, str(mask))
        tic = time.perf_counter()
        reused = segment_lesions(flair, t1w, device="cpu", brain_mask=mask)
        reused_seconds = time.perf_counter() - tic
        tic = time.perf_counter()
        synthetic = segment_lesions(flair, t1w, device="cpu", brain_mask=mask,
                                    synthetic_flair=True)
        synthetic_seconds = time.perf_counter() - tic
        finer = []
        for spacing in args.grid_spacings:
            tic = time.perf_counter()
            result = segment_lesions(flair, t1w, device="cpu", brain_mask=mask,
                                     grid_spacing=spacing)
            finer.append((spacing, time.perf_counter() - tic, result.timings))
    print(f"\n{args.threads} threads, TensorFlow backend, CPU\n")
    print("| inputs | best wall s | median wall s | peak RSS MB |")
    print("|---|---|---|---|")
    for name, best, median, peak in rows:
        print(f"| {name} | {best:.2f} | {median:.2f} | {peak:.0f} |")
    stages = ", ".join(f"{k} {v:.2f}" for k, v in warm.timings.items())
    print(f"\nwarm in-process call (FLAIR + T1w): {warm_seconds:.2f} s ({stages})")
    stages = ", ".join(f"{k} {v:.2f}" for k, v in reused.timings.items())
    print(f"the same with the brain mask given (as in the BIDS-App): {reused_seconds:.2f} s "
          f"({stages})")
    stages = ", ".join(f"{k} {v:.2f}" for k, v in synthetic.timings.items())
    print(f"the same, synthetic-FLAIR reading (--synthesize-missing): {synthetic_seconds:.2f} s "
          f"({stages})")
    for spacing, seconds, timings in finer:
        stages = ", ".join(f"{k} {v:.2f}" for k, v in timings.items())
        print(f"the same with the brain mask given, the model run on a {spacing:g} mm grid: "
              f"{seconds:.2f} s ({stages})")


if __name__ == "__main__":
    main()
