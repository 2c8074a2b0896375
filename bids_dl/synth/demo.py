"""The embedded demo: a small BIDS dataset rendered deterministically from a shipped head
label map (``bids_dl/data/templates/demo_head_labels.nii.gz``, MNI152-based training anatomy,
1 mm) by the synthetic engine.

Two participants: ``sub-01`` (one T1w, one T2w with 3 mm slices) and ``sub-02`` with two
sessions (``ses-1``: two T1w runs; ``ses-2``: a T1w and a FLAIR with 4 mm slices). Each
participant has its own head size and shape; each image its own head position, contrast,
bias field and noise. ``bids-dl-demo OUT_DIR`` writes it (about 20 s).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..utils.resample import smooth_noise
from .contrasts import label_intensities
from .generator import GeneratorConfig, add_noise, rotation_matrix
from .labels import brain_mask

LABELS_FILE = Path(__file__).resolve().parent.parent / "data" / "templates" / (
    "demo_head_labels.nii.gz")
SEED = 2024


@dataclass(frozen=True)
class DemoImage:
    """One image of the demo: BIDS path pieces, contrast, voxel size (mm), seed."""

    subject: str
    session: str | None
    run: int | None
    suffix: str
    voxel_mm: tuple[float, float, float]
    seed: int

    @property
    def relpath(self) -> str:
        folder = f"sub-{self.subject}" + (f"/ses-{self.session}" if self.session else "")
        name = f"sub-{self.subject}" + (f"_ses-{self.session}" if self.session else "")
        name += f"_run-{self.run}" if self.run else ""
        return f"{folder}/anat/{name}_{self.suffix}.nii.gz"


DEMO_IMAGES = (
    DemoImage("01", None, None, "T1w", (1.0, 1.0, 1.0), 11),
    DemoImage("01", None, None, "T2w", (1.0, 1.0, 3.0), 12),
    DemoImage("02", "1", 1, "T1w", (1.0, 1.0, 1.0), 21),
    DemoImage("02", "1", 2, "T1w", (1.0, 1.0, 1.0), 22),
    DemoImage("02", "2", None, "T1w", (1.0, 1.0, 1.0), 23),
    DemoImage("02", "2", None, "FLAIR", (1.0, 1.0, 4.0), 24),
)
SUBJECT_SCALE = {"01": (0.96, 0.94, 0.95), "02": (1.04, 1.06, 1.02)}
FIELD_OF_VIEW_MM = (176.0, 216.0, 196.0)
SIDECARS = {"T1w": {"EchoTime": 0.003, "RepetitionTime": 2.3, "InversionTime": 0.9},
            "T2w": {"EchoTime": 0.1, "RepetitionTime": 3.2},
            "FLAIR": {"EchoTime": 0.12, "RepetitionTime": 9.0, "InversionTime": 2.5}}


def render_image(labels: np.ndarray, labels_affine: np.ndarray, spec: DemoImage,
                 with_truth: bool = False):
    """Render one demo image: an LAS-stored grid of ``spec.voxel_mm`` covering the head, the
    participant's head scaled and warped, the image's own small rotation and shift, then
    contrast, bias field, slice profile and Rician noise; int16 with values 0-1000.
    With ``with_truth`` also returns the true brain mask on the image grid (uint8)."""
    rng = np.random.default_rng([SEED, spec.seed])
    subject_rng = np.random.default_rng([SEED, int(spec.subject)])
    voxel = np.array(spec.voxel_mm)
    fine = np.array([1.0, 1.0, 1.0])
    shape = np.round(np.array(FIELD_OF_VIEW_MM) / fine).astype(int)
    # world (scanner mm) -> head-template mm: the inverse of scale, rotation and shift
    centre = labels_affine[:3, :3] @ (np.array(labels.shape) / 2) + labels_affine[:3, 3]
    scale = np.diag(SUBJECT_SCALE[spec.subject])
    rotation = rotation_matrix(rng.uniform(-6, 6, 3))
    shift = rng.uniform(-4, 4, 3)
    grid = np.indices(shape, dtype=np.float32).reshape(3, -1)
    world = (grid - ((shape - 1) / 2)[:, None]) * fine[:, None]
    world[0] *= -1  # LAS storage: the first axis runs right to left
    head_mm = np.linalg.inv(rotation @ scale) @ (world - shift[:, None]) + centre[:, None]
    for axis in range(3):
        warp = smooth_noise(tuple(shape), subject_rng, (4, 5, 4)).ravel()
        head_mm[axis] += 2.0 * warp
    to_voxel = np.linalg.inv(labels_affine)
    coords = (to_voxel[:3, :3] @ head_mm + to_voxel[:3, 3:]).reshape(3, *shape)
    means = label_intensities(spec.suffix, rng)
    rendered = ndimage.gaussian_filter(means[labels].astype(np.float32), 0.6)
    image = ndimage.map_coordinates(rendered, coords, order=1, cval=0.0, prefilter=False)
    image *= np.exp(0.25 * smooth_noise(tuple(shape), rng, 4))
    affine = np.diag([-fine[0], fine[1], fine[2], 1.0])
    affine[:3, 3] = -affine[:3, :3] @ ((shape - 1) / 2)
    truth = ndimage.map_coordinates(brain_mask(labels).astype(np.float32), coords, order=1,
                                    prefilter=False) >= 0.5 if with_truth else None
    thick = int(round(voxel[2] / fine[2]))
    if thick > 1:
        image = ndimage.gaussian_filter1d(image, thick / 2.355, axis=2)[:, :, thick // 2::thick]
        truth = truth[:, :, thick // 2::thick] if with_truth else None
        affine[:3, 3] += affine[:3, 2] * (thick // 2)
        affine[:3, 2] *= thick
    image = add_noise(image / max(float(image.max()), 1e-6), rng,
                      GeneratorConfig(max_noise=0.03))
    data = np.clip(np.round(image / np.percentile(image, 99.9) * 1000), 0, 32767)
    out = nib.Nifti1Image(data.astype(np.int16), affine)
    out.set_qform(affine, 1)
    out.set_sform(affine, 1)
    out.header.set_xyzt_units("mm", "sec")
    if with_truth:
        return out, nib.Nifti1Image(truth.astype(np.uint8), affine)
    return out


def write_demo_dataset(out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write the demo BIDS dataset to ``out_dir`` (created; must be empty or absent unless
    ``overwrite``). The dataset is assembled in a temporary folder and moved into place."""
    out_dir = Path(out_dir).resolve()
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out_dir}: exists and is not empty")
        shutil.rmtree(out_dir)
    template = nib.load(str(LABELS_FILE))
    labels = np.asarray(template.dataobj, dtype=np.uint8)
    staging = out_dir.parent / f".{out_dir.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    description = {"Name": "bids-dl demo (synthetic heads)", "BIDSVersion": "1.9.0",
                   "DatasetType": "raw", "License": "CC0",
                   "Authors": ["bids-dl synthetic engine"],
                   "GeneratedBy": [{"Name": "bids-dl-demo"}]}
    (staging / "dataset_description.json").write_text(json.dumps(description, indent=2))
    (staging / "README").write_text(
        "Synthetic demo dataset written by bids-dl-demo: images rendered from a head label\n"
        "map with random contrasts, head positions, bias fields and noise. Not real data.\n")
    (staging / "participants.tsv").write_text("participant_id\tage\tsex\nsub-01\t34\tF\n"
                                              "sub-02\t61\tM\n")
    for spec in DEMO_IMAGES:
        path = staging / spec.relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(render_image(labels, template.affine, spec), str(path))
        sidecar = {"MagneticFieldStrength": 3, **SIDECARS[spec.suffix],
                   "SliceThickness": spec.voxel_mm[2]}
        path.with_name(path.name.replace(".nii.gz", ".json")).write_text(
            json.dumps(sidecar, indent=2))
    if out_dir.exists():
        out_dir.rmdir()
    staging.rename(out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bids-dl-demo", description="Write bids-dl's synthetic demo BIDS dataset.")
    parser.add_argument("out_dir", type=Path, help="where to write the dataset")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    args = parser.parse_args(argv)
    try:
        path = write_demo_dataset(args.out_dir, overwrite=args.overwrite)
    except (FileExistsError, OSError) as error:
        print(f"bids-dl-demo: error: {error}", file=sys.stderr)
        return 2
    print(f"demo dataset written to {path} ({len(DEMO_IMAGES)} images, 2 participants)")
    return 0

