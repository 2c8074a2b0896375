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


VALIDATION_SEED = 21_000_000  # validation heads: the training anatomies, never-used seeds


def evaluate_pairs(synthesise: Synthesiser, labels_dir: Path, cases: int = 3,
                   split: str = "heldout") -> dict:
    """Every synthesis metric of the model card, averaged over ``cases`` held-out heads
    (half of them with lesions); ``split="train"``: validation heads of the training
    anatomies with seeds never used in training (to choose between candidates)."""
    maps, names = load_label_maps(labels_dir, split)
    heads = PairedHeads(maps)
    offset = SEED_OFFSET if split == "heldout" else VALIDATION_SEED
    scores: dict[str, list[float]] = {}
    for case in range(cases):
        sample = heads.sample((offset, case), label_map=case % len(maps),
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


#: What each oracle rendering of :func:`oracle_ceilings` knows of a head beyond the
#: reference signals: (texture, T1 and PD deviations, T2 deviations).
ORACLES = {"fractions": (False, False, False),
           "fractions + texture": (True, False, False),
           "fractions + texture + T1, PD": (True, True, False)}


def oracle_ceilings(labels_dir: Path, cases: int = 3, split: str = "heldout") -> dict:
    """FLAIR and T2w SSIM / PSNR (as in :func:`evaluate_pairs`, on its heads) of renderings
    that know more of each head than its T1w shows: the exact partial-volume tissue
    fractions with the reference signals (the best the synthesis net's fixed rendering layer
    can output), plus the head's exact microtexture, plus its T1 and PD deviations from the
    tables (T2's left at the table values: a T1w hardly shows them). Knowing everything
    gives the targets exactly (checked). Upper bounds on what a model can reach, not
    estimates (the source's noise, bias and resolution are ignored)."""
    from ..synth.physics import properties_from_factors

    maps, _ = load_label_maps(labels_dir, split)
    heads = PairedHeads(maps)
    offset = SEED_OFFSET if split == "heldout" else VALIDATION_SEED
    scores: dict[str, list[float]] = {}
    for case in range(cases):
        seed = (offset, case)
        lesion_count = 20 if case % 2 == 0 else 0
        sample = heads.sample(seed, label_map=case % len(maps), lesion_count=lesion_count)
        draw = heads.draw_head(np.random.default_rng(seed), case % len(maps), lesion_count)
        brain = sample.brain.astype(bool)
        own = heads.target_tissues(draw)
        for channel, target in enumerate(TARGETS[:2]):
            truth = sample.targets[channel]
            if not np.array_equal(heads.render_target(draw, target), truth):
                raise RuntimeError(f"oracle head {seed} does not render its own {target}")
            for name, (textured, t1_pd, t2) in ORACLES.items():
                factors = np.ones_like(own.factors)
                factors[[0, 2]] = own.factors[[0, 2]] if t1_pd else 1.0
                factors[1] = own.factors[1] if t2 else 1.0
                tissues = properties_from_factors(factors, own.field_t)
                image = heads.render_target(draw, target, tissues, textured=textured)
                scores.setdefault(f"{name}: {target}_ssim_brain", []).append(
                    ssim(image, truth, brain, data_range=2.0))
                scores.setdefault(f"{name}: {target}_psnr_db_brain", []).append(
                    psnr(image, truth, brain))
    return {"cases": cases, **{name: round(float(np.mean(values)), 4)
                               for name, values in scores.items()}}


def tissue_split(t1w: np.ndarray, brain: np.ndarray) -> dict[str, np.ndarray]:
    """CSF, GM and WM masks of a T1w inside ``brain`` by intensity level (2nd-98th percentile
    in the brain scaled to 0-1: CSF < 0.3, GM 0.45-0.65, WM > 0.85; the uncertain levels
    between are left out)."""
    low, high = np.percentile(t1w[brain], (2, 98))
    level = (t1w - low) / max(high - low, 1e-6)
    return {"csf": brain & (level < 0.3), "gm": brain & (level > 0.45) & (level < 0.65),
            "wm": brain & (level > 0.85)}


def colin27_synthesis(folder: Path, device: str = "cpu") -> dict:
    """Real Colin27 T1w (held out) -> FLAIR, T2w, CT through the shipped path (files in
    ``folder``): median FLAIR and T2w per tissue (relative to WM = 1), CT median of brain
    tissue and 99th percentile outside the brain (HU), and whether the orderings hold
    (FLAIR: CSF < WM < GM; T2w: WM < GM < CSF; CT: brain 20-45 HU, skull > 500 HU)."""
    import nibabel as nib

    from ..models.brain_extraction import extract_brain
    from ..models.contrast_synthesis import synthesize
    from .evaluate import colin27_head

    head = colin27_head()
    path = Path(folder) / "colin27_T1w.nii.gz"
    nib.save(head, str(path))
    mask = extract_brain(path, device=device).mask
    mask_path = Path(folder) / "colin27_mask.nii.gz"
    nib.save(mask, str(mask_path))
    brain = np.asarray(mask.dataobj) > 0
    result = synthesize(path, TARGETS, device=device, brain_mask=mask_path)  # mask made once
    tissues = tissue_split(np.asarray(head.dataobj, np.float32), brain)
    out: dict = {}
    for target in ("FLAIR", "T2w"):
        data = np.asarray(result.images[target].dataobj, np.float32)
        medians = {name: float(np.median(data[mask])) for name, mask in tissues.items()}
        out[target] = {name: round(value / medians["wm"], 3) for name, value in medians.items()}
    ct = np.asarray(result.images["CT"].dataobj, np.float32)
    out["CT"] = {"brain_median_hu": round(float(np.median(ct[brain & ~tissues["csf"]])), 1),
                 "outside_brain_p99_hu": round(float(np.percentile(ct[~brain], 99)), 1)}
    out["orderings_hold"] = {
        "FLAIR": out["FLAIR"]["csf"] < out["FLAIR"]["wm"] < out["FLAIR"]["gm"],
        "T2w": out["T2w"]["wm"] < out["T2w"]["gm"] < out["T2w"]["csf"],
        "CT": 20 <= out["CT"]["brain_median_hu"] <= 45 and out["CT"]["outside_brain_p99_hu"]
        > 500}
    return out
