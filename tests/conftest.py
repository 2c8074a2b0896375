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
