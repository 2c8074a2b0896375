"""Intensity of each label in a synthetic image: contrast families and random contrasts.

Mean intensities (0-1, relative) follow the tissue orderings of each acquisition: T1w (MPRAGE:
WM > GM > CSF, fat bright, cortical bone dark), T2w (CSF > GM > WM), FLAIR (GM > WM > CSF,
CSF suppressed), PD (small GM/WM contrast, CSF bright). ``random`` draws every label freely,
as SynthStrip/SynthSeg do, so that the model learns shape rather than one contrast.
"""

from __future__ import annotations

import numpy as np

from .labels import LABELS, N_LABELS

_ORDER = list(LABELS)  # label names by value
#: Mean intensity per label (in LABELS order) for each contrast family.
FAMILIES: dict[str, tuple[float, ...]] = {
    #            bg  cGM  cWM  dGM  cbG  cbW  bst  ven  sCSF eCSF dura bone dipl fat  musc skin eye  ofat soft air
    "T1w":   (0.0, .45, .75, .58, .47, .70, .66, .12, .16, .12, .30, .04, .55, .90, .35, .50, .10, .88, .40, .0),
    "T2w":   (0.0, .55, .34, .45, .55, .36, .40, .95, .92, .95, .20, .03, .40, .62, .25, .40, .95, .60, .50, .0),
    "FLAIR": (0.0, .62, .45, .55, .60, .46, .50, .05, .09, .06, .30, .03, .50, .70, .30, .45, .10, .70, .45, .0),
    "PD":    (0.0, .75, .62, .70, .74, .62, .66, .85, .84, .85, .40, .04, .60, .80, .50, .60, .90, .80, .60, .0),
}
assert all(len(v) == N_LABELS for v in FAMILIES.values())


def label_intensities(family: str, rng: np.random.Generator) -> np.ndarray:
    """Mean intensity per label (float32, length ``N_LABELS``) for one synthetic image.

    ``family`` is one of :data:`FAMILIES` (means jittered by up to 0.08) or ``"random"``
    (each label uniform in 0-1, background 0-0.1).
    """
    if family == "random":
        means = rng.uniform(0.0, 1.0, N_LABELS)
        means[LABELS["background"]] = rng.uniform(0.0, 0.1)
    else:
        means = np.asarray(FAMILIES[family]) + rng.uniform(-0.08, 0.08, N_LABELS)
        means[LABELS["background"]] = 0.0
        means[LABELS["air_cavity"]] = rng.uniform(0.0, 0.05)
        means[LABELS["dura_sinuses"]] = rng.uniform(0.05, 0.7)  # flow voids to bright sinuses
    return np.clip(means, 0.0, 1.0).astype(np.float32)


def tissue_order(means: np.ndarray, *names: str) -> list[float]:
    """Intensities of the named labels, for checks of orderings."""
    return [float(means[_ORDER.index(name)]) for name in names]
