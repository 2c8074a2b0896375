"""Contrast synthesis from a T1w: the standalone command and the inference path (with the
2-step test model: plumbing, grids, units, errors), and, when a trained model ships, the
tissue orderings on the real Colin27 T1w."""

from __future__ import annotations

import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from bids_dl.models.contrast_synthesis import synthesize, white_matter_scale
from bids_dl.models.registry import available
from bids_dl.utils.io import InputImageError


def _infer(*args, model_dir=None) -> subprocess.CompletedProcess:
    env = {**os.environ, **({"BIDS_DL_MODEL_DIR": str(model_dir)} if model_dir else {})}
    return subprocess.run([sys.executable, "-m", "bids_dl.cli.infer", "contrast-synthesis",
                           *map(str, args)], capture_output=True, text=True, timeout=300,
                          env=env)


def test_standalone_command_writes_each_target_on_the_source_grid(demo_dir, tmp_path,
                                                                  synthesis_model_dir):
    t1w = demo_dir / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    result = _infer("--to", "FLAIR", "--to", "CT", t1w, tmp_path / "out" / "sub-01",
                    model_dir=synthesis_model_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "white-matter scale of the source" in result.stdout
    source = nib.load(str(t1w))
    flair = nib.load(str(tmp_path / "out" / "sub-01_FLAIR.nii.gz"))
    ct = nib.load(str(tmp_path / "out" / "sub-01_CT.nii.gz"))
    assert not (tmp_path / "out" / "sub-01_T2w.nii.gz").exists()
    for image in (flair, ct):
        assert image.shape == source.shape and np.allclose(image.affine, source.affine)
    assert ct.get_data_dtype() == np.int16 and flair.get_data_dtype() == np.float32
    assert np.asarray(flair.dataobj).min() >= 0
    assert np.asarray(ct.dataobj)[0, 0, 0] == -1000 or np.asarray(ct.dataobj).min() >= -1100


def test_bad_input(demo_dir, tmp_path, synthesis_model_dir):
    t1w = demo_dir / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    missing = _infer(t1w, tmp_path / "x", model_dir=synthesis_model_dir)
    assert missing.returncode == 2 and "--to" in missing.stderr
    series = tmp_path / "series.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((20, 20, 20, 3), np.float32), np.eye(4)), series)
    result = _infer("--to", "T2w", series, tmp_path / "y", model_dir=synthesis_model_dir)
    assert result.returncode == 2 and str(series) in result.stderr and "4D" in result.stderr
    assert not list(tmp_path.glob("y_*"))
    other_grid = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((20, 20, 20), np.uint8), np.eye(4)), other_grid)
    with pytest.raises(InputImageError, match="not on the grid"):
        synthesize(t1w, ("FLAIR",), device="cpu", brain_mask=other_grid, model=object())
    with pytest.raises(ValueError, match="targets must be some of"):
        synthesize(t1w, ("PET",), model=object())


def test_white_matter_scale():
    normalised = np.array([0.1, 0.5, 0.8, 0.9, 1.0])
    source = np.array([10.0, 50.0, 80.0, 90.0, 100.0])
    brain = np.array([True, True, True, True, False])
    assert white_matter_scale(normalised, source, brain) == 85.0
    assert white_matter_scale(normalised, source, np.zeros(5, bool)) == 1.0


@pytest.mark.skipif(not available("contrast-synthesis"),
                    reason="no trained contrast-synthesis model ships yet")
def test_colin27_tissue_orderings(tmp_path):
    """Real Colin27 T1w -> FLAIR, T2w, CT: FLAIR WM < GM and CSF darkest; T2w WM < GM < CSF;
    CT skull > 500 HU, brain 20-45 HU (tissues split by the brain mask and T1w level)."""
    from bids_dl.training.evaluate_synthesis import colin27_synthesis

    result = colin27_synthesis(tmp_path)
    assert result["FLAIR"]["csf"] < result["FLAIR"]["wm"] < result["FLAIR"]["gm"], result
    assert result["T2w"]["wm"] < result["T2w"]["gm"] < result["T2w"]["csf"], result
    assert 20 <= result["CT"]["brain_median_hu"] <= 45, result
    assert result["CT"]["outside_brain_p99_hu"] > 500, result
    assert all(result["orderings_hold"].values())


@pytest.fixture(scope="module")
def all_models(tmp_path_factory, lesion_model_dir, synthesis_model_dir):
    """The shipped brain-extraction model with the 2-step lesion and synthesis models."""
    import shutil

    folder = tmp_path_factory.mktemp("all-models")
    for source in (lesion_model_dir, synthesis_model_dir):
        for path in source.iterdir():
            shutil.copy(path, folder / path.name)
    return folder


def test_bids_app_synthesis_and_lesions_on_a_synthetic_flair(demo_dir, tmp_path, all_models):
    """sub-01 has a T1w and a T2w, no FLAIR: --synthesize FLAIR T2w --synthesize-missing
    makes both synthetic contrasts (named and flagged as synthetic, sources the T1w, the
    acquired T2w beside its synthetic one in the report) and segments lesions on the
    synthetic FLAIR + T1w, saying so, with the separate model the lesion card names for that
    case (here the shipped one beside the 2-step lesion model: its sha256, threshold and
    reading in the sidecar, named in the methods text); the brain mask of the
    brain-extraction task is reused."""
    import json
    import shutil

    from conftest import run_bids_dl

    from bids_dl.models.registry import MODEL_DIR, get_entry

    models = tmp_path / "models"
    shutil.copytree(all_models, models)
    reader = get_entry("lesion-segmentation-synthetic-flair")
    for name in (reader.weights, reader.card):
        shutil.copy(MODEL_DIR / name, models / name)
    reader_card = json.loads((models / reader.card).read_text())
    own_card = json.loads((models / "lesion_segmentation.json").read_text())
    own_card["synthetic_flair_model"] = {"file": reader.weights,
                                         "sha256": reader_card["sha256"]}
    (models / "lesion_segmentation.json").write_text(json.dumps(own_card))
    output = tmp_path / "out"
    result = run_bids_dl([demo_dir, output, "participant", "--participant-label", "01",
                          "--tasks", "brain-extraction", "lesion-segmentation",
                          "--synthesize", "FLAIR", "T2w", "--synthesize-missing",
                          "-w", tmp_path / "work", "--nprocs", "2"],
                         extra_env={"BIDS_DL_MODEL_DIR": str(models)})
    assert result.returncode == 0, result.stderr[-3000:]
    anat = output / "sub-01" / "anat"
    source = nib.load(str(demo_dir / "sub-01" / "anat" / "sub-01_T1w.nii.gz"))
    for contrast in ("FLAIR", "T2w"):
        image = nib.load(str(anat / f"sub-01_desc-synthetic_{contrast}.nii.gz"))
        assert image.shape == source.shape and np.allclose(image.affine, source.affine)
        meta = json.loads((anat / f"sub-01_desc-synthetic_{contrast}.json").read_text())
        assert meta["Synthetic"] is True and meta["SynthesizedContrast"] == contrast
        assert meta["Sources"] == ["bids:raw:sub-01/anat/sub-01_T1w.nii.gz"]
        assert meta["Model"]["name"] == "contrast-synthesis"
    figures = output / "sub-01" / "figures"
    assert "acquired T2w" in (figures / "sub-01_desc-syntheticT2w_T1w.svg").read_text()
    assert "acquired FLAIR" not in (figures / "sub-01_desc-syntheticFLAIR_T1w.svg").read_text()
    lesion = json.loads((anat / "sub-01_mod-T1w_desc-lesion_mask.json").read_text())
    assert lesion["SyntheticInputs"] == ["FLAIR"] and lesion["Inputs"] == ["FLAIR", "T1w"]
    from bids_dl.models.lesion_segmentation import (
        SYNTHETIC_FLAIR_READINGS,
        SYNTHETIC_FLAIR_SET,
        card_synthetic_reading,
        card_threshold,
    )

    reading = SYNTHETIC_FLAIR_READINGS[card_synthetic_reading(reader_card)]
    assert lesion["ProbabilityReading"] == reading
    assert lesion["Model"]["sha256"] == reader_card["sha256"] != own_card["sha256"]
    assert lesion["Threshold"] == card_threshold(reader_card, SYNTHETIC_FLAIR_SET)
    assert lesion["Sources"] == ["bids:raw:sub-01/anat/sub-01_T1w.nii.gz"]
    brain = json.loads((anat / "sub-01_desc-brain_mask.json").read_text())
    assert lesion["Measures"]["BrainVolumeMl"] == pytest.approx(
        brain["Measures"]["BrainVolumeMl"], abs=0.01)
    report = (output / "sub-01.html").read_text()
    assert "synthetic FLAIR from" in report and "not an acquired image" in report
    from markupsafe import escape  # as the report's template escapes text

    assert "<td>synthetic FLAIR + T1w</td>" in report
    assert str(escape(reading)) in report
    assert f"separate lesion model for this case (version {reader_card['version']}, sha256 " \
           f"{reader_card['sha256'][:12]}" in report
    assert "Synthetic images (FLAIR, T2w and/or a pseudo-CT)" in report


def test_synthesis_units_default_only_where_missing():
    from bids_dl.utils.bids import AnatImage
    from bids_dl.workflows.tasks import run_tasks

    def image(session, suffix):
        return AnatImage(f"/d/sub-02/ses-{session}/anat/x_{suffix}.nii.gz", suffix,
                         (("subject", "02"), ("session", session)),
                         f"sub-02/ses-{session}/anat/x_{suffix}.nii.gz")

    images = [image("1", "T1w"), image("2", "T1w"), image("2", "FLAIR")]
    (default,) = run_tasks(["contrast-synthesis"])
    assert [u.key for u in default.select(images)] == ["ses_1_T1w_to_FLAIR"]
    explicit = run_tasks(["contrast-synthesis"], ["FLAIR", "CT"])
    units = [u for task in explicit for u in task.select(images)]
    assert [u.key for u in units] == ["ses_1_T1w_to_FLAIR", "ses_2_T1w_to_FLAIR",
                                      "ses_1_T1w_to_CT", "ses_2_T1w_to_CT"]
    assert units[1].shown == (("acquired", images[2]),) and units[1].inputs == (
        ("in_file", images[1]),)
    with_lesions = run_tasks(["lesion-segmentation"], None, True)
    assert [t.name for t in with_lesions] == ["contrast-synthesis", "lesion-segmentation"]
    lesion_units = with_lesions[1].select(images)
    assert [(u.key, u.derived) for u in lesion_units] == [("ses_1_T1w", ("flair",)),
                                                          ("ses_2_FLAIR", ())]
