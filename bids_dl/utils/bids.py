"""BIDS input: dataset checks, participant selection, finding the anatomical images.

Paths are absolute; entities follow BIDS names (``subject``, ``session``, ``acquisition``,
``ceagent``, ``reconstruction``, ``run``) as pybids spells them.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

ANAT_SUFFIXES = ("T1w", "T2w", "FLAIR")
# pybids entity name -> BIDS filename key, in BIDS filename order
KEPT_ENTITIES = {"subject": "sub", "session": "ses", "acquisition": "acq", "ceagent": "ce",
                 "reconstruction": "rec", "run": "run"}
LABEL = re.compile(r"^[A-Za-z0-9]+$")
SKIPPED_TOP = {"derivatives", "sourcedata", "code", "stimuli", "models", "work"}


class BIDSInputError(ValueError):
    """The dataset or a selection of it cannot be used; the message says why."""


@dataclass(frozen=True)
class AnatImage:
    """One anatomical image to process: ``path`` (absolute), ``suffix`` (T1w/T2w/FLAIR),
    ``entities`` (pybids names -> values, only :data:`KEPT_ENTITIES`), ``relpath`` (from the
    dataset root, POSIX)."""

    path: str
    suffix: str
    entities: tuple[tuple[str, str], ...]
    relpath: str

    @property
    def subject(self) -> str:
        return dict(self.entities)["subject"]

    def entity(self, name: str) -> str | None:
        return dict(self.entities).get(name)


@dataclass
class Selection:
    """What a participant-level run will process: images per participant, and participants
    left out (label -> reason)."""

    images: dict[str, list[AnatImage]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def clean_label(label: str, what: str = "participant") -> str:
    """``sub-01`` or ``01`` -> ``01``; anything that is not a BIDS label is an error."""
    prefix = {"participant": "sub-", "session": "ses-"}[what]
    value = label[len(prefix):] if label.startswith(prefix) else label
    if not LABEL.match(value):
        raise BIDSInputError(f"--{what}-label {label!r}: a BIDS label holds only letters and "
                             "digits")
    return value


def read_description(bids_dir: Path) -> dict:
    """``dataset_description.json`` of a raw dataset; errors name what is missing."""
    if not bids_dir.is_dir():
        raise BIDSInputError(f"{bids_dir}: no such directory")
    path = bids_dir / "dataset_description.json"
    if not path.is_file():
        raise BIDSInputError(f"{bids_dir}: not a BIDS dataset (no dataset_description.json)")
    try:
        description = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BIDSInputError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(description, dict):
        raise BIDSInputError(f"{path}: must hold a JSON object")
    return description


def _bidsignore(bids_dir: Path) -> list[str]:
    path = bids_dir / ".bidsignore"
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def validation_problems(bids_dir: Path, skip: tuple[Path, ...] = ()) -> list[str]:
    """Problems a BIDS validator would report, one readable line each: missing or incomplete
    dataset_description.json, and files whose names are not BIDS (hidden files, top-level
    derivatives/sourcedata/code, ``.bidsignore`` patterns and ``skip`` folders are left out)."""
    from bids_validator import BIDSValidator

    problems = []
    description = read_description(bids_dir)
    for key in ("Name", "BIDSVersion"):
        if key not in description:
            problems.append(f"dataset_description.json: the required field {key!r} is missing")
    validator, ignored = BIDSValidator(), _bidsignore(bids_dir)
    skipped = {p.resolve() for p in skip}
    subjects = sorted(p for p in bids_dir.glob("sub-*") if p.is_dir())
    if not subjects:
        problems.append("no sub-* folders: the dataset holds no participants")
    for root, dirs, files in os.walk(bids_dir):
        root_path = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and (root_path / d).resolve() not in skipped
                         and not (root_path == bids_dir and d in SKIPPED_TOP))
        for name in sorted(files):
            relative = (root_path / name).relative_to(bids_dir).as_posix()
            if name.startswith(".") or any(fnmatch.fnmatch(relative, p) or
                                           fnmatch.fnmatch(name, p) for p in ignored):
                continue
            if not validator.is_bids("/" + relative):
                problems.append(f"{relative}: not a valid BIDS file name or location")
    return problems


def index_dataset(bids_dir: Path, validate: bool, exclude: tuple[Path, ...] = ()):
    """A pybids ``BIDSLayout`` of the raw data only (derivatives and ``exclude`` folders,
    e.g. the output and work directories when they lie inside the dataset, are not indexed)."""
    from bids.layout import BIDSLayout, BIDSLayoutIndexer
    from bids.layout.validation import DEFAULT_LOCATIONS_TO_IGNORE

    ignore = list(DEFAULT_LOCATIONS_TO_IGNORE)
    root = bids_dir.resolve()
    for folder in exclude:
        folder = folder.resolve()
        if folder.is_relative_to(root) and folder != root:
            # pybids matches "/<path relative to the root>"
            relative = folder.relative_to(root).as_posix()
            ignore.append(re.compile("^/" + re.escape(relative) + "(/|$)"))
    indexer = BIDSLayoutIndexer(validate=validate, ignore=ignore)
    return BIDSLayout(str(bids_dir), validate=validate, indexer=indexer, derivatives=False)


def read_filters(path: Path | None) -> dict:
    """An fMRIPrep-style filter file: ``{"t1w": {...}, "t2w": {...}, "flair": {...}}``, each
    a dict of pybids entities that narrows (or widens) that contrast's query."""
    if path is None:
        return {}
    try:
        filters = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BIDSInputError(f"{path}: --bids-filter-file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BIDSInputError(f"{path}: --bids-filter-file is not valid JSON ({error})") from None
    if not isinstance(filters, dict) or not all(isinstance(v, dict) for v in filters.values()):
        raise BIDSInputError(f"{path}: --bids-filter-file must map query names (t1w, t2w, "
                             "flair) to objects of BIDS entities")
    known = {s.lower() for s in ANAT_SUFFIXES}
    unknown = sorted(set(filters) - known)
    if unknown:
        raise BIDSInputError(f"{path}: unknown query {', '.join(unknown)} in --bids-filter-file"
                             f" (known: {', '.join(sorted(known))})")
    return filters


def select_images(layout, participants: list[str] | None, sessions: list[str] | None,
                  filters: dict) -> Selection:
    """Every T1w, T2w and FLAIR image per participant (each run and acquisition separately).
    Unknown participant labels raise :class:`BIDSInputError`; participants without any usable
    image land in ``Selection.skipped``."""
    available = sorted(layout.get_subjects())
    if participants:
        missing = sorted(set(participants) - set(available))
        if missing:
            raise BIDSInputError(
                f"participant(s) not found in {layout.root}: {', '.join('sub-' + m for m in missing)}"
                f" (available: {', '.join(available[:20]) or 'none'})")
        subjects = sorted(set(participants))
    else:
        subjects = available
    selection = Selection()
    for subject in subjects:
        found = []
        for suffix in ANAT_SUFFIXES:
            query = {"datatype": "anat", "suffix": suffix, "extension": [".nii", ".nii.gz"]}
            query.update(filters.get(suffix.lower(), {}))
            query["subject"] = subject
            if sessions:
                query["session"] = sessions
            for file in layout.get(return_type="object", **query):
                entities = file.get_entities()
                kept = tuple((k, str(entities[k])) for k in KEPT_ENTITIES if k in entities)
                found.append(AnatImage(file.path, suffix, kept,
                                       Path(file.path).relative_to(layout.root).as_posix()))
        if found:
            selection.images[subject] = sorted(found, key=lambda image: image.relpath)
        else:
            where = f" in session(s) {', '.join(sessions)}" if sessions else ""
            selection.skipped[subject] = f"no T1w, T2w or FLAIR image{where}"
    return selection


def derivative_name(image: AnatImage, desc: str | None, suffix: str, extension: str,
                    extra: dict[str, str] | None = None) -> str:
    """BIDS-Derivatives file name for ``image``: its entities, then ``extra`` (e.g. ``label``,
    ``mod``), ``desc``, ``suffix`` and ``extension`` (with dot)."""
    parts = [f"{key}-{image.entity(name)}" for name, key in KEPT_ENTITIES.items()
             if image.entity(name) is not None]
    parts += [f"{key}-{value}" for key, value in (extra or {}).items()]
    if desc:
        parts.append(f"desc-{desc}")
    return "_".join(parts) + f"_{suffix}{extension}"


def derivative_folder(image: AnatImage) -> str:
    """``sub-XX[/ses-YY]/anat`` for ``image``."""
    session = image.entity("session")
    return f"sub-{image.subject}" + (f"/ses-{session}" if session else "") + "/anat"
