"""Shared fixtures: label maps built once per machine, Colin27, the shipped model."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bids_dl.synth import sources  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LABEL_CACHE = Path(os.environ.get("BIDS_DL_TEST_LABELS", ROOT / ".cache" / "test-labels"))


@pytest.fixture(scope="session")
def labels_dir() -> Path:
    """One training head (mni152) and one held-out head (jhu189), built if not cached."""
    from bids_dl.synth.build_labels import build

    build(LABEL_CACHE, heads=1, anatomies=["mni152", "jhu189"])
    return LABEL_CACHE


@pytest.fixture(scope="session")
def train_head(labels_dir) -> np.ndarray:
    return np.asarray(nib.load(str(labels_dir / "mni152_head-00.nii.gz")).dataobj)


@pytest.fixture(scope="session")
def colin27() -> tuple[Path, Path]:
    """Colin27 head and BET brain from mricron-data (installed by .ci/run)."""
    return sources.colin27()


NETWORK_GUARD = """
import socket, sys
_log = open(sys.argv[1], "a")
def _refuse(self, address, *args):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _log.write(f"connect {address}\\n"); _log.flush()
        raise OSError("network access refused by the test")
    return _connect(self, address, *args)
_connect = socket.socket.connect
socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
try:
    socket.create_connection(("192.0.2.1", 80), timeout=1)  # proves the guard is active
except OSError:
    pass
from bids_dl.cli.run import main
sys.exit(main(sys.argv[2:]))
"""


def run_bids_dl(args: list[str], guard_log: Path | None = None,
                extra_env: dict | None = None, **kwargs):
    """Run ``bids-dl ARGS`` in a fresh process (as a user would); with ``guard_log``, every
    attempt to open an internet connection is refused and logged there."""
    import subprocess
    import sys

    env = {**os.environ, "KERAS_BACKEND": "tensorflow", **(extra_env or {})}
    if guard_log is None:
        command = [sys.executable, "-m", "bids_dl.cli.run", *map(str, args)]
    else:
        command = [sys.executable, "-c", NETWORK_GUARD, str(guard_log), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, **kwargs)


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """The embedded demo dataset, written by the package."""
    from bids_dl.synth.demo import write_demo_dataset

    return write_demo_dataset(tmp_path_factory.mktemp("demo") / "bids")


@pytest.fixture(scope="session")
def demo_run(demo_dir, tmp_path_factory):
    """One participant-level run on the demo, output in BIDS_DIR/derivatives/bids-dl, with
    the network guard on. Returns (output dir, work dir, completed process, guard log)."""
    work = tmp_path_factory.mktemp("work")
    guard = work / "network.log"
    output = demo_dir / "derivatives" / "bids-dl"
    result = run_bids_dl([demo_dir, output, "participant", "-w", work, "--nprocs", "2",
                          "--write-graph"], guard_log=guard)
    return output, work, result, guard


def _tiny_model_dir(task: str, labels_dir: Path, work: Path, *options: str) -> Path:
    """A model folder with the shipped brain-extraction model and a tiny ``task`` model
    trained for 2 steps by ``bids-dl-train`` (the real command): right inputs, outputs and
    card, no skill. For tests of a task's plumbing."""
    import shutil
    import subprocess
    import sys

    from bids_dl.models.registry import MODEL_DIR

    models = work / "models"
    command = [sys.executable, "-m", "bids_dl.training.cli", task, "--labels", str(labels_dir),
               "--work-dir", str(work / "train"), "--out-dir", str(models), "--patch-steps",
               "2", "--filters", "4,8", *options]
    result = subprocess.run(command, capture_output=True, text=True,
                            env={**os.environ, "KERAS_BACKEND": "torch"})
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("brain_extraction.keras", "brain_extraction.json"):
        shutil.copy(MODEL_DIR / name, models / name)
    return models


@pytest.fixture(scope="session")
def lesion_model_dir(labels_dir, tmp_path_factory) -> Path:
    """The shipped brain-extraction model and a 2-step lesion model (no skill)."""
    return _tiny_model_dir("lesion-segmentation", labels_dir,
                           tmp_path_factory.mktemp("lesion-model"), "--steps", "0",
                           "--no-evaluate")


@pytest.fixture(scope="session")
def synthesis_model_dir(labels_dir, tmp_path_factory) -> Path:
    """The shipped brain-extraction model and a 2-step synthesis model (no skill; its card
    has the held-out metrics)."""
    return _tiny_model_dir("contrast-synthesis", labels_dir,
                           tmp_path_factory.mktemp("synthesis-model"))
