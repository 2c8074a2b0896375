"""The lesion task's pieces that need no trained model: the per-lesion table and its
location classes, session pairing, the pairing check, and the derivative names."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from bids_dl.models.lesion_segmentation import check_pair, lesion_table, remove_small
from bids_dl.utils.bids import AnatImage
from bids_dl.utils.io import InputImageError
from bids_dl.workflows.tasks import TASKS, lesion_units


def test_lesion_table_volumes_centroids_and_locations():
    shape, affine = (60, 60, 60), np.diag([1.0, 1.0, 2.0, 1.0])
    affine[:3, 3] = (-30, -30, -60)
    ventricles = np.zeros(shape, bool)
    ventricles[25:35, 25:35, 30:40] = True
    cortex = np.zeros(shape, bool)
    cortex[:, :, 55:] = True
    infratentorial = np.zeros(shape, bool)
    infratentorial[:, :, :12] = True
    mask = np.zeros(shape, bool)
    mask[36:39, 28:31, 33:35] = True  # beside the ventricles: 18 voxels
    mask[10:14, 10:14, 53:55] = True  # touching the cortex (2 mm voxels along z): 32 voxels
    mask[45:50, 45:50, 20:24] = True  # deep: 100 voxels, largest
    mask[30:33, 30:33, 4:7] = True  # infratentorial: 27 voxels
    probability = np.where(mask, 0.8, 0.0)
    probability[47, 47, 22] = 0.97
    rows = lesion_table(probability, mask, affine, ventricles, cortex, infratentorial)
    assert [row["lesion_id"] for row in rows] == [1, 2, 3, 4]
    assert [row["location"] for row in rows] == ["deep", "juxtacortical", "infratentorial",
                                                "periventricular"]
    assert [row["volume_mm3"] for row in rows] == [200.0, 64.0, 54.0, 36.0]
    deep = rows[0]
    assert (deep["centroid_x_mm"], deep["centroid_y_mm"], deep["centroid_z_mm"]) == (
        17.0, 17.0, -17.0)
    assert deep["peak_probability"] == pytest.approx(0.97)
    assert deep["mean_probability"] == pytest.approx((99 * 0.8 + 0.97) / 100, abs=1e-3)
    assert lesion_table(probability, np.zeros(shape, bool), affine, ventricles, cortex,
                        infratentorial) == []


def test_infratentorial_lesions_are_placed_by_their_surroundings():
    """The model's infratentorial output fades inside a lesion: a lesion in a hole of the
    infratentorial brain, surrounded by it, is infratentorial; read from its own voxels
    (surroundings 0, as for true anatomy) it is not; a lesion beside that brain, with most
    of its surroundings elsewhere, is not either."""
    shape, affine = (40, 40, 40), np.eye(4)
    infratentorial = np.zeros(shape, bool)
    infratentorial[:, :, :20] = True
    mask = np.zeros(shape, bool)
    mask[10:14, 10:14, 8:12] = True  # inside the infratentorial brain ...
    infratentorial[10:14, 10:14, 8:12] = False  # ... which the output leaves out there
    mask[25:29, 25:29, 21:25] = True  # 1 mm above it
    nothing = np.zeros(shape, bool)
    probability = mask.astype(np.float32)
    rows = lesion_table(probability, mask, affine, nothing, nothing, infratentorial)
    assert [row["location"] for row in rows] == ["infratentorial", "deep"]
    rows = lesion_table(probability, mask, affine, nothing, nothing, infratentorial,
                        infratentorial_surroundings_mm=0)
    assert [row["location"] for row in rows] == ["deep", "deep"]


def test_remove_small_counts_mm3():
    mask = np.zeros((20, 20, 20), bool)
    mask[2:4, 2:4, 2:4] = True  # 8 voxels
    mask[10:13, 10:13, 10:13] = True  # 27 voxels
    kept = remove_small(mask, np.diag([1, 1, 1, 1.0]), 10)
    assert kept.sum() == 27
    assert remove_small(mask, np.diag([1, 1, 2, 1.0]), 10).sum() == 35
    probability = np.where(mask, 0.6, 0.0)
    probability[11, 11, 11] = 0.85  # the larger lesion's peak
    assert remove_small(mask, np.diag([1, 1, 2, 1.0]), 10, probability, 0.8).sum() == 27
    assert remove_small(mask, np.diag([1, 1, 2, 1.0]), 10, probability, 0.9).sum() == 0
    assert remove_small(mask, np.diag([1, 1, 2, 1.0]), 10, probability, 0.0).sum() == 35


def test_held_out_metrics_report_their_spread_over_heads():
    """Per-head lesion metrics of two heads: one found whole, one half found with a false
    positive; the spread is the sample SD of the per-head values and the worst Dice."""
    from bids_dl.training.evaluate_lesions import lesion_metrics, spread

    truth = np.zeros((30, 30, 30), bool)
    truth[5:10, 5:10, 5:10] = True  # 125 mm³
    half = truth.copy()
    half[5:10, 5:10, 5:8] = False  # 50 of the 125 voxels
    half[20:23, 20:23, 20:23] = True  # a false positive of 27 voxels
    rows = [lesion_metrics(truth, truth, 1.0), lesion_metrics(half, truth, 1.0)]
    assert rows[0]["dice"] == 1.0 and rows[1]["dice"] == round(2 * 50 / (77 + 125), 4)
    assert rows[1]["precision"] == 0.5 and rows[1]["f1"] == round(2 * 0.5 / 1.5, 4)
    result = spread(rows)
    assert result["dice_min"] == rows[1]["dice"]
    assert result["dice_sd"] == round(abs(1.0 - rows[1]["dice"]) / np.sqrt(2), 4)
    assert result["f1_sd"] == round(abs(1.0 - rows[1]["f1"]) / np.sqrt(2), 4)
    assert spread(rows[:1]) == {"dice_sd": 0.0, "f1_sd": 0.0, "dice_min": 1.0}


def test_location_agreement_counts_each_lesion_against_the_true_anatomy():
    """Classes reported from the model's structures are compared, lesion by lesion in the
    table's order, with those the true structures give: agreement, Cohen's kappa, the
    confusion counts, and which reported lesions touch a true one."""
    from bids_dl.training.evaluate_lesions import _component_hits, location_confusion

    reference = ["periventricular", "periventricular", "deep", "juxtacortical"]
    reported = ["periventricular", "deep", "deep", "juxtacortical"]
    result = location_confusion(reported, reference)
    assert result["lesions"] == 4 and result["agreement"] == 0.75
    assert result["confusion"]["periventricular"] == {
        "periventricular": 1, "deep": 1, "juxtacortical": 0, "infratentorial": 0}
    # chance agreement: (2*1 + 1*2 + 1*1) / 16 = 5/16; kappa = (0.75 - 5/16) / (1 - 5/16)
    assert result["kappa"] == round((0.75 - 5 / 16) / (11 / 16), 4)
    assert location_confusion(reported, reported)["kappa"] == 1.0
    assert location_confusion([], [])["agreement"] is None

    mask, truth = np.zeros((20, 20, 20), bool), np.zeros((20, 20, 20), bool)
    mask[1:3, 1:3, 1:3] = True  # 8 voxels, touches the truth
    mask[10:14, 10:14, 10:14] = True  # 64 voxels: the table's first lesion, false
    truth[2, 2, 2] = True
    assert _component_hits(mask, truth) == [False, True]


def test_min_peak_is_chosen_for_lesion_f1_without_losing_dice():
    """The confidence filter with the best F1 wins unless it costs more than the Dice
    tolerance or adds lesion-free volume; ties go to the weaker filter."""
    from bids_dl.training.calibrate_lesions import DICE_TOLERANCE, choose_min_peak

    def row(peak, dice, f1, free=0.1):
        return {"min_peak": peak, "dice": dice, "f1": f1, "lesion_free_ml": free}

    rows = [row(0.0, 0.77, 0.69), row(0.6, 0.77, 0.72), row(0.8, 0.77, 0.75),
            row(0.9, 0.77 - 2 * DICE_TOLERANCE, 0.80)]
    assert choose_min_peak(rows) == 0.8
    assert choose_min_peak([row(0.0, 0.7, 0.7), row(0.7, 0.7, 0.7)]) == 0.0
    assert choose_min_peak([row(0.0, 0.7, 0.7), row(0.7, 0.7, 0.8, free=0.2)]) == 0.0


def _image(relpath: str, suffix: str, **entities) -> AnatImage:
    return AnatImage(f"/data/{relpath}", suffix, tuple(entities.items()), relpath)


def test_sessions_pair_flair_with_t1w():
    images = [
        _image("sub-1/ses-a/anat/sub-1_ses-a_run-1_T1w.nii.gz", "T1w", subject="1",
               session="a", run="1"),
        _image("sub-1/ses-a/anat/sub-1_ses-a_run-2_T1w.nii.gz", "T1w", subject="1",
               session="a", run="2"),
        _image("sub-1/ses-a/anat/sub-1_ses-a_run-2_FLAIR.nii.gz", "FLAIR", subject="1",
               session="a", run="2"),
        _image("sub-1/ses-b/anat/sub-1_ses-b_T1w.nii.gz", "T1w", subject="1", session="b"),
        _image("sub-1/ses-c/anat/sub-1_ses-c_FLAIR.nii.gz", "FLAIR", subject="1", session="c"),
        _image("sub-1/ses-d/anat/sub-1_ses-d_T2w.nii.gz", "T2w", subject="1", session="d"),
    ]
    units = {unit.key: {role: image.relpath.rsplit("/", 1)[1] for role, image in unit.inputs}
             for unit in lesion_units(images)}
    assert units == {
        "ses_a_run_2_FLAIR": {"flair": "sub-1_ses-a_run-2_FLAIR.nii.gz",
                              "t1w": "sub-1_ses-a_run-2_T1w.nii.gz"},
        "ses_b_T1w": {"t1w": "sub-1_ses-b_T1w.nii.gz"},
        "ses_c_FLAIR": {"flair": "sub-1_ses-c_FLAIR.nii.gz"},
    }


def test_lesion_derivative_names_say_their_grid():
    flair = _image("sub-1/ses-a/anat/sub-1_ses-a_FLAIR.nii.gz", "FLAIR", subject="1",
                   session="a")
    names = [output.relpath(flair) for output in TASKS["lesion-segmentation"].outputs]
    assert names == ["sub-1/ses-a/anat/sub-1_ses-a_mod-FLAIR_desc-lesion_mask.nii.gz",
                     "sub-1/ses-a/anat/sub-1_ses-a_mod-FLAIR_label-lesion_probseg.nii.gz",
                     "sub-1/ses-a/anat/sub-1_ses-a_mod-FLAIR_desc-lesion_morph.tsv",
                     "sub-1/figures/sub-1_ses-a_desc-lesion_FLAIR.svg"]


def test_flair_and_t1w_of_different_participants_are_refused():
    with pytest.raises(InputImageError, match="belong to different participants"):
        check_pair("/d/sub-01_FLAIR.nii.gz", "/d/sub-02_T1w.nii.gz")
    check_pair("/d/sub-01_ses-1_FLAIR.nii.gz", "/d/sub-01_ses-2_T1w.nii.gz")
    check_pair("/d/flair.nii.gz", "/d/t1.nii.gz")


def test_threshold_calibration_keeps_the_highest_threshold_of_best_dice(labels_dir,
                                                                        monkeypatch):
    """With probabilities 0.6 in the true lesions and 0.4 in a 2-voxel ring around them, any
    threshold in [0.4, 0.6) is perfect, lower ones take the ring in, higher ones find
    nothing: the calibration picks the highest perfect one (0.55) from training anatomies.
    FLAIR alone is given 0.7 / 0.5 (the best is then 0.65): each input combination gets its
    own threshold, from the inputs it was given. T1w alone finds every other slice of the
    lesions at 0.7 and the rest at 0.35, and 1.2 ml at 0.32 in the last of two lesion-free
    heads: thresholds below 0.32 find every lesion voxel but break the 0.5 ml budget on
    average over the lesion-free heads, so 0.65."""
    from scipy import ndimage

    from bids_dl.training import calibrate_lesions

    truths, calls = [], []
    render = calibrate_lesions.render_case

    def recording(*args, **kwargs):
        assert kwargs["perivascular_spaces"] > 0  # validation heads carry lesion mimics
        assert kwargs["choroid_plexus"]
        out = render(*args, **kwargs)
        truths.append(out[2].astype(bool))
        return out

    def probability(flair, t1w):
        calls.append((flair is not None, t1w is not None))
        if flair and t1w:
            assert nib.load(flair).shape == nib.load(t1w).shape
        truth = truths[-1]
        ring = ndimage.binary_dilation(truth, iterations=2) & ~truth
        inside, around = (0.7, 0.5) if t1w is None else (0.6, 0.4)
        values = np.where(truth, inside, np.where(ring, around, 0.0)).astype(np.float32)
        if flair is None:  # T1w alone
            values = np.where(truth, 0.7, 0.0).astype(np.float32)
            values[::2][truth[::2]] = 0.35
            if len(truths) == 3:
                values[:10, :10, :12] = 0.32  # 1,200 mm3 in the corner of the last head
        return values

    monkeypatch.setattr(calibrate_lesions, "render_case", recording)
    result = calibrate_lesions.calibrate_threshold(probability, labels_dir, cases=1,
                                                   lesion_free=2)
    rows = {row["threshold"]: row
            for row in result["per_input"]["FLAIR+T1w"]["per_threshold"]}
    assert result["threshold"] == 0.55
    assert result["thresholds"] == {"FLAIR+T1w": 0.55, "FLAIR": 0.65, "T1w": 0.65}
    assert result["min_peaks"] == {"FLAIR+T1w": 0.0, "FLAIR": 0.0, "T1w": 0.0}
    peak_rows = result["per_input"]["FLAIR+T1w"]["per_min_peak"]
    assert [r["min_peak"] for r in peak_rows] == list(calibrate_lesions.MIN_PEAKS)
    assert peak_rows[1]["dice"] == 1.0 and peak_rows[-1]["dice"] == 0.0  # 0.6 kept, 0.9 not
    assert rows[0.4]["dice"] == rows[0.55]["dice"] == 1.0
    assert rows[0.35]["dice"] < 0.9 and rows[0.6]["dice"] == 0.0
    assert all(row["lesion_free_ml"] == 0.0 for row in rows.values())
    t1w_rows = {row["threshold"]: row for row in result["per_input"]["T1w"]["per_threshold"]}
    assert t1w_rows[0.3]["lesion_free_per_head_ml"] == [0.0, 1.2]
    assert t1w_rows[0.3]["lesion_free_ml"] == 0.6 and t1w_rows[0.3]["lesion_free_worst_ml"] == 1.2
    assert t1w_rows[0.35]["lesion_free_ml"] == 0.0
    assert t1w_rows[0.3]["dice"] == 1.0 and t1w_rows[0.35]["dice"] < 0.9
    assert t1w_rows[0.65]["dice"] == t1w_rows[0.35]["dice"] > 0.3
    assert calls == [(True, True), (True, False), (False, True)] * 3
    assert all(not name.startswith("jhu189") for name in result["label_maps"])
    assert len(truths) == 3 and not truths[1].any() and not truths[2].any()
    assert result["lesion_free_heads"] == 2


def test_synthetic_flair_threshold_is_calibrated_on_flairs_made_from_the_t1w(labels_dir,
                                                                           monkeypatch):
    """The synthetic-FLAIR threshold comes from FLAIRs synthesised from each validation
    head's T1w (on its grid) read with that T1w; the acquired FLAIR is not used; given two
    ways of reading them, each is calibrated and the one with the better Dice is kept;
    without a synthesiser the calibration refuses to run."""
    from scipy import ndimage

    from bids_dl.models.lesion_segmentation import SYNTHETIC_FLAIR_SET
    from bids_dl.training import calibrate_lesions

    truths, made = [], []
    render = calibrate_lesions.render_case

    def recording(*args, **kwargs):
        out = render(*args, **kwargs)
        truths.append(out[2].astype(bool))
        return out

    def synthesise(t1w):
        image = nib.load(t1w)
        made.append(image.shape)
        return nib.Nifti1Image(np.asarray(image.dataobj) * 0 + 7, image.affine)

    def synthetic_probability(flair, t1w):
        assert np.all(np.asarray(nib.load(flair).dataobj) == 7)  # the synthesised one
        truth = truths[-1]
        ring = ndimage.binary_dilation(truth, iterations=2) & ~truth
        return np.where(truth, 0.8, np.where(ring, 0.3, 0.0)).astype(np.float32)

    def no_plain_reading(flair, t1w):
        raise AssertionError("the acquired images are not read for the synthetic threshold")

    monkeypatch.setattr(calibrate_lesions, "render_case", recording)
    result = calibrate_lesions.calibrate_threshold(
        no_plain_reading, labels_dir, cases=1, lesion_free=1,
        input_sets=(SYNTHETIC_FLAIR_SET,),
        synthesise_flair=synthesise, synthetic_probability=synthetic_probability)
    assert result["thresholds"] == {SYNTHETIC_FLAIR_SET: 0.75}  # perfect on [0.3, 0.8)
    assert len(made) == 2 and made[0] == truths[0].shape
    assert "synthetic_flair_reading" not in result

    def blurred_reading(flair, t1w):  # half the lesion voxels missed at any threshold
        values = synthetic_probability(flair, t1w)
        values[::2] = np.minimum(values[::2], 0.1)
        return values

    truths.clear()
    result = calibrate_lesions.calibrate_threshold(
        no_plain_reading, labels_dir, cases=1, lesion_free=1,
        input_sets=(SYNTHETIC_FLAIR_SET,),
        synthesise_flair=synthesise,
        synthetic_probability={"mean": blurred_reading, "joint": synthetic_probability})
    assert result["synthetic_flair_reading"] == "joint"
    assert result["per_input"][SYNTHETIC_FLAIR_SET]["reading"] == "joint"
    assert result["thresholds"] == {SYNTHETIC_FLAIR_SET: 0.75}
    per_reading = result["per_reading"]
    assert set(per_reading) == {"mean", "joint"}
    assert max(r["dice"] for r in per_reading["mean"]["per_threshold"]) < 0.8
    with pytest.raises(ValueError, match="synthesise_flair"):
        calibrate_lesions.calibrate_threshold(no_plain_reading, labels_dir, cases=1,
                                              input_sets=(SYNTHETIC_FLAIR_SET,))


def test_synthetic_reading_choice_keeps_the_false_positive_budget():
    """The reading with the best Dice at its chosen threshold wins, unless it leaves more
    than the budget in the lesion-free head while another keeps within it; ties: the
    first."""
    from bids_dl.training.calibrate_lesions import choose_reading

    def calibration(dice, free):
        return {"threshold": 0.5, "per_threshold": [
            {"threshold": 0.4, "dice": 0.99, "f1": 0.9, "lesion_free_ml": 0.0},
            {"threshold": 0.5, "dice": dice, "f1": 0.5, "lesion_free_ml": free}]}

    assert choose_reading({"mean": calibration(0.60, 0.1),
                           "joint": calibration(0.65, 0.2)}) == "joint"
    assert choose_reading({"mean": calibration(0.60, 0.1),
                           "joint": calibration(0.65, 0.9)}) == "mean"
    assert choose_reading({"mean": calibration(0.60, 0.9),
                           "joint": calibration(0.55, 0.8)}) == "mean"
    assert choose_reading({"mean": calibration(0.60, 0.1),
                           "joint": calibration(0.60, 0.1)}) == "mean"


def test_threshold_choice_keeps_the_false_positive_budget():
    """The calibration never stores a threshold that leaves more than 0.5 ml in the
    lesion-free validation head while another keeps within it, even at a better Dice; where
    none does, the one with the fewest false positives; within the budget, the highest
    threshold within 0.01 of the best Dice."""
    from bids_dl.training.calibrate_lesions import FALSE_POSITIVE_BUDGET_ML, choose_threshold

    assert FALSE_POSITIVE_BUDGET_ML == 0.5
    dice = {0.3: 0.70, 0.4: 0.69, 0.5: 0.65, 0.6: 0.645, 0.7: 0.60}
    clean = dict.fromkeys(dice, 0.0)
    assert choose_threshold(dice, clean) == 0.4  # 0.69 is within 0.01 of 0.70
    noisy = {0.3: 1.2, 0.4: 0.8, 0.5: 0.4, 0.6: 0.2, 0.7: 0.1}
    assert choose_threshold(dice, noisy) == 0.6  # best within budget 0.65; 0.645 close
    hopeless = {0.3: 3.0, 0.4: 2.0, 0.5: 1.5, 0.6: 1.5, 0.7: 0.9}
    assert choose_threshold(dice, hopeless) == 0.7


def test_methods_text_states_the_thresholds_inference_uses():
    """The report's methods paragraph names the card's thresholds (one per input combination
    when they differ) as inference applies them, not a fixed 0.5, and, when a FLAIR may have
    been synthesised, how lesions were read from it."""
    from bids_dl.models.lesion_segmentation import card_threshold
    from bids_dl.reports.boilerplate import methods_text

    card = {"version": "0.1.0", "sha256": "ab" * 32, "steps": 10, "threshold": 0.5,
            "thresholds": {"FLAIR+T1w": 0.5, "FLAIR": 0.35, "T1w": 0.7}}
    text = methods_text({"lesion-segmentation": card}, ["FLAIR", "T1w"])
    assert "0.50 (FLAIR + T1w), 0.35 (FLAIR alone), 0.70 (T1w alone)" in text
    assert card_threshold(card, "FLAIR") == 0.35 and card_threshold(card, "T1w") == 0.7
    single = {**card, "thresholds": {}, "threshold": 0.45}
    assert "thresholded at 0.45, and lesions" in methods_text(
        {"lesion-segmentation": single}, ["FLAIR"])
    assert card_threshold({}, "T1w") == 0.5
    assert "synthesised from its T1w" not in text
    assert "peak probability" not in text  # no confidence filter in this card
    filtered = {**card, "min_peaks": {"FLAIR+T1w": 0.8, "FLAIR": 0.7}}
    assert ("smaller than 10 mm3 or whose peak probability was below 0.80 (FLAIR + T1w), "
            "0.70 (FLAIR alone), 0.00 (T1w alone) were removed") in methods_text(
        {"lesion-segmentation": filtered}, ["FLAIR"])
    synthetic = {**card, "thresholds": {**card["thresholds"], "synthetic FLAIR+T1w": 0.4}}
    text = methods_text({"lesion-segmentation": synthetic, "contrast-synthesis": {}}, ["T1w"])
    assert ("mean of the model's outputs for the synthetic FLAIR + T1w and for the T1w alone, "
            "thresholded at 0.40.") in text
