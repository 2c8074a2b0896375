"""Reading bids-dl's own derivatives back: measured images and their sidecars."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

ENTITY = re.compile(r"(?:^|_)([a-z]+)-([a-zA-Z0-9]+)")
ENTITY_COLUMNS = {"sub": "participant_id", "ses": "session_id", "acq": "acquisition",
                  "ce": "ceagent", "rec": "reconstruction", "run": "run"}


@dataclass
class MeasuredImage:
    """A derivative whose sidecar holds ``Measures``: ``path`` (the sidecar), entities from its
    name, the source image (BIDS URI path) and suffix, and the sidecar."""

    path: Path
    entities: dict[str, str]
    source: str
    suffix: str
    sidecar: dict

    @property
    def participant(self) -> str:
        return self.entities["sub"]

    def figure(self, output_dir: Path) -> Path | None:
        """The task's report figure for this image, when it exists."""
        desc = self.entities.get("desc", "brain")
        keep = [f"{k}-{v}" for k, v in self.entities.items() if k in ENTITY_COLUMNS]
        name = "_".join([*keep, f"desc-{desc}", self.suffix]) + ".svg"
        path = output_dir / f"sub-{self.participant}" / "figures" / name
        return path if path.is_file() else None


def _source_suffix(source: str) -> str:
    name = source.rsplit("/", 1)[-1]
    return name.split(".")[0].rsplit("_", 1)[-1]


def read_measured(sidecar: Path) -> MeasuredImage | None:
    """A :class:`MeasuredImage` from one sidecar, or None when it holds no measures (or is
    unreadable: a half-written file is never there, writes are atomic)."""
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get("Measures"), dict):
        return None
    source = (meta.get("Sources") or [""])[0].split(":", 2)[-1]
    entities = dict(ENTITY.findall(sidecar.name.split(".")[0]))
    return MeasuredImage(sidecar, entities, source, _source_suffix(source), meta)


def find_measured(output_dir: Path, participants: list[str] | None = None,
                  ) -> list[MeasuredImage]:
    """Every measured image under ``output_dir`` (optionally only some participants), sorted
    by path. Only sidecars whose names end in ``_mask.json`` or carry ``desc-`` are read."""
    folders = ([output_dir / f"sub-{p}" for p in participants] if participants
               else sorted(output_dir.glob("sub-*")))
    found = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for sidecar in sorted(folder.rglob("*_mask.json")):
            measured = read_measured(sidecar)
            if measured is not None:
                found.append(measured)
    return found


def inputs_label(sidecar: dict, separator: str = "+") -> str:
    """The input combination a derivative was made from, from its sidecar's ``Inputs`` and
    ``SyntheticInputs`` (e.g. ``"FLAIR+T1w"``, ``"synthetic FLAIR+T1w"``, the names of
    :mod:`bids_dl.models.lesion_segmentation`'s input sets); ``"n/a"`` for one-image tasks."""
    inputs = sidecar.get("Inputs")
    if not inputs:
        return "n/a"
    synthetic = set(sidecar.get("SyntheticInputs") or ())
    return separator.join(f"synthetic {name}" if name in synthetic else name for name in inputs)
