"""BIDS input, arguments and bad input: each a clear message and the right exit code,
before any CNN work (all in-process and fast)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from bids_dl.cli.parser import TASK_NAMES
from bids_dl.cli.run import EXIT_USAGE, main
from bids_dl.utils.bids import (
    BIDSInputError,
    clean_label,
    index_dataset,
    read_filters,
    select_images,
    validation_problems,
)
from bids_dl.workflows.tasks import TASKS


@pytest.fixture()
def small_bids(demo_dir, tmp_path) -> Path:
    """The demo's raw files as links (fast to make), plus sub-04 with no anatomical image."""
    root = tmp_path / "bids"
    for path in demo_dir.rglob("*"):
        if "derivatives" in path.parts or path.is_dir():
            continue
        target = root / path.relative_to(demo_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(path, target)
    (root / "sub-04" / "dwi").mkdir(parents=True)
    (root / "sub-04" / "dwi" / "sub-04_dwi.json").write_text("{}")
    return root


def _error(capsys) -> str:
    return capsys.readouterr().err


def test_task_names_match_the_registry():
    assert set(TASK_NAMES) == set(TASKS)


def test_clean_label():
    assert clean_label("sub-01") == clean_label("01") == "01"
    for bad in ("../x", "01/..", "sub-0_1", ""):
        with pytest.raises(BIDSInputError, match="letters and digits"):
            clean_label(bad)


def test_selection_finds_every_image_and_skips_participants_without(small_bids):
    layout = index_dataset(small_bids, validate=True)
    selection = select_images(layout, None, None, {})
    assert sorted(selection.images) == ["01", "02"]
    assert selection.skipped == {"04": "no T1w, T2w or FLAIR image"}
    names = [image.relpath for image in selection.images["02"]]
    assert names == ["sub-02/ses-1/anat/sub-02_ses-1_run-1_T1w.nii.gz",
                     "sub-02/ses-1/anat/sub-02_ses-1_run-2_T1w.nii.gz",
                     "sub-02/ses-2/anat/sub-02_ses-2_FLAIR.nii.gz",
                     "sub-02/ses-2/anat/sub-02_ses-2_T1w.nii.gz"]
    run2 = selection.images["02"][1]
    assert dict(run2.entities) == {"subject": "02", "session": "1", "run": "2"}


def test_sessions_and_filters_narrow_the_selection(small_bids, tmp_path):
    layout = index_dataset(small_bids, validate=True)
    by_session = select_images(layout, ["02"], ["2"], {})
    assert [i.suffix for i in by_session.images["02"]] == ["FLAIR", "T1w"]
    filters = tmp_path / "filters.json"
    filters.write_text(json.dumps({"t1w": {"run": 2}, "flair": {"session": "3"}}))
    chosen = select_images(layout, ["sub-02".removeprefix("sub-")], None, read_filters(filters))
    assert [i.relpath for i in chosen.images["02"]] == [
        "sub-02/ses-1/anat/sub-02_ses-1_run-2_T1w.nii.gz"]


def test_derivatives_inside_the_dataset_are_not_indexed(small_bids):
    inside = small_bids / "out" / "sub-01" / "anat"
    inside.mkdir(parents=True)
    shutil.copy(small_bids / "sub-01/anat/sub-01_T1w.nii.gz", inside / "sub-01_T1w.nii.gz")
    layout = index_dataset(small_bids, validate=False, exclude=(small_bids / "out",))
    selection = select_images(layout, ["01"], None, {})
    assert [i.relpath for i in selection.images["01"]] == [
        "sub-01/anat/sub-01_T1w.nii.gz", "sub-01/anat/sub-01_T2w.nii.gz"]
    assert validation_problems(small_bids, (small_bids / "out",)) == []


def test_validation_summarises_problems(small_bids, tmp_path, capsys):
    (small_bids / "sub-01" / "anat" / "sub-01_brainscan.nii.gz").write_bytes(b"x")
    problems = validation_problems(small_bids)
    assert problems == ["sub-01/anat/sub-01_brainscan.nii.gz: not a valid BIDS file name or "
                        "location"]
    code = main([str(small_bids), str(tmp_path / "out"), "participant", "-w",
                 str(tmp_path / "w")])
    err = _error(capsys)
    assert code == EXIT_USAGE
    assert "BIDS validation found 1 problem(s)" in err and "sub-01_brainscan" in err
    assert "--skip-bids-validation" in err
    assert not list((tmp_path / "out").glob("sub-*"))


@pytest.mark.parametrize("case, expected", [
    ("missing", "no such directory"),
    ("not_bids", "not a BIDS dataset (no dataset_description.json)"),
    ("bad_description", "dataset_description.json: not valid JSON"),
    ("unknown_participant", "participant(s) not found"),
    ("dotdot_label", "'../x': a BIDS label holds only letters and digits"),
    ("bad_filter_json", "--bids-filter-file is not valid JSON"),
    ("unknown_filter_query", "unknown query bold"),
    ("output_is_bids", "is BIDS_DIR: derivatives must not be mixed"),
    ("output_contains_bids", "contains BIDS_DIR"),
    ("output_not_writable", "OUTPUT_DIR"),
    ("nothing_to_process", "nothing to process"),
    ("task_without_model", "no trained model is installed"),
    ("synthetic_flair_reader_missing", "lesion_segmentation_synthetic_flair.keras: weights "
                                       "file not found"),
])
def test_bad_input_exits_2_before_any_work(case, expected, small_bids, tmp_path, capsys,
                                          monkeypatch):
    bids, out = small_bids, tmp_path / "out"
    extra: list[str] = []
    if case == "missing":
        bids = tmp_path / "nowhere"
    elif case == "not_bids":
        (bids / "dataset_description.json").unlink()
    elif case == "bad_description":
        (bids / "dataset_description.json").unlink()
        (bids / "dataset_description.json").write_text("{not json")
    elif case == "unknown_participant":
        extra = ["--participant-label", "01", "sub-99"]
    elif case == "dotdot_label":
        extra = ["--participant-label", "../x"]
    elif case in ("bad_filter_json", "unknown_filter_query"):
        (tmp_path / "f.json").write_text("{" if case == "bad_filter_json" else '{"bold": {}}')
        extra = ["--bids-filter-file", str(tmp_path / "f.json")]
    elif case == "output_is_bids":
        out = bids
    elif case == "output_contains_bids":
        out = bids.parent
    elif case == "output_not_writable":
        (tmp_path / "a_file").write_text("")
        out = tmp_path / "a_file" / "out"
    elif case == "nothing_to_process":
        extra = ["--participant-label", "04"]
    elif case == "task_without_model":
        monkeypatch.setenv("BIDS_DL_MODEL_DIR", str(tmp_path / "no-models"))
        extra = ["--tasks", "lesion-segmentation"]
    elif case == "synthetic_flair_reader_missing":
        # the lesion card names a separate model for synthetic FLAIRs; only its card is there
        import shutil

        from bids_dl.models.registry import MODEL_DIR

        models = tmp_path / "models"
        shutil.copytree(MODEL_DIR, models)
        reader = models / "lesion_segmentation_synthetic_flair.keras"
        card = json.loads((models / "lesion_segmentation.json").read_text())
        card.setdefault("synthetic_flair_model", {"file": reader.name, "sha256": "0" * 64})
        (models / "lesion_segmentation.json").write_text(json.dumps(card))
        reader.unlink(missing_ok=True)
        if not reader.with_suffix(".json").exists():
            reader.with_suffix(".json").write_text(json.dumps({"sha256": "0" * 64}))
        monkeypatch.setenv("BIDS_DL_MODEL_DIR", str(models))
        extra = ["--tasks", "lesion-segmentation", "--synthesize-missing"]
    code = main([str(bids), str(out), "participant", "-w", str(tmp_path / "w"), *extra])
    err = _error(capsys)
    assert code == EXIT_USAGE, err
    assert expected in err, err
    assert err.count("bids-dl: error:") == 1
    if out.is_dir() and out != bids and out != bids.parent:
        assert not list(out.glob("sub-*")), "no participant output after a usage error"


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["/data", "/out", "everything"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["/data", "/out", "participant", "--nprocs", "0"])
    assert exit_info.value.code == 2 and "must be 1 or more" in _error(capsys)


def test_help_and_version(capsys):
    from bids_dl import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for option in ("--participant-label", "--session-label", "--bids-filter-file", "--tasks",
                   "--work-dir", "--nprocs", "--mem-gb", "--device", "--skip-bids-validation",
                   "--stop-on-first-crash", "--write-graph", "--verbose", "exit codes"):
        assert option in text


def test_group_without_derivatives_is_an_error(small_bids, tmp_path, capsys):
    code = main([str(small_bids), str(tmp_path / "out"), "group"])
    assert code == EXIT_USAGE and "run the participant level first" in _error(capsys)


def test_group_scales_and_flags_outliers(tmp_path):
    """1,000 participants' sidecars (fabricated measures), one with half a brain."""
    from bids_dl.reports.group import write_group

    rng = np.random.default_rng(0)
    for index in range(1000):
        subject = f"{index:04d}"
        folder = tmp_path / f"sub-{subject}" / "anat"
        folder.mkdir(parents=True)
        volume = 800.0 if index == 17 else float(rng.normal(1500, 80))
        meta = {"Type": "Brain", "Sources": [f"bids:raw:sub-{subject}/anat/sub-{subject}_T1w"
                                             ".nii.gz"],
                "Model": {"name": "brain-extraction"},
                "Measures": {"BrainVolumeMl": round(volume, 2),
                             "IntracranialFraction": round(float(rng.normal(0.4, 0.02)), 4)}}
        (folder / f"sub-{subject}_desc-brain_mask.json").write_text(json.dumps(meta))
    result = write_group(tmp_path)
    assert result.n_images == 1000
    report = result.report.read_text()
    assert "sub-0017_desc-brain_mask.nii.gz" in report
    rows = result.table.read_text().splitlines()
    assert len(rows) == 1001 and rows[0].startswith("participant_id\tsession_id")
    assert rows[18].split("\t")[-2] == "800.0"


def test_group_compares_lesions_only_within_an_input_combination(tmp_path):
    """Lesion volumes from FLAIR + T1w, from the T1w alone and from a synthetic FLAIR + T1w
    are not comparable: the table says which each came from, and outliers are flagged within
    each combination (the T1w-alone volumes, 4 x the others, are not outliers; the one
    synthetic-FLAIR volume 8 x its group's is)."""
    import csv

    from bids_dl.reports.group import write_group

    rng = np.random.default_rng(3)
    groups = {"acquired": (["FLAIR", "T1w"], [], 5.0, 10),
              "t1w": (["T1w"], [], 20.0, 6), "synthetic": (["FLAIR", "T1w"], ["FLAIR"], 5.0, 6)}
    index = 0
    for name, (inputs, synthetic, volume, count) in groups.items():
        for _ in range(count):
            subject = f"{index:03d}"
            folder = tmp_path / f"sub-{subject}" / "anat"
            folder.mkdir(parents=True)
            value = 40.0 if (name, index) == ("synthetic", 20) else volume * rng.uniform(0.8, 1.2)
            reference = "FLAIR" if "FLAIR" in inputs and not synthetic else "T1w"
            meta = {"Sources": [f"bids:raw:sub-{subject}/anat/sub-{subject}_{reference}.nii.gz"],
                    "Model": {"name": "lesion-segmentation"}, "Inputs": inputs,
                    **({"SyntheticInputs": synthetic} if synthetic else {}),
                    "Measures": {"LesionVolumeMl": round(value, 3)}}
            (folder / f"sub-{subject}_mod-{reference}_desc-lesion_mask.json").write_text(
                json.dumps(meta))
            index += 1
    result = write_group(tmp_path)
    with open(result.table) as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [row["inputs"] for row in rows] == (["FLAIR+T1w"] * 10 + ["T1w"] * 6
                                               + ["synthetic FLAIR+T1w"] * 6)
    assert result.n_outliers == 1
    report = result.report.read_text()
    assert "sub-020_mod-T1w_desc-lesion_mask.nii.gz" in report  # the synthetic group's
    assert "lesion-segmentation: T1w (synthetic FLAIR+T1w)" in report


def test_gpu_requested_without_one(small_bids, tmp_path, capsys):
    code = main([str(small_bids), str(tmp_path / "out"), "participant", "-w",
                 str(tmp_path / "w"), "--participant-label", "01", "--device", "gpu"])
    assert code == EXIT_USAGE and "no GPU is visible" in _error(capsys)
    assert not list((tmp_path / "out").glob("sub-*"))
