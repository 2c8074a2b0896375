"""The ``bids-dl`` command line (BIDS-Apps specification)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from .. import __version__
from ..utils.device import DEVICES

TASK_NAMES = ("brain-extraction", "lesion-segmentation", "contrast-synthesis")
#: Nipype execution plugins bids-dl passes through (the *Graph ones submit every node as a
#: cluster job with dependencies and return at once).
PLUGINS = ("MultiProc", "Linear", "SLURM", "SLURMGraph", "SGE", "SGEGraph", "PBS", "PBSGraph")

DESCRIPTION = f"""\
bids-dl {__version__}: deep-learning brain extraction, white-matter lesion segmentation and
contrast synthesis (FLAIR, T2w, pseudo-CT from a T1w) for the T1w, T2w and FLAIR images of a
BIDS dataset, written as BIDS-Derivatives with visual reports. Runs fully offline, on a GPU
when there is one."""

EPILOG = """\
examples:
  bids-dl /data/bids /data/bids/derivatives/bids-dl participant --participant-label 01 02
  bids-dl /data/bids /data/bids/derivatives/bids-dl group

exit codes: 0 success; 1 a participant failed (see OUTPUT_DIR/logs); 2 bad arguments or
input (nothing processed)."""


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be 1 or more")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{value}: must be more than 0")
    return number


def _json_object(value: str) -> dict:
    """A JSON object given inline or as the path of a JSON file."""
    text = Path(value).read_text() if Path(value).is_file() else value
    try:
        parsed = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{value}: not JSON ({error})") from None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError(f"{value}: must be a JSON object")
    return parsed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bids-dl", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bids_dir", type=Path, metavar="BIDS_DIR",
                        help="the root folder of a BIDS valid dataset (sub-XXXXX folders "
                             "should be found at the top level in this folder)")
    parser.add_argument("output_dir", type=Path, metavar="OUTPUT_DIR",
                        help="the output path for the outcomes of preprocessing and visual "
                             "reports (BIDS_DIR/derivatives/bids-dl is the usual place)")
    parser.add_argument("analysis_level", choices=["participant", "group"],
                        help="processing stage to be run: 'participant' (each participant's "
                             "images) or 'group' (measures table and report of all)")
    parser.add_argument("--version", action="version", version=f"bids-dl {__version__}")

    bids = parser.add_argument_group("Options for filtering BIDS queries")
    bids.add_argument("--participant-label", "--participant_label", nargs="+", metavar="LABEL",
                      help="a space delimited list of participant identifiers or a single "
                           "identifier (the sub- prefix can be removed)")
    bids.add_argument("--session-label", nargs="+", metavar="LABEL",
                      help="only these sessions (the ses- prefix can be removed)")
    bids.add_argument("--bids-filter-file", type=Path, metavar="FILE",
                      help="a JSON file describing custom BIDS input filters using PyBIDS, "
                           'e.g. {"t1w": {"acquisition": "mprage"}, "flair": {"run": 1}}')
    bids.add_argument("--skip-bids-validation", "--skip_bids_validation", action="store_true",
                      help="assume the input dataset is BIDS compliant and skip validation")

    work = parser.add_argument_group("Options to handle performance")
    work.add_argument("--nprocs", "--nthreads", "--n-cpus", dest="nprocs", type=_positive,
                      default=os.cpu_count() or 1,
                      help="maximum number of processes and threads across all processes "
                           "(default: all CPUs)")
    work.add_argument("--omp-nthreads", type=_positive, default=None,
                      help="maximum number of threads per CNN process (default: nprocs - 1, "
                           "at least 1, at most 8)")
    work.add_argument("--mem-gb", "--mem_gb", type=_positive_float, default=None,
                      help="upper bound memory limit for bids-dl processes (GB)")
    work.add_argument("--plugin", choices=PLUGINS, default="MultiProc",
                      help="Nipype execution plugin (default MultiProc: this machine); "
                           "SLURM/SGE/PBS submit each node as a cluster job and wait, the "
                           "*Graph variants submit them all with dependencies and return "
                           "(the work dir must then be on a shared file system)")
    work.add_argument("--plugin-args", type=_json_object, default=None, metavar="JSON",
                      help="arguments of the Nipype plugin, as JSON or a JSON file, e.g. "
                           '\'{"sbatch_args": "--mem=8G --time=1:00:00"}\'')
    work.add_argument("--device", choices=DEVICES, default="auto",
                      help="where the CNNs run: a GPU when there is one (auto), or force "
                           "cpu or gpu (error when none is visible)")

    tasks = parser.add_argument_group("Workflow configuration")
    tasks.add_argument("--tasks", nargs="+", choices=TASK_NAMES, default=None,
                       metavar="TASK",
                       help=f"which CNN tasks to run, of {', '.join(TASK_NAMES)} (default: "
                            "every task whose model is installed and not marked "
                            "experimental in its model card)")

    tasks.add_argument("--synthesize", nargs="+", choices=("FLAIR", "T2w", "CT"),
                       metavar="CONTRAST",
                       help="contrasts that contrast-synthesis makes from each session's "
                            "T1w, of FLAIR, T2w, CT (default: FLAIR, only where a session "
                            "has none); implies --tasks contrast-synthesis")
    tasks.add_argument("--synthesize-missing", action="store_true",
                       help="lesion segmentation uses a FLAIR synthesised from the T1w where "
                            "a session has none (its outputs say so) instead of the T1w alone")

    other = parser.add_argument_group("Other options")
    other.add_argument("-w", "--work-dir", type=Path, default=Path("work"),
                       help="path where intermediate results should be stored; a rerun with "
                            "the same work dir recomputes nothing (default: ./work)")
    other.add_argument("--write-graph", action="store_true",
                       help="write the workflow graph (.dot and .svg) to OUTPUT_DIR/logs")
    other.add_argument("--stop-on-first-crash", action="store_true",
                       help="force stopping on first crash, even if a work directory was "
                            "specified")
    other.add_argument("-v", "--verbose", dest="verbose_count", action="count", default=0,
                       help="increases log verbosity for each occurrence (-vv: debug)")
    return parser
