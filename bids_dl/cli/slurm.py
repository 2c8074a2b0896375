"""``bids-dl-slurm``: one participant per SLURM job, then the group level.

Writes, into ``--jobs-dir``, ``participants.txt`` (one label a line), ``participant.sbatch``
(a job array: task *i* runs ``bids-dl ... participant --participant-label`` of line *i*, with
its own work dir) and ``group.sbatch`` (the group level), and, with ``--submit``, submits the
array and then the group job with ``--dependency=afterany`` on it: the group level runs when
every participant job has ended, failed ones included, and lists the failures in its report.
Jobs run the bids-dl of this installation (a venv) or a Singularity/Apptainer image
(``--container``). Every path is made absolute, and a container binds each at the same path.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

EXIT_OK, EXIT_USAGE = 0, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bids-dl-slurm", description=__doc__.split("\n")[0],
        epilog="Arguments after -- go to every bids-dl participant run, e.g. "
               "-- --tasks brain-extraction --skip-bids-validation")
    parser.add_argument("bids_dir", type=Path, metavar="BIDS_DIR")
    parser.add_argument("output_dir", type=Path, metavar="OUTPUT_DIR")
    parser.add_argument("--participant-label", nargs="+", metavar="LABEL",
                        help="only these participants (default: every sub-* folder)")
    parser.add_argument("-w", "--work-dir", type=Path, default=Path("work"),
                        help="shared work folder; each job uses WORK_DIR/sub-<label>")
    parser.add_argument("--jobs-dir", type=Path, default=None,
                        help="where the job scripts and job logs go (default: "
                             "WORK_DIR/slurm)")
    resources = parser.add_argument_group("Resources of each participant job")
    resources.add_argument("--cpus-per-task", type=int, default=4)
    resources.add_argument("--mem", default="16G", help="memory per job (sbatch --mem)")
    resources.add_argument("--time", default="02:00:00", help="wall time per job")
    resources.add_argument("--gpus", type=int, default=0, help="GPUs per job (--gres=gpu:N)")
    resources.add_argument("--partition", default=None)
    resources.add_argument("--account", default=None)
    resources.add_argument("--max-parallel", type=int, default=None, metavar="N",
                           help="at most N participant jobs at a time (array %%N)")
    runtime = parser.add_argument_group("What the jobs run")
    runtime.add_argument("--container", type=Path, default=None, metavar="IMAGE.sif",
                         help="a Singularity/Apptainer image of bids-dl (default: the "
                              "bids-dl of this installation)")
    runtime.add_argument("--container-runtime", default="singularity",
                         choices=("singularity", "apptainer"))
    runtime.add_argument("--submit", action="store_true",
                         help="submit the array and the dependent group job with sbatch")
    return parser


def find_participants(bids_dir: Path, labels: list[str] | None) -> list[str]:
    """Participant labels (without ``sub-``) of the ``sub-*`` folders of ``bids_dir``,
    restricted to ``labels``; raises ``ValueError`` naming labels that are not there."""
    from ..utils.bids import clean_label

    found = sorted(p.name[4:] for p in bids_dir.glob("sub-*") if p.is_dir())
    if labels is None:
        return found
    wanted = [clean_label(label) for label in labels]
    missing = [label for label in wanted if label not in found]
    if missing:
        raise ValueError(f"{bids_dir}: no folder for participant(s) {', '.join(missing)}")
    return sorted(set(wanted))


def app_command(args) -> list[str]:
    """The command that runs bids-dl inside a job (venv executable or container)."""
    if args.container is None:
        executable = Path(sys.executable).parent / "bids-dl"
        if not executable.is_file():
            executable = Path(shutil.which("bids-dl") or "bids-dl")
        return [str(executable)]
    binds = [f"{args.bids_dir}:{args.bids_dir}:ro", f"{args.output_dir}:{args.output_dir}",
             f"{args.work_dir}:{args.work_dir}"]
    command = [args.container_runtime, "run", "--cleanenv"]
    if args.gpus:
        command.append("--nv")
    for bind in binds:
        command += ["-B", bind]
    return command + [str(args.container)]


def sbatch_header(args, name: str, log: str, array: str | None = None) -> list[str]:
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}", f"#SBATCH --output={log}",
             f"#SBATCH --time={args.time}"]
    if array:
        lines += [f"#SBATCH --array={array}", f"#SBATCH --cpus-per-task={args.cpus_per_task}",
                  f"#SBATCH --mem={args.mem}"]
        if args.gpus:
            lines.append(f"#SBATCH --gres=gpu:{args.gpus}")
    else:  # the group level reads tables and writes one report: small
        lines += ["#SBATCH --cpus-per-task=1", "#SBATCH --mem=2G"]
    for option in ("partition", "account"):
        if getattr(args, option):
            lines.append(f"#SBATCH --{option}={getattr(args, option)}")
    return lines + ["set -euo pipefail"]


def write_jobs(args, participants: list[str], extra: list[str]) -> tuple[Path, Path]:
    """``participants.txt``, ``participant.sbatch`` and ``group.sbatch`` in the jobs dir."""
    jobs = args.jobs_dir
    (jobs / "logs").mkdir(parents=True, exist_ok=True)
    (jobs / "participants.txt").write_text("".join(f"{label}\n" for label in participants))
    app = " ".join(shlex.quote(part) for part in app_command(args))
    data, out, work = (shlex.quote(str(p)) for p in (args.bids_dir, args.output_dir,
                                                     args.work_dir))
    passed = " ".join(shlex.quote(part) for part in extra)
    array = f"1-{len(participants)}" + (f"%{args.max_parallel}" if args.max_parallel else "")
    participant = sbatch_header(args, "bids-dl", str(jobs / "logs" / "participant_%A_%a.log"),
                                array) + [
        f"label=$(sed -n \"${{SLURM_ARRAY_TASK_ID}}p\" {shlex.quote(str(jobs))}/participants.txt)",
        'echo "bids-dl: participant ${label} (array task ${SLURM_ARRAY_TASK_ID}) on $(hostname)"',
        f"{app} {data} {out} participant --participant-label \"${{label}}\" "
        f"-w {work}/sub-\"${{label}}\" --nprocs \"${{SLURM_CPUS_PER_TASK:-1}}\" {passed}".rstrip(),
    ]
    group = sbatch_header(args, "bids-dl-group", str(jobs / "logs" / "group_%j.log")) + [
        f"{app} {data} {out} group",
    ]
    paths = jobs / "participant.sbatch", jobs / "group.sbatch"
    for path, lines in zip(paths, (participant, group)):
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o755)
    return paths


def submit(participant_script: Path, group_script: Path) -> tuple[str, str]:
    """Submit the array, then the group job after it; returns both job ids."""
    array_id = _sbatch([str(participant_script)])
    group_id = _sbatch([f"--dependency=afterany:{array_id}", str(group_script)])
    return array_id, group_id


def _sbatch(arguments: list[str]) -> str:
    result = subprocess.run(["sbatch", "--parsable", *arguments], capture_output=True,
                            text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"sbatch {' '.join(arguments)}: {result.stderr.strip()}")
    match = re.match(r"(\d+)", result.stdout.strip())
    if not match:
        raise RuntimeError(f"sbatch {' '.join(arguments)}: no job id in {result.stdout!r}")
    return match[1]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = build_parser().parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    args.bids_dir, args.output_dir = args.bids_dir.resolve(), args.output_dir.resolve()
    args.work_dir = args.work_dir.resolve()
    args.jobs_dir = (args.jobs_dir or args.work_dir / "slurm").resolve()
    if args.container is not None:
        args.container = args.container.resolve()
    problems = []
    if not (args.bids_dir / "dataset_description.json").is_file():
        problems.append(f"{args.bids_dir}: not a BIDS dataset (no dataset_description.json)")
    if args.container is not None and not args.container.is_file():
        problems.append(f"{args.container}: no such container image")
    try:
        participants = find_participants(args.bids_dir, args.participant_label)
    except ValueError as error:
        problems.append(str(error))
        participants = []
    if not problems and not participants:
        problems.append(f"{args.bids_dir}: no sub-* folders")
    if problems:
        for problem in problems:
            print(f"bids-dl-slurm: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    args.output_dir.mkdir(parents=True, exist_ok=True)
    participant_script, group_script = write_jobs(args, participants, extra)
    print(f"{len(participants)} participant job(s): {participant_script}\n"
          f"group job: {group_script}")
    if args.submit:
        try:
            array_id, group_id = submit(participant_script, group_script)
        except (RuntimeError, FileNotFoundError) as error:
            print(f"bids-dl-slurm: error: {error}", file=sys.stderr)
            return 1
        print(f"submitted array {array_id} and group job {group_id} (after the array)")
    else:
        print(f"submit with: jobid=$(sbatch --parsable {participant_script}) && "
              f"sbatch --dependency=afterany:$jobid {group_script}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
