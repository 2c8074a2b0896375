"""Contrast synthesis: a FLAIR, a T2w or a pseudo-CT from a T1w.

Path (shared with lesion segmentation): load the T1w -> its brain mask (given, or by the
brain-extraction model) -> the engine's 1.5 mm grid centred on the brain -> normalisation
inside the brain -> the synthesis model on 64³ tiles (outputs: FLAIR, T2w relative to white
matter; CT in HU / 1000; since session 15 the shipped model is the tissue-mixture net of
:mod:`bids_dl.models.synthesis_net` with its frozen lesion branch, and any U-Net with three
linear outputs runs the same way) -> the asked targets resampled onto the T1w's grid. MR
outputs are put on the source's white-matter scale (white matter = the T1w's white-matter
intensity); CT in HU.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from ..utils.io import derived_image, load_volume, write_images_atomically
from .engine import GridSpec, InferenceEngine, brain_grid
from .grid import LESION_SHAPE, LESION_SPACING, normalise_in_mask

TASK = "contrast-synthesis"
TARGETS = ("FLAIR", "T2w", "CT")  # the model's output channels, in order
HU_SCALE = 1000.0
AIR_HU = -1000.0
TILE = 64
WHITE_MATTER_LEVEL = 0.75  # normalised T1w above this inside the brain: mostly white matter


@dataclass
class SynthesisResult:
    """Synthetic images on the source's grid (``images``: target -> NIfTI), the source's
    white-matter intensity used as the MR scale, and run facts."""

    images: dict[str, nib.Nifti1Image]
    white_matter_scale: float
    device: str
    model: dict
    timings: dict[str, float] = field(default_factory=dict)

    def write(self, out_prefix: str | os.PathLike) -> list[Path]:
        """``OUT_PREFIX_<target>.nii.gz`` for each target (atomic)."""
        return write_images_atomically({Path(f"{out_prefix}_{target}.nii.gz"): image
                                        for target, image in self.images.items()})


def white_matter_scale(normalised: np.ndarray, source: np.ndarray, brain: np.ndarray) -> float:
    """The source's white-matter intensity: median of the source where the normalised T1w
    is above :data:`WHITE_MATTER_LEVEL` inside the brain (1.0 when there is none)."""
    white = brain & (normalised > WHITE_MATTER_LEVEL)
    return float(np.median(source[white])) if white.any() else 1.0


def synthesize(t1w: str | os.PathLike, targets: tuple[str, ...] = ("FLAIR",),
               device: str = "auto", model=None,
               brain_mask: str | os.PathLike | None = None) -> SynthesisResult:
    """Synthesise ``targets`` (of :data:`TARGETS`) from the T1w at ``t1w``; ``model``: a
    Keras model instead of the shipped one; ``brain_mask``: the T1w's brain mask when known.
    Raises :class:`~bids_dl.utils.io.InputImageError` for unusable input (before any model
    is loaded)."""
    unknown = [target for target in targets if target not in TARGETS]
    if unknown or not targets:
        raise ValueError(f"targets must be some of {', '.join(TARGETS)}, not {unknown}")
    tic = time.perf_counter()
    data, image = load_volume(t1w)
    timings = {"load": time.perf_counter() - tic}
    from ..utils.device import configure_device, device_in_use

    configure_device(device)
    from .brain_extraction import reference_brain
    from .registry import model_or_shipped

    tic = time.perf_counter()
    brain = reference_brain(image, brain_mask)
    timings["brain_mask"] = time.perf_counter() - tic
    model, card = model_or_shipped(TASK, model)
    engine = InferenceEngine(model, GridSpec(LESION_SHAPE, LESION_SPACING))
    tic = time.perf_counter()
    grid = brain_grid(engine, brain, image.affine)
    source = engine.to_grid(data, image.affine, grid.affine)
    normalised = normalise_in_mask(source, grid.brain)
    scale = white_matter_scale(normalised, source, grid.brain)
    timings["resample_in"] = time.perf_counter() - tic
    tic = time.perf_counter()
    outputs = engine.predict_tiled(normalised[..., None], TILE)
    timings["predict"] = time.perf_counter() - tic
    tic = time.perf_counter()
    images = {}
    for target in targets:
        channel = outputs[..., TARGETS.index(target)]
        if target == "CT":
            hounsfield = channel * HU_SCALE
            native = resample_onto(engine, hounsfield, grid.affine, image, AIR_HU)
            images[target] = derived_image(image, np.round(native), np.int16)
        else:
            native = resample_onto(engine, np.clip(channel, 0, None), grid.affine, image, 0.0)
            images[target] = derived_image(image, native * scale, np.float32)
    timings["resample_out"] = time.perf_counter() - tic
    return SynthesisResult(images, scale, device_in_use(device),
                           {"name": card.get("name", TASK), "version": card.get("version"),
                            "sha256": card.get("sha256")}, timings)


def resample_onto(engine: InferenceEngine, grid_data: np.ndarray, grid_affine: np.ndarray,
                  image: nib.Nifti1Image, outside: float) -> np.ndarray:
    """Grid values on ``image``'s grid; voxels beyond the model grid get ``outside``."""
    from ..utils.resample import resample_to_grid

    shape = image.shape[:3]
    native = engine.to_native(grid_data, grid_affine, shape, image.affine)
    covered = resample_to_grid(np.ones(grid_data.shape, np.float32), grid_affine, shape,
                               image.affine, order=1) > 0.5
    return np.where(covered, native, outside).astype(np.float32)
