"""Speed and memory of the BIDS-App: a participant-level run on the embedded demo (6 images,
2 participants) from a fresh work dir, the same run again (all cached), and the group level
over N fabricated participants.

Prints a Markdown table: wall seconds, seconds per image and the peak resident memory of the
whole process tree (the main process plus Nipype's workers, sampled every 0.1 s).

    python benchmarks/participant.py [--nprocs 2] [--group-participants 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _tree_rss_mb(pid: int) -> float:
    """Resident memory (MB) of ``pid`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(stat[1]), []).append(int(entry.name))
            rss[int(entry.name)] = int(stat[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        total += rss.get(current, 0)
        stack.extend(children.get(current, []))
    return total / 2**20


def run_measured(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak process-tree RSS (MB) of ``command`` (must exit 0 or 1)."""
    tic = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    peak = 0.0
    while process.poll() is None:
        peak = max(peak, _tree_rss_mb(process.pid))
        time.sleep(0.1)
    wall = time.perf_counter() - tic
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: exit {process.returncode}\n"
                           f"{process.stderr.read()[-3000:]}")
    return wall, peak


def fabricate_derivatives(root: Path, participants: int) -> None:
    """Mask sidecars with measures for ``participants`` participants (group benchmark)."""
    rng = np.random.default_rng(0)
    for index in range(participants):
        subject = f"{index:05d}"
        folder = root / f"sub-{subject}" / "anat"
        folder.mkdir(parents=True)
        meta = {"Type": "Brain", "Model": {"name": "brain-extraction"},
                "Sources": [f"bids:raw:sub-{subject}/anat/sub-{subject}_T1w.nii.gz"],
                "Measures": {"BrainVolumeMl": round(float(rng.normal(1500, 90)), 2),
                             "IntracranialFraction": round(float(rng.normal(0.4, 0.03)), 4)}}
        (folder / f"sub-{subject}_desc-brain_mask.json").write_text(json.dumps(meta))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--group-participants", type=int, default=1000)
    args = parser.parse_args()
    from bids_dl.synth.demo import DEMO_IMAGES, write_demo_dataset

    bids_dl = [sys.executable, "-m", "bids_dl.cli.run"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        demo = write_demo_dataset(Path(tmp) / "demo")
        out, work = demo / "derivatives" / "bids-dl", Path(tmp) / "work"
        participant = [*bids_dl, str(demo), str(out), "participant", "-w", str(work),
                       "--nprocs", str(args.nprocs)]
        images = len(DEMO_IMAGES)
        for label in ("participant level, demo, fresh work dir",
                      "participant level, demo, rerun (all cached)"):
            wall, peak = run_measured(participant)
            rows.append((label, images, wall, wall / images, peak))
        wall, peak = run_measured([*bids_dl, str(demo), str(out), "group"])
        rows.append(("group level, demo", images, wall, wall / images, peak))
        fake = Path(tmp) / "many"
        fabricate_derivatives(fake, args.group_participants)
        wall, peak = run_measured([*bids_dl, str(demo), str(fake), "group"])
        rows.append((f"group level, {args.group_participants} participants",
                     args.group_participants, wall, wall / args.group_participants, peak))
    print(f"\n{os.cpu_count()} CPUs, --nprocs {args.nprocs}, TensorFlow backend, CPU\n")
    print("| run | images | wall s | s per image | peak RSS MB (process tree) |")
    print("|---|---|---|---|---|")
    for label, count, wall, per, peak in rows:
        print(f"| {label} | {count} | {wall:.1f} | {per:.2f} | {peak:.0f} |")


if __name__ == "__main__":
    main()
