"""End to end: the BIDS-App on the embedded demo dataset (participant + group levels),
cached reruns, a participant that fails, and two runs into one output folder at once."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import run_bids_dl

from bids_dl.models.registry import get_entry
from bids_dl.synth.demo import DEMO_IMAGES, LABELS_FILE, render_image

LESION_FREE_FLOOR_ML = 2.0  # false-positive lesion volume allowed on a lesion-free demo head


def _expected(spec) -> dict[str, str]:
    """Derivative paths (relative to OUTPUT_DIR) of one demo image."""
    folder = spec.relpath.rsplit("/", 1)[0]
    stem = Path(spec.relpath).name.replace(f"_{spec.suffix}.nii.gz", "")
    mod = "" if spec.suffix == "T1w" else f"_mod-{spec.suffix}"
    return {"mask": f"{folder}/{stem}{mod}_desc-brain_mask.nii.gz",
            "probseg": f"{folder}/{stem}{mod}_label-brain_probseg.nii.gz",
            "brain": f"{folder}/{stem}_desc-brain_{spec.suffix}.nii.gz",
            "figure": f"sub-{spec.subject}/figures/{stem}_desc-brain_{spec.suffix}.svg"}


def _sidecar(path: Path) -> dict:
    return json.loads(path.with_name(path.name.replace(".nii.gz", ".json")).read_text())


def test_demo_dataset_layout(demo_dir):
    from bids_dl.utils.bids import validation_problems

    assert validation_problems(demo_dir) == []
    images = sorted(p.relative_to(demo_dir).as_posix() for p in demo_dir.rglob("*.nii.gz")
                    if "derivatives" not in p.parts)
    assert images == sorted(spec.relpath for spec in DEMO_IMAGES)
    assert {p.name for p in (demo_dir / "sub-02").iterdir()} == {"ses-1", "ses-2"}
    shapes = {spec.suffix: nib.load(str(demo_dir / spec.relpath)).header.get_zooms()
              for spec in DEMO_IMAGES}
    assert shapes["FLAIR"][2] == pytest.approx(4.0) and shapes["T1w"][2] == pytest.approx(1.0)


def test_demo_dataset_is_deterministic(demo_dir):
    template = nib.load(str(LABELS_FILE))
    labels = np.asarray(template.dataobj)
    spec = DEMO_IMAGES[1]
    again = render_image(labels, template.affine, spec)
    stored = nib.load(str(demo_dir / spec.relpath))
    assert np.array_equal(np.asarray(again.dataobj), np.asarray(stored.dataobj))
    assert np.allclose(again.affine, stored.affine)


def test_participant_level_writes_every_derivative(demo_dir, demo_run):
    output, _, result, guard = demo_run
    assert result.returncode == 0, result.stderr[-3000:]
    card = get_entry("brain-extraction").read_card()
    for spec in DEMO_IMAGES:
        paths = {key: output / rel for key, rel in _expected(spec).items()}
        for path in paths.values():
            assert path.is_file(), path
        source = nib.load(str(demo_dir / spec.relpath))
        mask = nib.load(str(paths["mask"]))
        assert mask.get_data_dtype() == np.uint8
        assert mask.shape == source.shape and np.allclose(mask.affine, source.affine)
        probseg = nib.load(str(paths["probseg"])).get_fdata()
        assert probseg.min() >= 0 and probseg.max() <= 1
        brain = np.asarray(nib.load(str(paths["brain"])).dataobj)
        inside = np.asarray(mask.dataobj) > 0
        assert not brain[~inside].any() and brain[inside].any()
        meta = _sidecar(paths["mask"])
        assert meta["Type"] == "Brain"
        assert meta["Sources"] == [f"bids:raw:{spec.relpath}"]
        assert meta["Model"] == {"name": "brain-extraction", "version": card["version"],
                                 "sha256": card["sha256"]}
        assert meta["Device"] == "cpu" and meta["RuntimeSeconds"] > 0
        volume = meta["Measures"]["BrainVolumeMl"]
        voxel_ml = np.prod(source.header.get_zooms()[:3]) / 1000
        assert volume == pytest.approx(inside.sum() * voxel_ml, rel=1e-3)
        assert 1300 < volume < 2400, (spec.relpath, volume)
        assert 0.2 < meta["Measures"]["IntracranialFraction"] < 0.8
        assert _sidecar(paths["brain"])["SkullStripped"] is True
        assert "Measures" not in _sidecar(paths["probseg"])
    description = json.loads((output / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "bids-dl"
    assert description["SourceDatasets"][0]["URL"] == demo_dir.as_uri()
    assert description["DatasetLinks"]["raw"] == demo_dir.as_uri()
    assert not [p for p in output.rglob(".*") if p.is_file()], "temporary files left behind"
    # the network guard saw its own probe only: nothing else tried to connect
    assert guard.read_text().splitlines() == ["connect ('192.0.2.1', 80)"]


def test_masks_match_the_true_brain(demo_dir, demo_run):
    """Dice against the brain the demo was rendered from (T1w and 4 mm FLAIR)."""
    output = demo_run[0]
    template = nib.load(str(LABELS_FILE))
    labels = np.asarray(template.dataobj)
    for spec in (DEMO_IMAGES[0], DEMO_IMAGES[5]):
        _, truth = render_image(labels, template.affine, spec, with_truth=True)
        truth = np.asarray(truth.dataobj) > 0
        mask = np.asarray(nib.load(str(output / _expected(spec)["mask"])).dataobj) > 0
        dice = 2 * (mask & truth).sum() / (mask.sum() + truth.sum())
        assert dice >= 0.92, (spec.relpath, dice)


def test_reports_logs_and_graph(demo_run):
    output = demo_run[0]
    for subject in ("01", "02"):
        html = (output / f"sub-{subject}.html").read_text()
        figures = sorted((output / f"sub-{subject}" / "figures").glob("*.svg"))
        assert figures and all(f"figures/{f.name}" in html for f in figures)
        assert "BrainVolumeMl" in html and "Methods" in html and "Nipype" in html
        assert "Failed" not in html
    assert (output / "logs" / "bids_dl_wf.dot").is_file()
    assert (output / "logs" / "bids_dl_wf.svg").read_text().lstrip().startswith("<?xml")
    summary = json.loads(sorted((output / "logs").glob("run_*.json"))[0].read_text())
    assert summary["failed"] == {}
    # every task unit runs its CNN node and its report node, nothing else is submitted
    from bids_dl.workflows.tasks import default_task_names

    units = _units()
    assert len(summary["executed_nodes"]) == 2 * sum(len(units[name])
                                                     for name in default_task_names())


def _units() -> dict[str, list]:
    """Task units of the demo for every task a default run does (and lesions)."""
    from bids_dl.utils.bids import AnatImage
    from bids_dl.workflows.tasks import TASKS, default_task_names

    images: dict[str, list] = {}
    for spec in DEMO_IMAGES:
        entities = [("subject", spec.subject)]
        entities += [("session", spec.session)] if spec.session else []
        entities += [("run", str(spec.run))] if spec.run else []
        images.setdefault(spec.subject, []).append(
            AnatImage(spec.relpath, spec.suffix, tuple(entities), spec.relpath))
    names = set(default_task_names()) | {"lesion-segmentation"}
    return {name: [unit for subject in images.values() for unit in task.select(subject)]
            for name, task in TASKS.items() if name in names}


def test_rerun_with_the_same_work_dir_recomputes_nothing(demo_dir, demo_run):
    output, work, first, _ = demo_run
    assert first.returncode == 0
    lost = output / _expected(DEMO_IMAGES[2])["mask"]
    lost.unlink()
    before = set((output / "logs").glob("run_*.json"))
    result = run_bids_dl([demo_dir, output, "participant", "-w", work, "--nprocs", "2"])
    assert result.returncode == 0, result.stderr[-3000:]
    (summary_file,) = set((output / "logs").glob("run_*.json")) - before
    summary = json.loads(summary_file.read_text())
    assert summary["executed_nodes"] == []
    assert lost.is_file(), "a deleted derivative is restored from the work dir"


def test_group_level(demo_dir, demo_run):
    output = demo_run[0]
    result = run_bids_dl([demo_dir, output, "group"])
    assert result.returncode == 0, result.stderr[-3000:]
    with open(output / "group" / "measures.tsv") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert len(rows) == len(DEMO_IMAGES)
    by_file = {row["file"]: row for row in rows}
    row = by_file["sub-02_ses-1_run-2_desc-brain_mask.nii.gz"]
    assert (row["participant_id"], row["session_id"], row["run"], row["suffix"]) == (
        "sub-02", "ses-1", "2", "T1w")
    flair = by_file["sub-02_ses-2_mod-FLAIR_desc-brain_mask.nii.gz"]
    meta = _sidecar(output / "sub-02/ses-2/anat/sub-02_ses-2_mod-FLAIR_desc-brain_mask.nii.gz")
    assert float(flair["BrainVolumeMl"]) == meta["Measures"]["BrainVolumeMl"]
    report = (output / "group" / "report.html").read_text()
    assert report.count("<svg") == 2 and "measures.tsv" in report


def _mini_dataset(root: Path, demo_dir: Path) -> Path:
    """Three participants with one T1w each: sub-01 and sub-02 from the demo, sub-03
    truncated."""
    root.mkdir()
    shutil.copy(demo_dir / "dataset_description.json", root)
    for subject, source in (("01", "sub-01/anat/sub-01_T1w.nii.gz"),
                            ("02", "sub-02/ses-2/anat/sub-02_ses-2_T1w.nii.gz")):
        (root / f"sub-{subject}" / "anat").mkdir(parents=True)
        shutil.copy(demo_dir / source, root / f"sub-{subject}/anat/sub-{subject}_T1w.nii.gz")
    (root / "sub-03" / "anat").mkdir(parents=True)
    data = (demo_dir / "sub-01/anat/sub-01_T1w.nii.gz").read_bytes()
    (root / "sub-03/anat/sub-03_T1w.nii.gz").write_bytes(data[: len(data) // 3])
    return root


def test_failing_participant_and_concurrent_runs(demo_dir, tmp_path):
    """Two processes into one OUTPUT_DIR at once (as on a cluster): one runs sub-01 and a
    truncated sub-03, the other sub-02. sub-03 fails with a clear message (exit 1); nothing
    of sub-01 or sub-02 is lost."""
    bids = _mini_dataset(tmp_path / "bids", demo_dir)
    output = tmp_path / "out"
    common = ["--nprocs", "1", "--skip-bids-validation"]
    first = subprocess.Popen(
        [sys.executable, "-m", "bids_dl.cli.run", bids, output, "participant", "--participant-label",
         "01", "sub-03", "-w", tmp_path / "w1", *common], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    second = run_bids_dl([bids, output, "participant", "--participant-label", "02", "-w",
                          tmp_path / "w2", *common])
    first_err = first.communicate()[1]
    assert first.returncode == 1, first_err[-3000:]
    assert second.returncode == 0, second.stderr[-3000:]
    assert "sub-03 FAILED" in first_err and "sub-03_T1w.nii.gz: truncated" in first_err
    for subject in ("01", "02"):
        assert (output / f"sub-{subject}/anat/sub-{subject}_desc-brain_mask.nii.gz").is_file()
        assert "Failed" not in (output / f"sub-{subject}.html").read_text()
    assert not (output / "sub-03").exists()
    report = (output / "sub-03.html").read_text()
    assert "Failed" in report and "truncated or corrupt image data" in report
    crash = list((output / "logs").glob("crash-*.txt"))
    assert len(crash) == 1 and "sub-03_T1w.nii.gz" in crash[0].read_text()
    json.loads((output / "dataset_description.json").read_text())
    assert not [p for p in output.rglob(".*") if p.is_file()]
    group = run_bids_dl([bids, output, "group"])
    assert group.returncode == 0, group.stderr[-3000:]
    assert "sub-03: its participant-level run failed" in group.stderr
    report = (output / "group" / "report.html").read_text()
    assert "Failed participants (1)" in report and "truncated" in report
    assert 'href="../sub-01.html"' not in report.split("<h2>Distributions")[0]


def test_lesion_segmentation_outputs(demo_dir, tmp_path, lesion_model_dir):
    """Brain extraction + lesion segmentation on sub-02: FLAIR + T1w (ses-2) and T1w alone
    (ses-1); outputs on the reference grid, sidecars naming the inputs and the registration,
    the per-lesion table, the report; the lesion path reuses the reference image's brain
    mask. With the shipped model when there is one, else with the 2-step test model
    (plumbing only: no accuracy asserted then)."""
    from bids_dl.models.lesion_segmentation import TABLE_COLUMNS
    from bids_dl.models.registry import available, get_entry
    from bids_dl.workflows.tasks import TASKS

    shipped = available("lesion-segmentation")
    env = {} if shipped else {"BIDS_DL_MODEL_DIR": str(lesion_model_dir)}
    output = tmp_path / "out"
    result = run_bids_dl([demo_dir, output, "participant", "--participant-label", "02",
                          "--session-label", "2", "--tasks", "brain-extraction",
                          "lesion-segmentation", "-w", tmp_path / "work", "--nprocs", "2"],
                         extra_env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    units = [unit for unit in _units()["lesion-segmentation"] if unit.reference.subject == "02"]
    assert {unit.key for unit in units} == {"ses_1_run_1_T1w", "ses_2_FLAIR"}
    units = [unit for unit in units if unit.reference.entity("session") == "2"]
    experimental = not shipped or get_entry("lesion-segmentation").read_card().get(
        "experimental", False)
    for unit in units:
        paths = [output / out.relpath(unit.reference) for out in TASKS[
            "lesion-segmentation"].outputs]
        for path in paths:
            assert path.is_file(), path
        mask_path, _, table_path, figure_path = paths
        meta = _sidecar(mask_path)
        assert meta["Type"] == "Lesion"
        assert meta["Sources"] == [f"bids:raw:{image.relpath}" for _, image in unit.inputs]
        assert meta["Inputs"] == sorted({"flair": "FLAIR", "t1w": "T1w"}[role]
                                        for role, _ in unit.inputs)
        assert (meta["Registration"] is not None) == (len(unit.inputs) == 2)
        reference = nib.load(str(demo_dir / unit.reference.relpath))
        mask = nib.load(str(mask_path))
        assert mask.shape == reference.shape and np.allclose(mask.affine, reference.affine)
        lines = table_path.read_text().splitlines()
        assert tuple(lines[0].split("\t")) == TABLE_COLUMNS
        measures = meta["Measures"]
        assert measures["LesionCount"] == len(lines) - 1
        locations = [line.split("\t")[-1] for line in lines[1:]]
        for location in ("periventricular", "juxtacortical", "infratentorial", "deep"):
            key = f"{location.capitalize()}LesionCount"
            assert measures[key] == locations.count(location), (key, measures)
        assert 1300 < measures["BrainVolumeMl"] < 2400
        brain = _sidecar(output / TASKS["brain-extraction"].outputs[0].relpath(unit.reference))
        assert measures["BrainVolumeMl"] == pytest.approx(
            brain["Measures"]["BrainVolumeMl"], abs=0.01), "the brain mask was reused"
        if not experimental:
            assert measures["LesionVolumeMl"] <= LESION_FREE_FLOOR_ML, measures
    report = (output / "sub-02.html").read_text()
    assert "lesion-segmentation" in report and "Failed" not in report
    # the participant report: the lesion overlay mosaic and the per-lesion table
    assert figure_path.suffix == ".svg" and figure_path.read_text().lstrip().startswith("<")
    assert figure_path.relative_to(output).as_posix() in report
    table_link = table_path.relative_to(output).as_posix()
    listed = f'Lesions ({measures["LesionCount"]}; all in <a href="{table_link}">'
    assert (listed in report) == (measures["LesionCount"] > 0)  # no table without lesions

    # the group level: one row per derivative, the lesion measures of the sidecar, a plot each
    result = run_bids_dl([demo_dir, output, "group"])
    assert result.returncode == 0, result.stderr[-3000:]
    with open(output / "group" / "measures.tsv") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        columns, rows = reader.fieldnames, list(reader)
    lesion_measures = ("LesionCount", "LesionVolumeMl", "LesionFractionOfBrain")
    (row,) = [row for row in rows if row["file"] == mask_path.name]
    assert (row["participant_id"], row["session_id"], row["inputs"]) == (
        "sub-02", "ses-2", "FLAIR+T1w")
    for name in lesion_measures:
        assert float(row[name]) == pytest.approx(measures[name]), name
    assert float(row["LesionFractionOfBrain"]) == pytest.approx(
        measures["LesionVolumeMl"] / measures["BrainVolumeMl"], abs=1e-5)
    assert all(row[name] == "n/a" for row in rows if row["file"] != mask_path.name
               for name in lesion_measures)
    group_report = (output / "group" / "report.html").read_text()
    measure_columns = columns[columns.index("file") + 1:]
    assert set(lesion_measures) <= set(measure_columns)
    assert group_report.count("<svg") == len(measure_columns)  # one strip plot per measure
    for name in lesion_measures:
        assert f"<td>{name}</td><td>lesion-segmentation</td>" in group_report, name
