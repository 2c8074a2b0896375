"""Procedural non-brain tissue around a brain anatomy: CSF, dura, skull, scalp, eyes, face, neck.

No open source ships labelled heads, so the layers are shells of random, spatially varying
thickness (smooth noise) around the brain, plus a face/neck region of random soft tissue,
eyes in fat-filled orbits and air cavities. Coordinates are MNI-like mm on ``HEAD_GRID``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..utils.resample import smooth_noise
from .labels import HEAD_AFFINE, HEAD_SHAPE, LABELS, brain_mask

#: Shells outside the brain, innermost first: (label, mean thickness mm, spread mm).
SHELLS = (
    ("extracerebral_csf", 1.5, 1.0),
    ("dura_sinuses", 1.0, 0.4),
    ("bone_cortical", 1.5, 0.5),
    ("bone_diploe", 3.0, 1.5),
    ("bone_cortical", 1.5, 0.5),
    ("scalp_fat", 2.5, 1.5),
    ("muscle", 2.0, 1.5),
    ("skin", 1.5, 0.5),
)


def world_coordinates() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y, z (mm) of every voxel of the head grid, as broadcastable 1D axes."""
    axes = [HEAD_AFFINE[i, i] * np.arange(n) + HEAD_AFFINE[i, 3] for i, n in enumerate(HEAD_SHAPE)]
    return axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]


def _ellipsoid(x, y, z, centre, radii) -> np.ndarray:
    return ((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + (
        (z - centre[2]) / radii[2]
    ) ** 2 <= 1.0


def add_head(anatomy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Surround a brain anatomy (uint8 labels on the head grid) with random non-brain tissue.

    Returns a new uint8 label map; brain voxels are kept as they are.
    """
    brain = brain_mask(anatomy)
    outside = np.asarray(ndimage.distance_transform_edt(~brain), np.float32)  # mm (1 mm grid)
    x, y, z = world_coordinates()
    head = anatomy.copy()
    scale = rng.uniform(0.7, 1.4)  # some heads have thicker skulls and scalps overall
    depth = np.zeros(HEAD_SHAPE, np.float32)
    for name, mean, spread in SHELLS:
        thickness = mean * scale + spread * smooth_noise(HEAD_SHAPE, rng, int(rng.integers(4, 9)))
        inner = depth.copy()
        depth += np.clip(thickness, 0.3, None)
        head[(outside > inner) & (outside <= depth)] = LABELS[name]
    scalp_surface = depth

    # Face and neck: an envelope below and in front of the brain, filled with random tissue.
    face = _ellipsoid(x, y, z, (0, 40 + rng.uniform(-6, 6), -55), (rng.uniform(58, 70), 60, 52))
    neck = ((x / rng.uniform(45, 60)) ** 2 + ((y + 25) / rng.uniform(45, 60)) ** 2 <= 1) & (z < -40)
    envelope = (face | neck) & (outside > scalp_surface * 0.6) & (head == 0)
    tissue_fields = np.stack([smooth_noise(HEAD_SHAPE, rng, 14) for _ in range(4)])
    tissue = np.argmax(tissue_fields, axis=0)
    choices = np.array([LABELS["soft_tissue"], LABELS["muscle"], LABELS["scalp_fat"],
                        LABELS["bone_cortical"]], np.uint8)
    head[envelope] = choices[tissue[envelope]]
    skin = envelope & (ndimage.distance_transform_edt(envelope) <= rng.uniform(1, 2.5))
    head[skin] = LABELS["skin"]

    # Spine and jaw: bone columns and arcs in the neck and face.
    spine = ((x / 9) ** 2 + ((y + 30) / 10) ** 2 <= 1) & (z < -70)
    head[spine & envelope] = LABELS["bone_cortical"]

    # Air cavities (nasal, sinuses, mouth) in the face.
    for _ in range(int(rng.integers(1, 4))):
        centre = (rng.uniform(-12, 12), rng.uniform(45, 75), rng.uniform(-75, -35))
        radii = rng.uniform(5, 14, size=3)
        head[_ellipsoid(x, y, z, centre, radii) & envelope] = LABELS["air_cavity"]

    # Eyes in orbital fat, in front of and below the frontal lobes, never over brain.
    far_from_brain = outside > 3
    for side in (-1, 1):
        centre = (side * rng.uniform(29, 36), rng.uniform(48, 58), rng.uniform(-42, -32))
        radius = rng.uniform(10.5, 13)
        orbit = _ellipsoid(x, y, z, centre, (radius + 4, radius + 6, radius + 4)) & far_from_brain
        head[orbit] = LABELS["orbital_fat"]
        head[_ellipsoid(x, y, z, centre, (radius,) * 3) & far_from_brain] = LABELS["eyes"]
        nerve_end = (side * 14.0, centre[1] - 30, centre[2] + 8)
        for t in np.linspace(0, 1, 12):
            point = [c + t * (e - c) for c, e in zip(centre, nerve_end)]
            head[_ellipsoid(x, y, z, point, (2.5, 2.5, 2.5)) & far_from_brain] = LABELS["soft_tissue"]
    head[brain] = anatomy[brain]
    return head
