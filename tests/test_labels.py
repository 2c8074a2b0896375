"""Label maps: anatomies from open data, procedural heads, held-out split."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
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


def test_heldout_anatomy_has_a_folded_cortex(labels_dir):
    """jhu189's gyri become a cortical ribbon over white matter, with sulci (not whole gyri
    of grey matter, as the ROI vote alone gives)."""
    from scipy import ndimage

    head = np.asarray(nib.load(str(labels_dir / "jhu189_head-00.nii.gz")).dataobj)
    volume_ml = {name: (head == L.LABELS[name]).sum() / 1000 for name in
                 ("cortical_gm", "cerebral_wm", "sulcal_csf")}
    assert 450 < volume_ml["cortical_gm"] < 800
    assert 500 < volume_ml["cerebral_wm"] < 900
    assert 80 < volume_ml["sulcal_csf"] < 300
    grey = head == L.LABELS["cortical_gm"]
    beyond_cortex = ~L.brain_mask(head) | (head == L.LABELS["sulcal_csf"])
    depth = ndimage.distance_transform_edt(~beyond_cortex)
    assert np.mean(depth[grey] <= 4) > 0.97  # a ribbon of at most ~4 mm


def test_fold_cortex_draws_sulci_between_gyri():
    labels = np.zeros((80, 80, 80), np.uint8)
    labels[5:75, 5:75, 5:75] = L.LABELS["cortical_gm"]
    gyri = np.where(labels > 0, 1, 0)
    gyri[40:] *= 2  # two gyri meeting between x = 39 and 40
    folded = L.fold_cortex(labels, gyri, np.random.default_rng(0))
    sulcal = folded == L.LABELS["sulcal_csf"]
    assert sulcal[39:41, 30:50, 70:75].mean() > 0.9  # the sulcus reaches in from the surface
    assert not sulcal[30:50, 30:50, 30:50].any()  # but not 30 mm deep
    assert folded[20, 40, 40] == L.LABELS["cerebral_wm"]  # deep tissue is white matter
    assert folded[5, 40, 40] in (L.LABELS["cortical_gm"], L.LABELS["sulcal_csf"])
    face = (slice(5, 8), slice(5, 75), slice(5, 75))
    assert (folded[face][~sulcal[face]] == L.LABELS["cortical_gm"]).mean() > 0.95  # grey surface
    assert np.array_equal(folded, L.fold_cortex(labels, gyri, np.random.default_rng(0)))


def test_fold_cortex_leaves_no_grey_matter_ball_inside_white_matter():
    """A sulcus drawn along a gyral boundary that lies wholly inside the cerebrum is not
    drawn (lined with cortex it would be a ball of grey matter in white matter that looks like
    a lesion: held-out heads had one until jhu189 v5), and a CSF pocket shut inside the
    cerebrum (an atlas gap) becomes white matter."""
    from scipy import ndimage

    labels = np.zeros((80, 80, 80), np.uint8)
    labels[5:75, 5:75, 5:75] = L.LABELS["cortical_gm"]
    labels[49:51, 50, 50] = L.LABELS["sulcal_csf"]  # a 2-voxel pocket 25 mm deep
    gyri = np.where(labels == L.LABELS["cortical_gm"], 1, 0)
    gyri[17:23, 37:43, 37:43] = 2  # a gyral territory whose boundary lies 12-18 mm deep
    cerebrum = np.isin(labels, [L.LABELS["cortical_gm"], L.LABELS["cerebral_wm"]])
    assert L.enclosed_pieces(labels == L.LABELS["sulcal_csf"], cerebrum)[49:51, 50, 50].all()
    for seed in range(3):
        folded = L.fold_cortex(labels, gyri, np.random.default_rng(seed))
        sulcal = folded == L.LABELS["sulcal_csf"]
        white = folded == L.LABELS["cerebral_wm"]
        assert not sulcal[45:55, 45:55, 45:55].any()
        grey, count = ndimage.label(folded == L.LABELS["cortical_gm"], np.ones((3, 3, 3)))
        assert count == 1  # one ribbon: no piece of cortex shut inside the white matter
        assert white[40:60, 40:60, 40:60].all()
        assert not L.enclosed_pieces(sulcal, white | (folded == L.LABELS["cortical_gm"])).any()


def test_training_heads_get_a_redrawn_cortex(train_head):
    """Odd training heads: the template's thick cortex becomes a thin folded ribbon over the
    neuromorphometrics gyral territories; nothing but cortex, WM, sulci and CSF pockets shut
    inside the cerebrum changes."""
    folded = L.redraw_cortex(train_head, L.atlas_gyri(), np.random.default_rng(3))
    volume = {name: [(x == L.LABELS[name]).sum() / 1000 for x in (train_head, folded)]
              for name in ("cortical_gm", "cerebral_wm", "sulcal_csf")}
    assert volume["cortical_gm"][1] < 0.7 * volume["cortical_gm"][0]
    assert volume["cerebral_wm"][1] > volume["cerebral_wm"][0]
    assert volume["sulcal_csf"][1] > volume["sulcal_csf"][0] + 50
    cerebrum = np.isin(train_head, [L.LABELS["cortical_gm"], L.LABELS["cerebral_wm"]])
    # CSF pockets shut inside the cerebrum become cerebrum (fold_cortex)
    shut = L.enclosed_pieces(train_head == L.LABELS["sulcal_csf"], cerebrum)
    kept = ~cerebrum & ~shut
    assert np.array_equal(folded[kept], train_head[kept])
    assert np.array_equal(L.brain_mask(folded), L.brain_mask(train_head))
