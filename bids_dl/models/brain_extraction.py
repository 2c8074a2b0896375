"""Brain extraction: the Python API (``extract_brain``) over the shared inference engine.

The mask is the intracranial brain as HD-BET, deepbet and SynthStrip define it: brain tissue,
ventricles and the CSF in the sulci; no skull, dura sinuses, eyes, optic nerves or neck.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from ..utils.io import (
    derived_image,
    load_brain_mask,
    load_volume,
    probability_image,
    write_images_atomically,
)
from .engine import InferenceEngine, keep_largest_structure

TASK = "brain-extraction"
THRESHOLD = 0.5


@dataclass
class BrainExtractionResult:
    """Outputs on the input's grid and affine: ``mask`` (uint8), ``probseg`` (0-1, stored on
    disk as uint8 with a scaling slope: 256 levels, small and fast files),
    ``brain`` (input masked, input data type and scaling); ``volume_ml`` of the mask."""

    mask: nib.Nifti1Image
    probseg: nib.Nifti1Image
    brain: nib.Nifti1Image
    volume_ml: float
    device: str
    model: dict
    timings: dict = field(default_factory=dict)

    def write(self, out_prefix: str | os.PathLike) -> list[Path]:
        """Write ``<prefix>_mask.nii.gz``, ``_probseg.nii.gz`` and ``_brain.nii.gz`` (all or none)."""
        prefix = str(out_prefix)
        return write_images_atomically({
            Path(f"{prefix}_mask.nii.gz"): self.mask,
            Path(f"{prefix}_probseg.nii.gz"): self.probseg,
            Path(f"{prefix}_brain.nii.gz"): self.brain,
        })


def make_engine(model, threshold: float = THRESHOLD) -> InferenceEngine:
    """The shared inference engine set up for brain extraction (one solid structure)."""
    return InferenceEngine(model, grid_postprocess=lambda p: keep_largest_structure(p, threshold))


def brain_probability(image: nib.Nifti1Image, model=None) -> np.ndarray:
    """Brain probability (float32) on the grid of ``image``; the shipped model by default."""
    if model is None:
        from .registry import load_model

        model, _ = load_model(TASK)
    data = np.asarray(image.get_fdata(dtype=np.float32)).reshape(image.shape[:3])
    return make_engine(model).run(data, image.affine).probability


def reference_brain(image: nib.Nifti1Image, brain_mask: str | os.PathLike | None = None,
                    ) -> np.ndarray:
    """Boolean brain mask of ``image``: the given ``brain_mask`` file (on ``image``'s grid,
    e.g. from the brain-extraction task of the same run), else made by the model."""
    if brain_mask is not None:
        return load_brain_mask(brain_mask, image)
    return brain_probability(image) > 0.5


def extract_brain(in_file: str | os.PathLike, device: str = "auto",
                  threshold: float = THRESHOLD) -> BrainExtractionResult:
    """Brain-extract one 3D NIfTI image of any contrast, orientation and resolution.

    Raises :class:`bids_dl.utils.io.InputImageError` for unusable input (before the model
    is loaded).
    """
    tic = time.perf_counter()
    data, image = load_volume(in_file)
    load_seconds = time.perf_counter() - tic
    from ..utils.device import configure_device, device_in_use

    configure_device(device)
    from .registry import load_model

    tic = time.perf_counter()
    model, card = load_model(TASK)
    used = device_in_use(device)
    model_seconds = time.perf_counter() - tic
    result = make_engine(model, threshold).run(data, image.affine)
    tic = time.perf_counter()
    mask = result.probability > threshold
    voxel_ml = abs(np.linalg.det(image.affine[:3, :3])) / 1000.0
    raw = np.asanyarray(image.dataobj)
    raw = raw.reshape(data.shape) * mask.astype(raw.dtype)
    brain = nib.Nifti1Image(raw, image.affine, image.header.copy())
    timings = {"load": load_seconds, "model": model_seconds, **result.timings,
               "postprocess": time.perf_counter() - tic}
    return BrainExtractionResult(
        mask=derived_image(image, mask, np.uint8),
        probseg=probability_image(image, result.probability),
        brain=brain,
        volume_ml=float(mask.sum() * voxel_ml),
        device=used,
        model={"name": card.get("name", TASK), "version": card.get("version"),
               "sha256": card.get("sha256")},
        timings=timings,
    )
