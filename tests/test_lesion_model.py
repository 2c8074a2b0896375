"""The shipped lesion-segmentation model on held-out synthetic heads (the jhu189 anatomy,
never used in training; seeds of the evaluation) through the whole inference path."""

from __future__ import annotations

import numpy as np
import pytest

from bids_dl.models.registry import available

pytestmark = pytest.mark.skipif(not available("lesion-segmentation"),
                                reason="no trained lesion-segmentation model is installed")

#: Floors under the shipped (experimental) model's values on this head (held-out jhu189 head
#: with a drawn cortex; session 10, mirrored inference: FLAIR + T1w Dice 0.74, sensitivity
#: 1.0, precision 0.69, F1 0.75; FLAIR alone Dice 0.63, sensitivity 1.0, precision 0.90, F1
#: 0.86; lesion-free 0.09 ml; session 9: Dice 0.62 and 0.52; they pass too with session 13's
#: FLAIR lesions brighter than grey matter and recalibrated thresholds), so a regression of
#: the model or of the inference path fails; the issue's targets (Dice 0.75, sensitivity
#: 0.9, 0.5 ml) are in benchmarks/lesion_accuracy.py.
FLOORS = {"FLAIR+T1w": 0.65, "FLAIR": 0.55}
MIN_SENSITIVITY = 0.85
MIN_FLAIR_ALONE_PRECISION = 0.8
MAX_LESION_FREE_ML = 0.5


def _segment(flair, t1w):
    """The mask of the shipped path, checked to be the card's threshold calibrated for these
    inputs applied to the probability map (small components and those below the card's
    minimum peak probability removed)."""
    from bids_dl.models.lesion_segmentation import (
        MIN_LESION_MM3,
        card_min_peak,
        card_threshold,
        input_set,
        remove_small,
        segment_lesions,
    )
    from bids_dl.models.registry import get_entry

    result = segment_lesions(flair, t1w, device="cpu")
    card = get_entry("lesion-segmentation").read_card()
    inputs = input_set(flair is not None, t1w is not None)
    threshold = card_threshold(card, inputs)
    assert result.threshold == threshold and result.min_peak == card_min_peak(card, inputs)
    probability = np.asarray(result.probseg.dataobj)
    expected = remove_small(probability > threshold, result.mask.affine, MIN_LESION_MM3,
                            probability, result.min_peak)
    mask = np.asarray(result.mask.dataobj) > 0
    assert np.array_equal(mask, expected)
    return mask


def test_lesions_found_on_a_held_out_head(labels_dir):
    from bids_dl.training.evaluate_lesions import synthetic_lesions

    result = synthetic_lesions(_segment, labels_dir, cases=1, modes=tuple(FLOORS))
    for mode, floor in FLOORS.items():
        assert result[mode]["dice"] >= floor, result
        assert result[mode]["sensitivity_ge_100mm3"] >= MIN_SENSITIVITY, result
    assert result["FLAIR"]["precision"] >= MIN_FLAIR_ALONE_PRECISION, result


def test_little_found_on_a_lesion_free_head(labels_dir):
    from bids_dl.training.evaluate_lesions import lesion_free

    result = lesion_free(_segment, labels_dir, cases=1)
    assert result["max_false_positive_ml"] <= MAX_LESION_FREE_ML, result


def test_synthetic_flair_readings(labels_dir, tmp_path):
    """With ``synthetic_flair`` the ``mean`` reading is the mean of the FLAIR + T1w reading
    and the T1w-alone reading (same brain mask, so the same grid): twice it minus the
    T1w-alone probability is a probability map that agrees with the plain FLAIR + T1w reading
    (which registers the T1w first, so not to the bit); the ``joint`` reading agrees with that
    plain reading itself; without ``synthetic_reading`` the card's reading is used; the card's
    synthetic-FLAIR threshold is applied and no registration is run (a synthetic FLAIR is on
    its T1w's grid)."""
    import nibabel as nib

    from bids_dl.models.lesion_segmentation import (
        MIN_LESION_MM3,
        SYNTHETIC_FLAIR_READINGS,
        SYNTHETIC_FLAIR_SET,
        card_min_peak,
        card_synthetic_reading,
        card_threshold,
        remove_small,
        segment_lesions,
    )
    from bids_dl.models.registry import get_entry
    from bids_dl.synth.lesions import LesionAnatomy
    from bids_dl.training.data import load_label_maps
    from bids_dl.training.evaluate_lesions import render_case

    maps, _ = load_label_maps(labels_dir, "heldout")
    flair, t1w, truth, _ = render_case(maps[0], LesionAnatomy.from_labels(maps[0]), 0, 20)
    paths = {name: str(tmp_path / f"{name}.nii.gz") for name in ("FLAIR", "T1w", "brain")}
    nib.save(flair, paths["FLAIR"])
    nib.save(t1w, paths["T1w"])
    nib.save(nib.Nifti1Image(((maps[0] > 0) & (maps[0] <= 8)).astype(np.uint8), t1w.affine),
             paths["brain"])  # the parenchyma and CSF of the label map

    def probability(result):
        return np.asarray(result.probseg.dataobj, np.float64)

    combined = segment_lesions(paths["FLAIR"], paths["T1w"], device="cpu",
                               brain_mask=paths["brain"], synthetic_flair=True,
                               synthetic_reading="mean")
    joint = segment_lesions(paths["FLAIR"], paths["T1w"], device="cpu",
                            brain_mask=paths["brain"], synthetic_flair=True,
                            synthetic_reading="joint")
    alone = probability(segment_lesions(None, paths["T1w"], device="cpu",
                                        brain_mask=paths["brain"]))
    both = probability(segment_lesions(paths["FLAIR"], paths["T1w"], device="cpu",
                                       brain_mask=paths["brain"]))
    recovered = 2 * probability(combined) - alone
    assert recovered.min() > -1e-3 and recovered.max() < 1 + 1e-3
    assert np.abs(recovered - both).mean() < 0.1 * np.abs(alone - both).mean()
    lesions = truth.astype(bool)
    assert both[lesions].mean() > alone[lesions].mean() + 0.1  # the FLAIR matters here
    threshold = card_threshold(get_entry("lesion-segmentation").read_card(),
                               SYNTHETIC_FLAIR_SET)
    assert combined.threshold == threshold
    assert combined.reading == SYNTHETIC_FLAIR_READINGS["mean"]
    # the joint reading is the FLAIR + T1w reading alone (without the registration)
    assert joint.reading == SYNTHETIC_FLAIR_READINGS["joint"]
    assert np.abs(probability(joint) - both).mean() < 0.1 * np.abs(alone - both).mean()
    card = get_entry("lesion-segmentation").read_card()
    shipped = segment_lesions(paths["FLAIR"], paths["T1w"], device="cpu",
                              brain_mask=paths["brain"], synthetic_flair=True)
    assert shipped.reading == SYNTHETIC_FLAIR_READINGS[card_synthetic_reading(card)]
    assert np.array_equal(probability(shipped), probability(
        joint if card_synthetic_reading(card) == "joint" else combined))
    with pytest.raises(ValueError, match="synthetic_flair_reading"):
        card_synthetic_reading({"synthetic_flair_reading": "median"})
    assert combined.registration is None
    assert combined.min_peak == card_min_peak(get_entry("lesion-segmentation").read_card(),
                                              SYNTHETIC_FLAIR_SET)
    expected = remove_small(probability(combined) > threshold, flair.affine, MIN_LESION_MM3,
                            probability(combined), combined.min_peak)
    assert np.array_equal(np.asarray(combined.mask.dataobj) > 0, expected)
