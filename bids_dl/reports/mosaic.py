"""Overlay mosaics for the visual reports: a mask contour on its image, three orientations."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

ORIENTATIONS = (("sagittal", 0), ("coronal", 1), ("axial", 2))


def _slices(mask: np.ndarray, axis: int, count: int) -> list[int]:
    """``count`` evenly spaced slice indices across the mask's extent along ``axis`` (the
    middle of the volume when the mask is empty)."""
    other = tuple(a for a in range(3) if a != axis)
    present = np.flatnonzero(mask.any(axis=other))
    if present.size == 0:
        return [mask.shape[axis] // 2]
    low, high = present[0], present[-1]
    margin = (high - low) * 0.08
    return sorted({int(round(v)) for v in np.linspace(low + margin, high - margin, count)})


def _plane(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """Slice of an RAS volume, transposed for ``imshow(origin="lower")``: anterior or superior
    up, the subject's right on the right (neurological convention)."""
    plane = np.take(volume, index, axis=axis)
    return plane.T  # rows = second remaining axis (A or S), shown with origin="lower"


def plot_mask_overlay(image_file: str | os.PathLike, mask_file: str | os.PathLike,
                      out_file: str | os.PathLike, title: str = "", per_row: int = 7) -> Path:
    """Write a mosaic (SVG, or the format of ``out_file``'s suffix): rows of sagittal,
    coronal and axial slices of ``image_file`` (any orientation; shown in RAS, neurological
    convention) with the contour of ``mask_file`` (same grid) drawn on top. Returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image = nib.as_closest_canonical(nib.load(str(image_file)))
    mask = nib.as_closest_canonical(nib.load(str(mask_file)))
    data = np.asarray(image.get_fdata(dtype=np.float32)).reshape(image.shape[:3])
    binary = np.asarray(mask.dataobj).reshape(mask.shape[:3]) > 0
    low, high = np.percentile(data[data > 0] if (data > 0).any() else data, (0.5, 99.5))
    zooms = image.header.get_zooms()[:3]
    fig, axes = plt.subplots(3, per_row, figsize=(per_row * 1.6, 3 * 1.75),
                             facecolor="black", squeeze=False)
    for row, (name, axis) in enumerate(ORIENTATIONS):
        indices = _slices(binary, axis, per_row)
        shown = [a for a in range(3) if a != axis]
        aspect = zooms[shown[1]] / zooms[shown[0]]
        for column in range(per_row):
            ax = axes[row, column]
            ax.set_axis_off()
            if column >= len(indices):
                continue
            ax.imshow(_plane(data, axis, indices[column]), cmap="gray", vmin=low, vmax=high,
                      origin="lower", aspect=aspect, interpolation="nearest")
            outline = _plane(binary, axis, indices[column])
            if outline.any():
                ax.contour(outline.astype(np.float32), levels=[0.5], colors="#ff6a00",
                           linewidths=0.9, origin="lower")
        axes[row, 0].text(0.02, 0.96, name, color="white", fontsize=8, va="top",
                          transform=axes[row, 0].transAxes)
    if title:
        fig.suptitle(title, color="white", fontsize=9)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=0.93 if title else 1, wspace=0.02,
                        hspace=0.02)
    out_file = Path(out_file)
    fig.savefig(out_file, format=out_file.suffix.lstrip(".") or "svg", facecolor="black")
    plt.close(fig)
    return out_file


def plot_side_by_side(images: list[tuple[str, str | os.PathLike]], out_file: str | os.PathLike,
                      title: str = "") -> Path:
    """Write a grid (SVG): one column per ``(label, file)`` image, rows sagittal, coronal and
    axial through the same world point (the first image's centre), each image on its own grid
    (e.g. a T1w, the FLAIR synthesised from it and the acquired FLAIR). Returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loaded = [(label, nib.as_closest_canonical(nib.load(str(path)))) for label, path in images]
    first = loaded[0][1]
    centre = first.affine @ np.append((np.array(first.shape[:3]) - 1) / 2, 1.0)
    fig, axes = plt.subplots(3, len(loaded), figsize=(len(loaded) * 2.2, 3 * 2.2),
                             facecolor="black", squeeze=False)
    for column, (label, image) in enumerate(loaded):
        data = np.asarray(image.get_fdata(dtype=np.float32)).reshape(image.shape[:3])
        voxel = np.round(np.linalg.inv(image.affine) @ centre)[:3].astype(int)
        voxel = np.clip(voxel, 0, np.array(data.shape) - 1)
        low, high = np.percentile(data, (0.5, 99.5))
        zooms = image.header.get_zooms()[:3]
        for row, (name, axis) in enumerate(ORIENTATIONS):
            ax = axes[row, column]
            ax.set_axis_off()
            shown = [a for a in range(3) if a != axis]
            ax.imshow(_plane(data, axis, int(voxel[axis])), cmap="gray", vmin=low,
                      vmax=high if high > low else low + 1, origin="lower",
                      aspect=zooms[shown[1]] / zooms[shown[0]], interpolation="nearest")
            if column == 0:
                ax.text(0.02, 0.96, name, color="white", fontsize=8, va="top",
                        transform=ax.transAxes)
        axes[0, column].set_title(label, color="white", fontsize=9)
    if title:
        fig.suptitle(title, color="white", fontsize=9)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=0.88 if title else 0.93, wspace=0.02,
                        hspace=0.02)
    out_file = Path(out_file)
    fig.savefig(out_file, format=out_file.suffix.lstrip(".") or "svg", facecolor="black")
    plt.close(fig)
    return out_file
