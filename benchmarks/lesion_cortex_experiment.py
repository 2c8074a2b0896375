"""Experiment: how much of the lesion model's false positives on the held-out heads comes
from the held-out anatomy's cortex.

The held-out ``jhu189`` label map has no tissue classes of its own: each ROI takes the class
most of its voxels have in the MNI152 anatomy, so its gyral ROIs (gyral white matter
included) become all cortical GM (1,156 ml, no sulcal CSF). This script copies the label
folder to ``--out`` with the ``jhu189`` GM cut to its outer 3 mm (the rest white matter; no
sulci either, so a lower bracket, not a realistic brain) and measures, with the shipped
model, the lesion-free false-positive volume and the FLAIR + T1w lesion metrics there.
Not the evaluation of record (``benchmarks/lesion_accuracy.py``).

    python benchmarks/lesion_cortex_experiment.py [--labels .cache/labels]
        [--out .cache/labels-cortex] [--rim-mm 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def thin_cortex(labels: np.ndarray, rim_mm: float) -> np.ndarray:
    """``labels`` (1 mm) with cortical GM deeper than ``rim_mm`` inside the brain made WM."""
    from bids_dl.synth.labels import LABELS, brain_mask

    depth = ndimage.distance_transform_edt(brain_mask(labels))
    out = labels.copy()
    out[(labels == LABELS["cortical_gm"]) & (depth > rim_mm)] = LABELS["cerebral_wm"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labels", type=Path, default=ROOT / ".cache" / "labels")
    parser.add_argument("--out", type=Path, default=ROOT / ".cache" / "labels-cortex")
    parser.add_argument("--rim-mm", type=float, default=3.0)
    args = parser.parse_args()
    from bids_dl.models.lesion_segmentation import segment_lesions
    from bids_dl.synth.labels import LABELS
    from bids_dl.training import evaluate_lesions

    shutil.rmtree(args.out, ignore_errors=True)
    shutil.copytree(args.labels, args.out)
    for path in sorted(args.out.glob("jhu189_head-*.nii.gz")):
        image = nib.load(path)
        labels = thin_cortex(np.asarray(image.dataobj), args.rim_mm)
        nib.save(nib.Nifti1Image(labels, image.affine, image.header), path)
        print(f"{path.name}: cortical GM {(labels == LABELS['cortical_gm']).sum() / 1000:.0f}"
              f" ml, cerebral WM {(labels == LABELS['cerebral_wm']).sum() / 1000:.0f} ml")

    def segment(flair, t1w):
        return np.asarray(segment_lesions(flair, t1w).mask.dataobj) > 0

    print("lesion-free heads:", evaluate_lesions.lesion_free(segment, args.out))
    print("heads with lesions, FLAIR + T1w:",
          evaluate_lesions.synthetic_lesions(segment, args.out, 3, ("FLAIR+T1w",)))


if __name__ == "__main__":
    main()
