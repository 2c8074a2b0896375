"""Model registry: task name -> shipped weights (``.keras``) and model card (JSON).

Weights live in ``bids_dl/data/models/``; each is checked against the sha256 in its card and
loaded with ``safe_mode=True`` (no arbitrary code from the file). ``BIDS_DL_MODEL_DIR``
points the registry at another folder (a candidate model under evaluation).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

MODEL_DIR = Path(__file__).resolve().parent.parent / "data" / "models"


class ModelIntegrityError(RuntimeError):
    """A shipped model file is missing or does not match its card."""


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: ``name`` (task), file names inside ``folder``."""

    name: str
    weights: str
    card: str

    @property
    def folder(self) -> Path:
        return Path(os.environ.get("BIDS_DL_MODEL_DIR", MODEL_DIR))

    @property
    def weights_path(self) -> Path:
        return self.folder / self.weights

    @property
    def card_path(self) -> Path:
        return self.folder / self.card

    def read_card(self) -> dict:
        if not self.card_path.is_file():
            raise ModelIntegrityError(f"{self.card_path}: model card not found")
        return json.loads(self.card_path.read_text())


REGISTRY: dict[str, ModelEntry] = {
    "brain-extraction": ModelEntry("brain-extraction", "brain_extraction.keras",
                                   "brain_extraction.json"),
    "lesion-segmentation": ModelEntry("lesion-segmentation", "lesion_segmentation.keras",
                                      "lesion_segmentation.json"),
    "contrast-synthesis": ModelEntry("contrast-synthesis", "contrast_synthesis.keras",
                                     "contrast_synthesis.json"),
    # not a task: the lesion model that reads a FLAIR synthesised from the T1w, where the
    # lesion card names one (one model per input case; bids_dl.models.lesion_segmentation)
    "lesion-segmentation-synthetic-flair": ModelEntry(
        "lesion-segmentation-synthetic-flair", "lesion_segmentation_synthetic_flair.keras",
        "lesion_segmentation_synthetic_flair.json"),
}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def get_entry(name: str) -> ModelEntry:
    if name not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def available(name: str) -> bool:
    """Whether the model of task ``name`` is installed (weights and card present)."""
    entry = get_entry(name)
    return entry.weights_path.is_file() and entry.card_path.is_file()


def verify(entry: ModelEntry) -> dict:
    """Check the weights file against the card's sha256; returns the card."""
    card = entry.read_card()
    if not entry.weights_path.is_file():
        raise ModelIntegrityError(f"{entry.weights_path}: weights file not found")
    actual = sha256(entry.weights_path)
    if actual != card.get("sha256"):
        raise ModelIntegrityError(
            f"{entry.weights_path}: sha256 {actual} does not match its card ({card.get('sha256')})")
    return card


@lru_cache(maxsize=4)
def load_model(name: str):
    """The verified Keras model of task ``name`` (uncompiled, ``safe_mode=True``, accurate
    group normalisation: :mod:`bids_dl.models.layers`) and its card."""
    from .layers import load_keras_model

    entry = get_entry(name)
    card = verify(entry)
    model = load_keras_model(entry.weights_path)
    return model, card


def model_or_shipped(name: str, model=None) -> tuple:
    """``(model, card)``: the given Keras ``model`` (a candidate under evaluation, card
    version ``candidate``) or the verified shipped model of task ``name``."""
    if model is not None:
        return model, {"name": name, "version": "candidate", "sha256": None}
    return load_model(name)
