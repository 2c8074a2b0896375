"""Label maps: anatomies from open data, procedural heads, held-out split."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from bids_dl.synth import labels as L
from bids_dl.synth.head import add_head


def test_manifest_splits_and_sources(labels_dir):
    manifest = json.loads((labels_dir / "manifest.json").read_text())
    splits = {entry["anatomy"]: entry["split"] for entry in manifest["maps"].values()}
    assert splits == {"mni152": "train", "jhu189": "heldout"}
    assert manifest["brain_labels"] == list(range(1, 9))


def test_colin27_is_never_a_training_source():
    package = Path(L.__file__).resolve().parent.parent
    for path in package.rglob("*.py"):
        text = path.read_text()
        for match in re.finditer(r"ch2\w*", text):
            assert path.name in {"sources.py", "evaluate.py", "card.py"}, (path, match.group())


def test_training_head_has_brain_and_non_brain_tissue(train_head):
    counts = np.bincount(train_head.ravel(), minlength=L.N_LABELS)
    assert set(np.flatnonzero(counts)) == set(range(L.N_LABELS))  # every class appears
    brain_ml = L.brain_mask(train_head).sum() / 1000.0
    assert 1600 < brain_ml < 2100
    assert counts[L.LABELS["cerebral_wm"]] / 1000 > 350  # a real WM compartment
    assert counts[L.LABELS["bone_cortical"]] + counts[L.LABELS["bone_diploe"]] > 200_000


def test_skull_surrounds_brain(train_head):
    """Going up from the centre of the brain: brain, CSF/dura, bone, scalp, then air."""
    column = train_head[96, 110, :]  # x = 0, y = -22 mm
    top_brain = np.flatnonzero(L.brain_mask(column[None])[0]).max()
    above = column[top_brain + 1:]
    bone = np.flatnonzero(np.isin(above, [L.LABELS["bone_cortical"], L.LABELS["bone_diploe"]]))
    skin = np.flatnonzero(above == L.LABELS["skin"])
    assert bone.size and skin.size and bone.min() < skin.min()
    assert above[-1] == L.LABELS["background"]


def test_heads_differ_by_seed_and_keep_the_brain():
    anatomy = np.zeros(L.HEAD_SHAPE, np.uint8)
    anatomy[60:130, 50:190, 60:160] = L.LABELS["cerebral_wm"]
    first = add_head(anatomy, np.random.default_rng(1))
    again = add_head(anatomy, np.random.default_rng(1))
    other = add_head(anatomy, np.random.default_rng(2))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert np.array_equal(L.brain_mask(first), anatomy > 0)
