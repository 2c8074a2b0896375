"""Accuracy of brain extraction: held-out synthetic heads of every contrast, and Colin27.

Colin27 (``ch2``, ``ch2bet`` in mricron-data) is real data never used for training; the
synthetic heads come from the ``heldout`` anatomies of the label-map manifest with seeds
not used in training.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np

from ..synth.generator import render_native
from .data import load_label_maps

CONTRASTS = ("T1w", "T2w", "FLAIR", "PD")
RESOLUTIONS = {"1mm": None, "5mm-slices": 5.0}
EVALUATION_SEED = 90210  # never a training seed (training seeds are (seed, step, i) tuples)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean arrays (1.0 when both are empty)."""
    a, b = a.astype(bool), b.astype(bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2.0 * np.logical_and(a, b).sum() / total)


Segmenter = Callable[[nib.Nifti1Image], np.ndarray]  # image -> boolean mask on its grid


def synthetic_heldout(segment: Segmenter, labels_dir: Path, contrasts=CONTRASTS,
                      resolutions=tuple(RESOLUTIONS)) -> dict[str, dict[str, float]]:
    """Mean Dice per contrast and resolution over the held-out label maps."""
    maps, names = load_label_maps(labels_dir, "heldout")
    scores: dict[str, dict[str, float]] = {}
    for resolution in resolutions:
        for contrast in contrasts:
            values = []
            for index, labels in enumerate(maps):
                rng = np.random.default_rng([EVALUATION_SEED, index, CONTRASTS.index(contrast)])
                image, affine, truth = render_native(labels, contrast, rng,
                                                     RESOLUTIONS[resolution])
                values.append(dice(segment(nib.Nifti1Image(image, affine)), truth))
            scores.setdefault(resolution, {})[contrast] = float(np.mean(values))
    return scores


def colin27_head() -> nib.Nifti1Image:
    """The Colin27 T1w head image (held-out real data)."""
    from ..synth.sources import colin27 as colin_paths

    return nib.load(str(colin_paths()[0]))


def colin27(segment: Segmenter) -> dict[str, float]:
    """Dice against ``ch2bet > 0`` and volumes (ml) on the real Colin27 T1w head."""
    from ..synth.sources import colin27 as colin_paths

    head_path, bet_path = colin_paths()
    head = nib.load(str(head_path))
    reference = np.asarray(nib.load(str(bet_path)).dataobj) > 0
    mask = segment(head)
    voxel_ml = abs(np.linalg.det(head.affine[:3, :3])) / 1000
    return {"dice_vs_ch2bet": dice(mask, reference), "volume_ml": float(mask.sum() * voxel_ml),
            "ch2bet_volume_ml": float(reference.sum() * voxel_ml)}


def colin27_variants(head: nib.Nifti1Image, seed: int = 0) -> dict[str, nib.Nifti1Image]:
    """The same head stored and acquired differently: other voxel orders, int16 with scaling,
    an oblique 1.1 mm grid, a strong bias field, Rician noise, a tight field of view."""
    from scipy import ndimage

    from ..utils.resample import resample_to_grid, smooth_noise

    rng = np.random.default_rng(seed)
    data = np.asarray(head.get_fdata(dtype=np.float32))
    variants = {
        "LPS storage": head.as_reoriented(nib.orientations.axcodes2ornt("LPS")),
        "PSL storage": head.as_reoriented(nib.orientations.axcodes2ornt("PSL")),
    }
    scaled = nib.Nifti1Image((data * 13.7 - 400).astype(np.float32), head.affine)
    scaled.set_data_dtype(np.int16)  # nibabel stores int16 with a slope and intercept
    variants["int16 scaled"] = nib.Nifti1Image.from_bytes(scaled.to_bytes())
    angle_x, angle_z = np.deg2rad(15), np.deg2rad(10)
    rot_x = np.array([[1, 0, 0], [0, np.cos(angle_x), -np.sin(angle_x)],
                      [0, np.sin(angle_x), np.cos(angle_x)]])
    rot_z = np.array([[np.cos(angle_z), -np.sin(angle_z), 0],
                      [np.sin(angle_z), np.cos(angle_z), 0], [0, 0, 1]])
    oblique = np.eye(4)
    oblique[:3, :3] = rot_z @ rot_x * 1.1
    shape = (180, 210, 180)
    centre = head.affine[:3, :3] @ ((np.array(head.shape) - 1) / 2) + head.affine[:3, 3]
    oblique[:3, 3] = centre - oblique[:3, :3] @ ((np.array(shape) - 1) / 2)
    variants["oblique 1.1 mm"] = nib.Nifti1Image(
        resample_to_grid(data, head.affine, shape, oblique, order=1), oblique)
    bias = np.exp(0.35 * smooth_noise(data.shape, rng, 4))
    variants["bias field"] = nib.Nifti1Image(data * bias, head.affine)
    sigma = 0.05 * np.percentile(data, 99)
    noisy = np.sqrt((data + sigma * rng.standard_normal(data.shape)) ** 2
                    + (sigma * rng.standard_normal(data.shape)) ** 2)
    variants["Rician noise 5%"] = nib.Nifti1Image(noisy.astype(np.float32), head.affine)
    head_mask = ndimage.binary_opening(data > 0.15 * np.percentile(data, 99), iterations=2)
    lo, hi = (np.array(a) for a in zip(*[(w.min(), w.max()) for w in np.nonzero(head_mask)]))
    lo, hi = np.maximum(lo - 3, 0), np.minimum(hi + 4, np.array(data.shape))
    variants["tight field of view"] = head.slicer[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    return variants


ProbabilityFn = Callable[[nib.Nifti1Image], np.ndarray]  # image -> probability on its grid


def robustness(probability: ProbabilityFn, head: nib.Nifti1Image) -> dict[str, float]:
    """Dice of each variant's mask with the clean result, compared on the clean grid
    (probabilities resampled linearly through world coordinates, then thresholded)."""
    from ..models.engine import largest_component
    from ..utils.resample import resample_to_grid

    clean = largest_component(probability(head) > 0.5)
    scores = {}
    for name, variant in colin27_variants(head).items():
        on_clean = resample_to_grid(probability(variant), variant.affine, head.shape,
                                    head.affine, order=1, cval=-1.0)
        inside = on_clean >= 0  # voxels the variant's field of view covers
        mask = largest_component((on_clean > 0.5) & inside)
        scores[name] = dice(mask[inside], clean[inside])
    return scores
