"""``bids-dl BIDS_DIR OUTPUT_DIR {participant,group}``: the BIDS-App entry point.

The main process never imports Keras: the CNNs run in Nipype's MultiProc workers (forked),
each of which loads the models once, or in cluster jobs (``--plugin SLURM`` and friends).
Nipype's version check (etelemetry) is switched off before Nipype is imported: nothing ever
phones home.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .parser import build_parser

os.environ["NIPYPE_NO_ET"] = "1"  # before any import of nipype

EXIT_OK, EXIT_PARTICIPANT_FAILED, EXIT_USAGE = 0, 1, 2
CODE_URL = "https://github.com/bids-dl/bids-dl"
LOGGER = logging.getLogger("bids_dl")


class UsageError(ValueError):
    """Arguments that cannot work (paths, labels); the message says why."""


@dataclass
class Paths:
    bids_dir: Path
    output_dir: Path
    work_dir: Path
    logs_dir: Path


def _writable_dir(path: Path, what: str) -> None:
    """Create ``path`` if needed and prove a file can be written in it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".bids-dl-write-test-"):
            pass
    except OSError as error:
        raise UsageError(f"{what} {path}: not writable ({error.strerror or error})") from None


def check_paths(opts) -> Paths:
    """Resolve and check BIDS_DIR, OUTPUT_DIR and the work dir (before any work)."""
    from ..utils.bids import read_description

    bids_dir = opts.bids_dir.resolve()
    read_description(bids_dir)
    output_dir = opts.output_dir.resolve()
    if output_dir == bids_dir:
        raise UsageError(f"OUTPUT_DIR {output_dir} is BIDS_DIR: derivatives must not be mixed "
                         f"into the raw dataset; use {bids_dir / 'derivatives' / 'bids-dl'}")
    if bids_dir.is_relative_to(output_dir):
        raise UsageError(f"OUTPUT_DIR {output_dir} contains BIDS_DIR {bids_dir}; choose a "
                         "folder of its own, e.g. BIDS_DIR/derivatives/bids-dl")
    _writable_dir(output_dir, "OUTPUT_DIR")
    paths = Paths(bids_dir, output_dir, opts.work_dir.resolve(), output_dir / "logs")
    _writable_dir(paths.logs_dir, "OUTPUT_DIR")
    if opts.analysis_level == "participant":
        _writable_dir(paths.work_dir, "--work-dir")
    return paths


def setup_logging(verbose: int, logs_dir: Path | None = None) -> Path | None:
    """bids-dl messages to stderr (and a log file in ``logs_dir``); Nipype's at WARNING
    unless ``-v`` (INFO) or ``-vv`` (DEBUG)."""
    level = logging.DEBUG if verbose >= 2 else logging.INFO
    formatter = logging.Formatter("%(asctime)s [%(name)s %(levelname)s] %(message)s",
                                  "%y%m%d-%H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    log_file = None
    if logs_dir is not None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        log_file = logs_dir / f"bids-dl_{stamp}_{os.getpid()}.log"
        handlers.append(logging.FileHandler(log_file))
    for handler in handlers:
        handler.setFormatter(formatter)
    nipype_level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    for name, chosen in (("bids_dl", level), ("nipype.workflow", nipype_level),
                         ("nipype.interface", nipype_level), ("nipype.utils", nipype_level)):
        logger = logging.getLogger(name)
        logger.handlers = list(handlers)
        logger.setLevel(chosen)
        logger.propagate = False
    return log_file


def container_info() -> dict | None:
    """``{"Type", "Tag"|"URI"}`` when running inside a bids-dl container image (Singularity
    first: an image converted from the Docker one keeps the Docker image's variable)."""
    for variable in ("APPTAINER_CONTAINER", "SINGULARITY_CONTAINER"):
        if os.environ.get(variable):
            return {"Type": "singularity", "URI": os.environ[variable]}
    if os.environ.get("BIDS_DL_CONTAINER"):
        kind, _, tag = os.environ["BIDS_DL_CONTAINER"].partition("://")
        return {"Type": kind, "Tag": tag}
    return None


def write_dataset_description(paths: Paths, raw: dict) -> Path:
    """``OUTPUT_DIR/dataset_description.json`` (atomic; identical from concurrent runs)."""
    from .. import __version__
    from ..utils.io import atomic_path

    generated = {"Name": "bids-dl", "Version": __version__, "CodeURL": CODE_URL}
    container = container_info()
    if container:
        generated["Container"] = container
    source = {"URL": paths.bids_dir.as_uri(), "Version": raw.get("DatasetDOI", "n/a")}
    if raw.get("DatasetDOI"):
        source["DOI"] = raw["DatasetDOI"]
    description = {
        "Name": f"bids-dl derivatives of {raw.get('Name', paths.bids_dir.name)}",
        "BIDSVersion": "1.9.0", "DatasetType": "derivative", "GeneratedBy": [generated],
        "SourceDatasets": [source], "DatasetLinks": {"raw": paths.bids_dir.as_uri()},
    }
    target = paths.output_dir / "dataset_description.json"
    with atomic_path(target) as tmp:
        Path(tmp).write_text(json.dumps(description, indent=2) + "\n")
    return target


def check_gpu() -> None:
    """``--device gpu``: fail early (in a short-lived process, so this one never imports a
    CNN framework) when no GPU is visible."""
    code = ("from bids_dl.utils.device import configure_device, device_in_use;"
            "configure_device('gpu'); device_in_use('gpu')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if result.returncode != 0:
        raise UsageError((result.stderr.strip().splitlines() or ["no GPU visible"])[-1])


def read_crashfile(path: Path) -> dict:
    """Node name, participant and last error line of a Nipype crash file (text format)."""
    lines = path.read_text(errors="replace").splitlines()
    node = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("Node:")),
                "?")
    errors = [line.strip() for line in lines if line.strip()]
    message = errors[-1] if errors else "unknown error"
    for line in reversed(errors):
        if "Error:" in line or "Exception:" in line:
            message = line.split(": ", 1)[-1] if line.split(":")[0].endswith(
                ("Error", "Exception")) else line
            break
    parts = [part for part in node.split(".") if part.startswith("sub_")]
    subject = parts[0][4:-3] if parts and parts[0].endswith("_wf") else "?"
    return {"node": node, "participant": subject, "message": message,
            "crashfile": str(path)}


def run_participant(opts, paths: Paths) -> int:
    from ..models.registry import get_entry, verify
    from ..reports.boilerplate import methods_text
    from ..reports.participant import write_participant_report
    from ..utils.bids import (
        BIDSInputError,
        clean_label,
        index_dataset,
        read_description,
        read_filters,
        select_images,
        validation_problems,
    )
    from ..workflows.tasks import TASKS

    participants = [clean_label(p) for p in opts.participant_label or []] or None
    sessions = [clean_label(s, "session") for s in opts.session_label or []] or None
    filters = read_filters(opts.bids_filter_file)
    raw = read_description(paths.bids_dir)
    if not opts.skip_bids_validation:
        problems = validation_problems(paths.bids_dir, (paths.output_dir, paths.work_dir))
        if problems:
            for problem in problems[:20]:
                LOGGER.error("BIDS validation: %s", problem)
            more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
            raise BIDSInputError(
                f"{paths.bids_dir}: BIDS validation found {len(problems)} problem(s){more}, "
                f"first: {problems[0]}. Fix them, or run with --skip-bids-validation")
    tic = time.time()
    layout = index_dataset(paths.bids_dir, validate=not opts.skip_bids_validation,
                           exclude=(paths.output_dir, paths.work_dir))
    selection = select_images(layout, participants, sessions, filters)
    LOGGER.info("indexed %s in %.1f s: %d participant(s) to process, %d image(s)",
                paths.bids_dir, time.time() - tic, len(selection.images),
                sum(map(len, selection.images.values())))
    for subject, reason in selection.skipped.items():
        LOGGER.warning("sub-%s: skipped, %s", subject, reason)
    if not selection.images:
        raise BIDSInputError(f"{paths.bids_dir}: nothing to process (no T1w, T2w or FLAIR "
                             "image in the selected participants)")
    from ..workflows.tasks import default_task_names

    names = list(opts.tasks or default_task_names())
    if opts.synthesize and "contrast-synthesis" not in names:
        names.append("contrast-synthesis")
    if opts.synthesize_missing:
        if "lesion-segmentation" not in names:
            raise UsageError("--synthesize-missing: lesion segmentation is not among the "
                             "tasks of this run (--tasks lesion-segmentation)")
        if "contrast-synthesis" not in names:
            names.append("contrast-synthesis")
    from ..models.registry import available

    missing = [name for name in names if not available(TASKS[name].model)]
    if missing:
        raise UsageError(f"--tasks {' '.join(missing)}: no trained model is installed for "
                         f"{'this task' if len(missing) == 1 else 'these tasks'} (set "
                         "BIDS_DL_MODEL_DIR to a folder with one, or leave the task out)")
    from ..workflows.tasks import run_tasks

    tasks = run_tasks(names, opts.synthesize, opts.synthesize_missing)
    LOGGER.info("tasks: %s", ", ".join(names))
    cards = {task.model: verify(get_entry(task.model)) for task in tasks}
    if opts.synthesize_missing:  # the model that reads synthetic FLAIRs, where one is named
        from ..models.lesion_segmentation import (
            SYNTHETIC_FLAIR_MODEL,
            verified_synthetic_flair_card,
        )

        reader = verified_synthetic_flair_card(cards["lesion-segmentation"])
        if reader is not None:
            cards[SYNTHETIC_FLAIR_MODEL] = reader
    for name, card in cards.items():
        if card.get("experimental"):
            LOGGER.warning("%s: the installed model is experimental (%s)", name,
                           card.get("experimental_reason", "see its model card"))
    if opts.device == "gpu":
        check_gpu()
    write_dataset_description(paths, raw)

    nprocs = opts.nprocs
    omp_nthreads = opts.omp_nthreads or min(max(nprocs - 1, 1), 8)
    executed, failed_nodes = run_workflow(opts, paths, selection, tasks, cards, nprocs,
                                          omp_nthreads)
    if opts.plugin.endswith("Graph"):
        LOGGER.info("%s: the workflow's jobs are submitted (scripts in %s); outputs appear as "
                    "they finish. Run the same command with --plugin MultiProc afterwards "
                    "(it recomputes nothing) to write the reports.", opts.plugin,
                    paths.work_dir)
        return EXIT_OK
    # crash files of this run: newer than its start, of its participants (another process
    # may write into the same logs folder at the same time, for other participants)
    crashes = [read_crashfile(path) for path in sorted(paths.logs_dir.glob("crash-*.txt"))
               if path.stat().st_mtime >= tic]
    failures: dict[str, list[dict]] = {}
    for crash in crashes:
        if crash["participant"] in selection.images:
            failures.setdefault(crash["participant"], []).append(crash)
    suffixes = sorted({image.suffix for images in selection.images.values() for image in images})
    methods = methods_text(cards, suffixes)
    for subject in selection.images:
        write_participant_report(paths.output_dir, subject, methods, failures.get(subject),
                                 raw.get("Name", ""))
    for subject, reason in selection.skipped.items():
        write_participant_report(paths.output_dir, subject, methods,
                                 [{"node": "input", "message": reason, "crashfile": "-"}],
                                 raw.get("Name", ""))
    summary = {"participants": sorted(selection.images), "skipped": selection.skipped,
               "failed": {s: [c["message"] for c in f] for s, f in failures.items()},
               "executed_nodes": executed, "failed_nodes": failed_nodes,
               "seconds": round(time.time() - tic, 1)}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (paths.logs_dir / f"run_{stamp}_{os.getpid()}.json").write_text(
        json.dumps(summary, indent=2) + "\n")
    for subject in selection.images:
        if subject in failures:
            for crash in failures[subject]:
                LOGGER.error("sub-%s FAILED at %s: %s (crash file: %s)", subject,
                             crash["node"], crash["message"], crash["crashfile"])
        else:
            LOGGER.info("sub-%s: done, report %s", subject,
                        paths.output_dir / f"sub-{subject}.html")
    LOGGER.info("%d node(s) executed in %.1f s; %d participant(s) failed", len(executed),
                time.time() - tic, len(failures))
    return EXIT_PARTICIPANT_FAILED if failures or failed_nodes else EXIT_OK


def run_workflow(opts, paths: Paths, selection, tasks, cards, nprocs: int,
                 omp_nthreads: int) -> tuple[list[str], list[str]]:
    """Build and run the Nipype workflow; returns the nodes that ran (not cached) and the
    nodes that failed."""
    from nipype import config
    from nipype import logging as nipype_logging

    from ..workflows.base import init_bids_dl_wf

    level = {0: "WARNING", 1: "INFO"}.get(opts.verbose_count, "DEBUG")
    config.update_config({
        "logging": {"workflow_level": level, "interface_level": level, "utils_level": level},
        "execution": {"crashdump_dir": str(paths.logs_dir), "crashfile_format": "txt",
                      "stop_on_first_crash": opts.stop_on_first_crash,
                      "remove_unnecessary_outputs": False, "get_linked_libs": False,
                      "check_version": False, "poll_sleep_duration": 0.1},
        "monitoring": {"enabled": False},
    })
    nipype_logging.update_logging(config)
    # weights and calibrated thresholds: a new model or a recalibrated card reruns the node
    model_ids = {name: f"{name}:{card.get('sha256')}:{card.get('threshold', '')}:"
                       f"{json.dumps(card.get('thresholds', {}), sort_keys=True)}"
                 for name, card in cards.items()}
    from ..models.lesion_segmentation import SYNTHETIC_FLAIR_MODEL

    if SYNTHETIC_FLAIR_MODEL in model_ids:  # the lesion task's second model reruns it too
        model_ids["lesion-segmentation"] += f":{model_ids.pop(SYNTHETIC_FLAIR_MODEL)}"
    workflow = init_bids_dl_wf(selection.images, tasks, paths.output_dir, paths.work_dir,
                               opts.device, omp_nthreads, model_ids)
    workflow.config["execution"]["crashdump_dir"] = str(paths.logs_dir)
    workflow.config["execution"]["crashfile_format"] = "txt"
    if opts.write_graph:
        write_graph(workflow, paths)
    executed, failed = [], []

    def status(node, event):
        if event == "start":
            executed.append(node.fullname)
            LOGGER.info("running %s", node.fullname)
        elif event == "exception":
            failed.append(node.fullname)

    plugin_args = plugin_settings(opts, nprocs, status)
    try:
        workflow.run(plugin=opts.plugin, plugin_args=plugin_args)
    except RuntimeError as error:
        if "did not execute cleanly" not in str(error) and not failed:
            raise
        LOGGER.error("some nodes failed: see the crash files in %s", paths.logs_dir)
    return executed, failed


def plugin_settings(opts, nprocs: int, status) -> dict:
    """Nipype ``plugin_args`` for ``opts.plugin``: ours (processes, memory, progress
    callback) where the plugin takes them, then the user's ``--plugin-args`` over them."""
    settings: dict = {}
    if opts.plugin == "MultiProc":
        settings = {"n_procs": nprocs, "raise_insufficient": False}
        if opts.mem_gb:
            settings["memory_gb"] = opts.mem_gb
    if not opts.plugin.endswith("Graph"):
        settings["status_callback"] = status
    if opts.plugin.startswith("SLURM"):
        os.environ.setdefault("LOGNAME", _user_name())  # Nipype's SLURM plugins need it
    settings.update(opts.plugin_args or {})
    return settings


def _user_name() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container --user with no passwd entry
        return str(os.getuid())


def write_graph(workflow, paths: Paths) -> None:
    """``OUTPUT_DIR/logs/bids_dl_wf.{dot,svg}`` (the .svg needs Graphviz ``dot``)."""
    import shutil

    try:
        dotfile = workflow.write_graph(graph2use="colored", format="svg", simple_form=True)
    except Exception as error:  # Graphviz missing: nipype still wrote the .dot
        LOGGER.warning("workflow graph: could not render (%s)", error)
        dotfile = str(Path(workflow.base_dir) / workflow.name / "graph.dot")
    for suffix in (".dot", ".svg"):
        source = Path(dotfile).with_suffix(suffix)
        if source.is_file():
            shutil.copyfile(source, paths.logs_dir / f"bids_dl_wf{suffix}")


def run_group(opts, paths: Paths) -> int:
    from ..reports.group import write_group
    from ..utils.bids import clean_label

    participants = [clean_label(p) for p in opts.participant_label or []] or None
    tic = time.time()
    try:
        result = write_group(paths.output_dir, participants)
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None
    LOGGER.info("group: %d image(s) in %s and %s (%d outlier value(s)) in %.1f s",
                result.n_images, result.table, result.report, result.n_outliers,
                time.time() - tic)
    for subject, messages in result.failed.items():
        LOGGER.error("sub-%s: its participant-level run failed: %s", subject, "; ".join(messages))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    opts = build_parser().parse_args(argv)
    from ..models.registry import ModelIntegrityError
    from ..utils.bids import BIDSInputError

    setup_logging(opts.verbose_count)
    try:
        paths = check_paths(opts)
        setup_logging(opts.verbose_count, paths.logs_dir)
        if opts.analysis_level == "group":
            return run_group(opts, paths)
        return run_participant(opts, paths)
    except (BIDSInputError, UsageError, ModelIntegrityError) as error:
        print(f"bids-dl: error: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
