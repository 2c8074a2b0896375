"""Acquisition physics: the tissue orderings each sequence has, at 1.5 T and 3 T, from the
signal equations and literature tissue values; CT numbers."""

from __future__ import annotations

import numpy as np
import pytest

from bids_dl.synth.labels import LABELS
from bids_dl.synth.physics import (
    CONTRAST_SEQUENCES,
    SEQUENCES,
    at_field,
    contrast_means,
    hounsfield_units,
    sample_sequence,
    signal,
    tissue_properties,
)

WM, GM, CSF = LABELS["cerebral_wm"], LABELS["cortical_gm"], LABELS["ventricles"]
FAT, BONE = LABELS["scalp_fat"], LABELS["bone_cortical"]


@pytest.mark.parametrize("field_t", [1.5, 3.0])
@pytest.mark.parametrize("contrast,sequence", [(c, s) for c, seqs in CONTRAST_SEQUENCES.items()
                                               for s in seqs])
def test_orderings_with_literature_values(contrast, sequence, field_t):
    """Central tissue values (no jitter), many random sequence parameters: the orderings of
    each contrast always hold."""
    rng = np.random.default_rng(0)
    tissues = tissue_properties(rng, field_t, jitter=0.0)
    for _ in range(50):
        means = contrast_means(contrast, tissues, rng, sequence)
        values, lesion = means.labels, means.lesion
        assert values[WM] == pytest.approx(1.0)
        assert values[BONE] < 0.1 * min(values[WM], values[GM])  # cortical bone: no signal
        if contrast == "T1w":
            assert values[WM] > values[GM] > values[CSF] and values[FAT] > values[GM]
            assert lesion < values[WM]
        elif contrast == "T2w":
            assert values[CSF] > values[GM] > values[WM] and lesion > 1.2
        else:  # FLAIR: CSF suppressed, lesions bright
            assert values[GM] > values[WM] > values[CSF] and lesion > 1.2
            assert values[CSF] < 0.5


def test_orderings_survive_tissue_jitter():
    """With per-tissue jitter and random field and sequences, the main orderings hold in at
    least 98 % of images (real heads vary too)."""
    rng = np.random.default_rng(1)
    held = total = 0
    for _ in range(300):
        tissues = tissue_properties(rng)
        for contrast in CONTRAST_SEQUENCES:
            values = contrast_means(contrast, tissues, rng).labels
            total += 1
            held += {"T1w": values[WM] > values[GM] > values[CSF],
                     "T2w": values[CSF] > values[GM] > values[WM],
                     "FLAIR": values[GM] > values[WM] > values[CSF]}[contrast]
    assert held / total >= 0.98


def test_flair_inversion_nulls_csf():
    rng = np.random.default_rng(2)
    params = sample_sequence("FLAIR", rng, csf_t1_ms=4300.0)
    low, high = SEQUENCES["FLAIR"]["TI_null_factor"]
    null = 4300 * np.log(2 / (1 + np.exp(-params["TR"] / 4300)))
    assert low * null <= params["TI"] <= high * null
    exact = dict(params, TI=null)
    assert signal("FLAIR", exact, 4300.0, 2000.0, 1.0) == pytest.approx(0.0, abs=1e-9)


def test_signal_equations_limits():
    """Spin echo: full recovery and no decay give PD; SPGR at the Ernst angle is maximal."""
    assert signal("T2w", {"TR": 1e9, "TE": 0.0}, 1000.0, 80.0, 0.7) == pytest.approx(0.7)
    t1, tr = 1000.0, 20.0
    ernst = np.rad2deg(np.arccos(np.exp(-tr / t1)))
    at = [float(signal("SPGR", {"TR": tr, "TE": 0.0, "flip": a}, t1, 80.0, 1.0))
          for a in (ernst - 3, ernst, ernst + 3)]
    assert at[1] > at[0] and at[1] > at[2]
    with pytest.raises(ValueError, match="unknown sequence"):
        signal("EPI", {}, 1.0, 1.0, 1.0)


def test_ct_numbers_and_seeds():
    values, lesion = hounsfield_units(np.random.default_rng(3))
    assert values[BONE] > 1000 and values[LABELS["bone_diploe"]] > 300
    for name in ("cortical_gm", "cerebral_wm", "deep_gm"):
        assert 20 <= values[LABELS[name]] <= 45
    assert values[LABELS["background"]] == -1000 and values[FAT] < -50
    assert 15 <= lesion < values[WM]
    again, _ = hounsfield_units(np.random.default_rng(3))
    assert np.array_equal(values, again)
    first = tissue_properties(np.random.default_rng(4))
    second = tissue_properties(np.random.default_rng(4))
    assert np.array_equal(first.t1, second.t1) and first.field_t == second.field_t


def test_reference_protocols_are_the_middle_of_each_range():
    """Without a random generator the sequences and CT numbers are the reference ones (the
    synthesis targets): the middle of every range, FLAIR's TI at the CSF null; the
    orderings hold for them as for the random ones."""
    from bids_dl.synth.physics import HOUNSFIELD, SEQUENCES

    params = sample_sequence("T2w", None)
    assert params == {name: float(np.mean(b)) for name, b in SEQUENCES["T2w"].items()}
    flair = sample_sequence("FLAIR", None, csf_t1_ms=4300.0)
    assert flair["TR"] == 9000.0 and flair["TE"] == 110.0
    assert abs(signal("FLAIR", flair, 4300.0, 2000.0, 1.0)) < 1e-9  # CSF nulled
    values, lesion = hounsfield_units(None)
    assert values[BONE] == np.mean(HOUNSFIELD["bone_cortical"]) == 1450
    assert values[LABELS["background"]] == -1000 and lesion == 21.5
    tissues = tissue_properties(np.random.default_rng(2), field_t=3.0)
    first = contrast_means("FLAIR", tissues, None)
    assert first.params == flair | {"TI": first.params["TI"]} and first.sequence == "FLAIR"
    again = contrast_means("FLAIR", tissues, None)
    assert np.array_equal(first.labels, again.labels)
    gm, wm, csf = (first.labels[LABELS[n]] for n in ("cortical_gm", "cerebral_wm",
                                                       "ventricles"))
    assert csf < 0.5 * wm < gm and first.lesion > 1.2


def test_same_head_at_another_field_keeps_its_deviations():
    """``at_field``: the head's tissues at another field strength keep their relative
    deviations from the tables (the synthesis targets are the source head at 3 T)."""
    from bids_dl.synth.physics import TISSUES

    head = tissue_properties(np.random.default_rng(8), field_t=1.5)
    moved = at_field(head, 3.0)
    assert moved.field_t == 3.0 and np.array_equal(moved.factors, head.factors)
    wm_15, wm_3 = TISSUES["cerebral_wm"][0], TISSUES["cerebral_wm"][1]
    assert head.t1[WM] / wm_15 == pytest.approx(moved.t1[WM] / wm_3)
    assert not np.allclose(moved.t1, head.t1)
    assert np.allclose(at_field(moved, 1.5).t2, head.t2)
    # the random stream is the same as before factors were stored (held-out sets unchanged)
    rng = np.random.default_rng(8)
    rng.uniform(-0.06, 0.06, len(LABELS) + 1)
    assert head.t2[WM] == pytest.approx(
        TISSUES["cerebral_wm"][2] * (1 + rng.uniform(-0.06, 0.06, len(LABELS) + 1)[WM]))


def test_reference_signals_of_every_tissue_class():
    """The rendering weights of the synthesis net: per class (labels, then lesions) the
    reference 3 T FLAIR and T2w relative to white matter and the reference CT numbers."""
    from bids_dl.synth.physics import reference_signals

    flair, t2w, ct = reference_signals()
    assert flair.shape == (len(LABELS) + 1,)
    assert flair[WM] == t2w[WM] == 1.0 and ct[WM] == 27.0
    assert flair[CSF] < 0.05 < 1.0 < flair[GM] < flair[-1]  # lesions brightest on FLAIR
    assert t2w[WM] < t2w[GM] < t2w[CSF] and t2w[-1] > 1.5
    assert ct[BONE] == 1450 and ct[LABELS["background"]] == -1000 and ct[-1] < ct[WM]
    tissues = at_field(tissue_properties(np.random.default_rng(0), jitter=0.0), 3.0)
    assert np.allclose(flair[:-1], contrast_means("FLAIR", tissues, None).labels)
