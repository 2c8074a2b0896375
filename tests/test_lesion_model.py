"""The shipped lesion-segmentation model on held-out synthetic heads (the jhu189 anatomy,
never used in training; seeds of the evaluation) through the whole inference path."""

from __future__ import annotations

import numpy as np
import pytest

from bids_dl.models.registry import available

pytestmark = pytest.mark.skipif(not available("lesion-segmentation"),
                                reason="no trained lesion-segmentation model is installed")

#: Floors under the shipped (experimental) model's values on this head (held-out jhu189 head
#: with a drawn cortex, mirrored inference; session 21's model: FLAIR + T1w Dice 0.81,
#: sensitivity 1.0, precision 0.67, F1 0.77; FLAIR alone Dice 0.76, sensitivity 1.0,
#: precision 0.83, F1 0.87; lesion-free head 0.499 ml; session 10's: 0.74 and 0.63, 0.09
#: ml), so a regression of the model or of the inference path fails. The lesion-free
#: ceiling sits 0.1 ml above that head's 0.499 ml so that float rounding on another CPU
#: does not flip it; the issue's targets (Dice 0.75, sensitivity 0.9, 0.5 ml over the
#: lesion-free heads) are measured by benchmarks/lesion_accuracy.py.
FLOORS = {"FLAIR+T1w": 0.65, "FLAIR": 0.55}
MIN_SENSITIVITY = 0.85
MIN_FLAIR_ALONE_PRECISION = 0.8
MAX_LESION_FREE_ML = 0.6
#: The same head with its FLAIR cut to 4 mm slices (the shipped model leaves 0.61 ml there,
#: 0.37 ml mean over the card's 4 lesion-free heads; a healthy 4 mm demo FLAIR: 0.76 ml)
MAX_LESION_FREE_THICK_FLAIR_ML = 1.0


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


@pytest.mark.parametrize("flair_slice_mm, most_ml", [(None, MAX_LESION_FREE_ML),
                                                     (4, MAX_LESION_FREE_THICK_FLAIR_ML)])
def test_little_found_on_a_lesion_free_head(labels_dir, flair_slice_mm, most_ml):
    from bids_dl.training.evaluate_lesions import lesion_free

    result = lesion_free(_segment, labels_dir, cases=1, flair_slice_mm=flair_slice_mm)
    assert result["max_false_positive_ml"] <= most_ml, result
    assert result["per_head_ml"] == [result["max_false_positive_ml"]]  # one head


def test_synthetic_flair_readings(labels_dir, tmp_path):
    """A synthetic FLAIR + T1w is read by the model the lesion card names for it (or by the
    lesion model itself). With that model, the ``mean`` reading is the mean of the FLAIR +
    T1w reading and the T1w-alone reading (same brain mask, so the same grid): twice it minus
    the T1w-alone probability is a probability map that agrees with the plain FLAIR + T1w
    reading (which registers the T1w first, so not to the bit); the ``joint`` reading agrees
    with that plain reading itself. The pipeline's call (no model given) uses that model, its
    card's reading, synthetic-FLAIR threshold and filter, and runs no registration (a
    synthetic FLAIR is on its T1w's grid)."""
    import nibabel as nib

    from bids_dl.models.lesion_segmentation import (
        MIN_LESION_MM3,
        SYNTHETIC_FLAIR_READINGS,
        SYNTHETIC_FLAIR_SET,
        TASK,
        card_min_peak,
        card_synthetic_reading,
        card_threshold,
        remove_small,
        segment_lesions,
        synthetic_flair_reader,
    )
    from bids_dl.models.registry import load_model
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
    reader, card = synthetic_flair_reader(*load_model(TASK))

    def probability(result):
        return np.asarray(result.probseg.dataobj, np.float64)

    def segment(flair_path, synthetic=False, **options):
        return segment_lesions(flair_path, paths["T1w"], device="cpu",
                               brain_mask=paths["brain"], synthetic_flair=synthetic, **options)

    combined = segment(paths["FLAIR"], True, model=reader, synthetic_reading="mean")
    joint = segment(paths["FLAIR"], True, model=reader, synthetic_reading="joint")
    alone = probability(segment(None, model=reader))
    both = probability(segment(paths["FLAIR"], model=reader))
    recovered = 2 * probability(combined) - alone
    assert recovered.min() > -1e-3 and recovered.max() < 1 + 1e-3
    assert np.abs(recovered - both).mean() < 0.1 * np.abs(alone - both).mean()
    lesions = truth.astype(bool)
    assert both[lesions].mean() > alone[lesions].mean() + 0.1  # the FLAIR matters here
    assert combined.reading == SYNTHETIC_FLAIR_READINGS["mean"]
    # the joint reading is the FLAIR + T1w reading alone (without the registration)
    assert joint.reading == SYNTHETIC_FLAIR_READINGS["joint"]
    assert np.abs(probability(joint) - both).mean() < 0.1 * np.abs(alone - both).mean()
    with pytest.raises(ValueError, match="synthetic_flair_reading"):
        card_synthetic_reading({"synthetic_flair_reading": "median"})

    shipped = segment(paths["FLAIR"], True)
    assert shipped.model["sha256"] == card["sha256"]
    assert shipped.reading == SYNTHETIC_FLAIR_READINGS[card_synthetic_reading(card)]
    assert np.array_equal(probability(shipped), probability(
        joint if card_synthetic_reading(card) == "joint" else combined))
    threshold = card_threshold(card, SYNTHETIC_FLAIR_SET)
    assert shipped.threshold == threshold and shipped.registration is None
    assert shipped.min_peak == card_min_peak(card, SYNTHETIC_FLAIR_SET)
    expected = remove_small(probability(shipped) > threshold, flair.affine, MIN_LESION_MM3,
                            probability(shipped), shipped.min_peak)
    assert np.array_equal(np.asarray(shipped.mask.dataobj) > 0, expected)


@pytest.mark.parametrize("inputs", [("FLAIR", "T1w"), ("T1w",)])
def test_standalone_command_writes_mask_probseg_and_table(demo_dir, tmp_path, inputs):
    """``bids-dl-infer lesion-segmentation [--flair F] [--t1w T] OUT`` with the shipped model
    on the demo's sub-02 ses-2 (a head with lesions; the FLAIR has 4 mm slices): the mask and
    probability map on the grid of the FLAIR (of the T1w when alone), the mask inside the
    probability above the card's threshold for these inputs, and the table and the printed
    count and volume agreeing with the mask."""
    import csv
    import os
    import re
    import subprocess
    import sys

    import nibabel as nib

    from bids_dl.models.lesion_segmentation import TABLE_COLUMNS, card_threshold, input_set
    from bids_dl.models.registry import get_entry

    anat = demo_dir / "sub-02" / "ses-2" / "anat"
    paths = {name: anat / f"sub-02_ses-2_{name}.nii.gz" for name in inputs}
    out = tmp_path / "sub-02"
    command = [sys.executable, "-m", "bids_dl.cli.infer", "lesion-segmentation", "--device",
               "cpu", *[arg for name, path in paths.items()
                        for arg in (f"--{name.lower()}", str(path))], str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    assert result.returncode == 0, result.stderr[-2000:]
    written = [f"{out}_mask.nii.gz", f"{out}_probseg.nii.gz", f"{out}_lesions.tsv"]
    assert [line[len("wrote "):] for line in result.stdout.splitlines()
            if line.startswith("wrote ")] == written
    reference = nib.load(str(paths[inputs[0]]))  # the FLAIR, or the T1w when alone
    mask_image, probseg_image = nib.load(written[0]), nib.load(written[1])
    for image in (mask_image, probseg_image):
        assert image.shape == reference.shape and np.allclose(image.affine, reference.affine)
    mask = np.asarray(mask_image.dataobj)
    probability = np.asarray(probseg_image.get_fdata())
    assert set(np.unique(mask)) <= {0, 1} and 0 <= probability.min() <= probability.max() <= 1
    threshold = card_threshold(get_entry("lesion-segmentation").read_card(),
                               input_set("FLAIR" in inputs, "T1w" in inputs))
    assert probability[mask > 0].min(initial=1.0) > threshold - 1 / 255  # stored as uint8
    with open(written[2], newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        assert tuple(reader.fieldnames) == TABLE_COLUMNS
        rows = list(reader)
    voxel_mm3 = float(np.prod(reference.header.get_zooms()[:3]))
    assert sum(float(row["volume_mm3"]) for row in rows) == pytest.approx(
        mask.sum() * voxel_mm3, rel=1e-3)
    count, volume_ml = re.search(r"lesions: (\d+), ([\d.]+) ml", result.stdout).groups()
    assert int(count) == len(rows)
    assert float(volume_ml) == pytest.approx(mask.sum() * voxel_mm3 / 1000, abs=0.006)
    if inputs == ("FLAIR", "T1w"):
        assert len(rows) > 0  # the demo's sub-02 has lesions
