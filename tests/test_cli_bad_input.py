"""bids-dl-infer on unusable input: one clear line naming the file, exit code 2, no output."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest


def _infer(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bids_dl.cli.infer", *args],
                          capture_output=True, text=True, timeout=300)


def _make(tmp_path, kind: str):
    path = tmp_path / f"{kind}.nii.gz"
    affine = np.eye(4)
    if kind == "2d":
        nib.save(nib.Nifti1Image(np.ones((32, 32), np.float32), affine), path)
    elif kind == "4d":
        nib.save(nib.Nifti1Image(np.ones((16, 16, 16, 5), np.float32), affine), path)
    elif kind == "nan":
        data = np.ones((16, 16, 16), np.float32)
        data[3, 4, 5] = np.nan
        data[1, 1, 1] = np.inf
        nib.save(nib.Nifti1Image(data, affine), path)
    elif kind == "zeros":
        nib.save(nib.Nifti1Image(np.zeros((16, 16, 16), np.int16), affine), path)
    elif kind == "truncated":
        full = tmp_path / "full.nii.gz"
        nib.save(nib.Nifti1Image(np.random.default_rng(0).random((40, 40, 40)), affine), full)
        blob = full.read_bytes()
        path.write_bytes(blob[: len(blob) // 2])
    elif kind == "not-nifti":
        path = tmp_path / "notes.nii.gz"
        with gzip.open(path, "wt") as handle:
            handle.write("this is not an image\n" * 50)
    elif kind == "text":
        path = tmp_path / "table.csv"
        path.write_text("a,b\n1,2\n")
    elif kind == "missing":
        path = tmp_path / "nothing-here.nii.gz"
    return path


@pytest.mark.parametrize("kind, words", [
    ("2d", "2D image"), ("4d", "4D series"), ("nan", "NaN or Inf"), ("zeros", "every voxel is zero"),
    ("truncated", "truncated or corrupt"), ("not-nifti", "not a readable NIfTI"),
    ("text", "not a readable NIfTI"), ("missing", "no such file"),
])
def test_bad_input_is_refused_cleanly(tmp_path, kind, words):
    source = _make(tmp_path, kind)
    out = tmp_path / "out" / "sub"
    result = _infer("brain-extraction", str(source), str(out))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(source) in lines[0] and words in lines[0], result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert result.stdout == ""


def test_unknown_device_is_a_usage_error(tmp_path):
    result = _infer("brain-extraction", "x.nii.gz", str(tmp_path / "o"), "--device", "tpu")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_help_lists_the_tasks():
    result = _infer("--help")
    assert result.returncode == 0 and "brain-extraction" in result.stdout


def test_unwritable_output_is_a_clear_error(tmp_path, colin27):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if shutil.which("id") and subprocess.run(["id", "-u"], capture_output=True,
                                             text=True).stdout.strip() == "0":
        target = "/proc/bids-dl-cannot-write-here/out"  # root ignores directory modes
    else:
        target = str(locked / "out")
    result = _infer("brain-extraction", str(colin27[0]), target)
    assert result.returncode == 2
    assert result.stderr.startswith("bids-dl-infer: error:")


@pytest.mark.parametrize("case, words", [
    ("4d-flair", "4D series"), ("different-participants", "belong to different participants"),
    ("no-input", "give --flair, --t1w or both"),
    ("synthetic-flair-alone", "--synthetic-flair needs the --flair and its --t1w"),
])
def test_lesion_bad_input_is_refused_cleanly(tmp_path, case, words):
    good = tmp_path / "sub-01_T1w.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((20, 20, 20), np.float32),
                             np.eye(4)), good)
    out = tmp_path / "out" / "sub-01"
    if case == "4d-flair":
        args = ["--flair", str(_make(tmp_path, "4d")), "--t1w", str(good)]
    elif case == "different-participants":
        other = tmp_path / "sub-02_FLAIR.nii.gz"
        shutil.copy(good, other)
        args = ["--flair", str(other), "--t1w", str(good)]
    elif case == "synthetic-flair-alone":
        args = ["--flair", str(good), "--synthetic-flair"]
    else:
        args = []
    result = _infer("lesion-segmentation", *args, str(out))
    assert result.returncode == 2, result.stderr
    assert words in result.stderr and len(result.stderr.strip().splitlines()) <= 2
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_lesion_flair_with_10mm_slices_warns_and_still_works(tmp_path, demo_dir,
                                                             lesion_model_dir):
    """A FLAIR of 10 mm slices: a result on its grid, and a warning that small lesions are
    missed (test model: plumbing only)."""
    import os

    source = nib.load(str(demo_dir / "sub-02/ses-2/anat/sub-02_ses-2_FLAIR.nii.gz"))
    data = np.asarray(source.dataobj)[:, :, ::3]  # 4 mm -> 12 mm slices
    affine = source.affine.copy()
    affine[:3, 2] *= 3
    flair = tmp_path / "sub-02_FLAIR.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), flair)
    out = tmp_path / "out" / "sub-02"
    result = subprocess.run(
        [sys.executable, "-m", "bids_dl.cli.infer", "lesion-segmentation", "--flair",
         str(flair), str(out), "--device", "cpu"], capture_output=True, text=True,
        timeout=600, env={**os.environ, "BIDS_DL_MODEL_DIR": str(lesion_model_dir)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "warning: FLAIR: 12.0 mm voxels; lesions smaller than that are missed" in result.stderr
    mask = nib.load(f"{out}_mask.nii.gz")
    assert mask.shape == data.shape and np.allclose(mask.affine, affine)
    assert (tmp_path / "out" / "sub-02_lesions.tsv").read_text().startswith("lesion_id\t")
    assert "lesions:" in result.stdout
