"""Reading NIfTI images with clear errors, and writing files atomically."""

from __future__ import annotations

import contextlib
import gzip
import os
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np


class InputImageError(ValueError):
    """An input image cannot be used; the message names the file and the problem."""


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _temporary_beside(final: Path) -> str:
    """An empty temporary file next to ``final`` (same suffixes, mode as for a new file)."""
    handle, tmp = tempfile.mkstemp(prefix=f".{final.name.split('.')[0]}.",
                                   suffix="".join(final.suffixes), dir=final.parent)
    os.close(handle)
    os.chmod(tmp, 0o666 & ~_umask())
    return tmp


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``final``; move it into place only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_beside(final)  # same suffixes, so writers pick the right format
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_volume(path: str | os.PathLike) -> tuple[np.ndarray, nib.Nifti1Image]:
    """Load a 3D NIfTI image as float32 data (scaling applied) plus the image.

    Raises :class:`InputImageError` for a missing, non-NIfTI or truncated file, a 2D image,
    a 4D series (a trailing axis of length 1 is accepted), NaN/Inf voxels or an all-zero image.
    """
    path = Path(path)
    if not path.is_file():
        raise InputImageError(f"{path}: no such file")
    try:
        image = nib.load(str(path))
    except Exception as error:  # nibabel raises many types for unreadable files
        raise InputImageError(f"{path}: not a readable NIfTI image ({_reason(error)})") from None
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputImageError(f"{path}: not a NIfTI image ({type(image).__name__})")
    shape = image.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3 or min(shape) < 2:
        kind = "a 4D series" if len(shape) >= 4 else "a 2D image"
        raise InputImageError(f"{path}: {kind} of shape {image.shape}; a 3D volume is needed")
    try:
        data = np.asarray(image.get_fdata(dtype=np.float32)).reshape(shape)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile, ValueError) as error:
        raise InputImageError(f"{path}: truncated or corrupt image data ({_reason(error)})") from None
    bad = ~np.isfinite(data)
    if bad.any():
        raise InputImageError(f"{path}: {int(bad.sum())} voxels are NaN or Inf")
    if not data.any():
        raise InputImageError(f"{path}: every voxel is zero")
    if not np.isfinite(image.affine).all() or abs(np.linalg.det(image.affine[:3, :3])) < 1e-6:
        raise InputImageError(f"{path}: the voxel-to-world affine is singular or not finite")
    return data, image


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def write_images_atomically(images: dict[Path, nib.Nifti1Image]) -> list[Path]:
    """Save several images so that either all appear or none: each goes to a temporary
    file beside its target first; they are moved into place only when all are written."""
    staged: dict[Path, str] = {}
    try:
        for target, image in images.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = _temporary_beside(target)
            staged[target] = tmp
            nib.save(image, tmp)
        for target, tmp in staged.items():
            os.replace(tmp, target)
        return list(staged)
    finally:
        for tmp in staged.values():
            if os.path.exists(tmp):
                os.unlink(tmp)


def derived_image(image: nib.Nifti1Image, data: np.ndarray, dtype, stored_as=None,
                  ) -> nib.Nifti1Image:
    """A NIfTI image on ``image``'s grid holding ``data`` as ``dtype`` in memory; on disk as
    ``stored_as`` when given (nibabel then picks the scaling slope)."""
    header = nib.Nifti1Header()
    header.set_xyzt_units(*image.header.get_xyzt_units())
    out = nib.Nifti1Image(data.astype(dtype), image.affine, header)
    out.set_qform(image.affine, int(image.header["qform_code"]) or 1)
    out.set_sform(image.affine, int(image.header["sform_code"]) or 1)
    out.set_data_dtype(stored_as or dtype)
    return out


#: Probability maps are kept below 1 by this much: stored as uint8 with a float32 scaling
#: slope, an exact 1.0 reads back as 1.00000005 (slope rounding).
PROBABILITY_HEADROOM = 1e-6


def probability_image(image: nib.Nifti1Image, probability: np.ndarray) -> nib.Nifti1Image:
    """A probability map (0-1) on ``image``'s grid, stored as uint8 with a scaling slope
    (256 levels) that reads back within [0, 1]."""
    data = np.clip(probability, 0.0, 1.0 - PROBABILITY_HEADROOM)
    return derived_image(image, data, np.float32, np.uint8)


def load_brain_mask(path: str | os.PathLike, reference: nib.Nifti1Image) -> np.ndarray:
    """A brain mask file as a boolean array; it must lie on ``reference``'s grid (the image
    it belongs to), else :class:`InputImageError`."""
    data, image = load_volume(path)
    if data.shape != reference.shape[:3] or not np.allclose(image.affine, reference.affine,
                                                           atol=1e-3):
        raise InputImageError(f"{path}: the brain mask is not on the grid of the image it "
                              "should belong to")
    return data > 0.5
