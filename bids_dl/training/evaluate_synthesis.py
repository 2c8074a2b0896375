"""Held-out evaluation of contrast synthesis: paired heads of the held-out anatomy (seeds
never used in training) rendered by :class:`bids_dl.synth.pairs.PairedHeads`.

Metrics (on the model grid, against the clean rendered targets): SSIM (local 7³ windows,
mean inside the brain) and PSNR (inside the brain, peak = the target's 99.9th percentile
there) for FLAIR and T2w; mean absolute error in HU over the head for CT; the contrast of
lesions against white matter on the synthetic FLAIR (lesion cores / white-matter median).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..synth.pairs import HU_SCALE, TARGETS, PairedHeads
from .data import load_label_maps

SEED_OFFSET = 20_000_000  # evaluation seeds: far from any training (seed, step, index)
SSIM_WINDOW = 7
#: ``(1, x, y, z)`` normalised source -> ``(3, x, y, z)`` targets (as in training).
Synthesiser = Callable[[np.ndarray], np.ndarray]


def ssim(predicted: np.ndarray, target: np.ndarray, mask: np.ndarray,
         data_range: float) -> float:
    """Mean local SSIM (uniform ``SSIM_WINDOW``³ windows; Wang et al. 2004 constants
    K1 = 0.01, K2 = 0.03) over the voxels of ``mask``."""
    predicted, target = predicted.astype(np.float64), target.astype(np.float64)

    def local(x):
        return ndimage.uniform_filter(x, SSIM_WINDOW)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_p, mu_t = local(predicted), local(target)
    var_p = local(predicted**2) - mu_p**2
    var_t = local(target**2) - mu_t**2
    covariance = local(predicted * target) - mu_p * mu_t
    values = ((2 * mu_p * mu_t + c1) * (2 * covariance + c2)) / (
        (mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))
    return float(values[mask].mean())


def psnr(predicted: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """Peak signal-to-noise ratio (dB) inside ``mask``; peak = the target's 99.9th
    percentile there."""
    peak = float(np.percentile(target[mask], 99.9))
    mse = float(np.mean((predicted[mask] - target[mask]) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def lesion_contrast(flair: np.ndarray, lesions: np.ndarray, brain: np.ndarray,
                    white: np.ndarray) -> float | None:
    """Mean FLAIR of lesion cores over the median of white matter away from lesions (None
    without lesion cores)."""
    core = ndimage.binary_erosion(lesions)
    if not core.any():
        return None
    away = white & brain & ~ndimage.binary_dilation(lesions, iterations=2)
    return float(flair[core].mean() / np.median(flair[away]))


def evaluate_pairs(synthesise: Synthesiser, labels_dir: Path, cases: int = 3) -> dict:
    """Every synthesis metric of the model card, averaged over ``cases`` held-out heads
    (half of them with lesions)."""
    maps, names = load_label_maps(labels_dir, "heldout")
    heads = PairedHeads(maps)
    scores: dict[str, list[float]] = {}
    for case in range(cases):
        sample = heads.sample((SEED_OFFSET, case), label_map=case % len(maps),
                              lesion_count=20 if case % 2 == 0 else 0)
        predicted = synthesise(sample.source)
        brain, head = sample.brain.astype(bool), sample.head.astype(bool)
        for channel, target in enumerate(TARGETS):
            truth, guess = sample.targets[channel], predicted[channel]
            if target == "CT":
                mae = float(np.abs(guess - truth)[head].mean()) * HU_SCALE
                scores.setdefault("CT_mae_hu_head", []).append(mae)
                continue
            scores.setdefault(f"{target}_ssim_brain", []).append(
                ssim(guess, truth, brain, data_range=2.0))
            scores.setdefault(f"{target}_psnr_db_brain", []).append(psnr(guess, truth, brain))
        white = np.abs(sample.targets[0] - 1.0) < 0.02  # white matter is 1 on the targets
        contrast = lesion_contrast(predicted[0], sample.lesions.astype(bool), brain, white)
        if contrast is not None:
            scores.setdefault("FLAIR_lesion_to_wm_contrast", []).append(contrast)
    return {"cases": cases, "label_maps": sorted(set(names)),
            **{name: round(float(np.mean(values)), 4) for name, values in scores.items()}}
