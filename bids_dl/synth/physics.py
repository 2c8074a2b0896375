"""Acquisition physics: MR signal equations from per-tissue T1, T2 and proton density, and CT
numbers, so that one label map renders perfectly paired images (T1w, T2w, FLAIR, CT).

Tissue values (ms; proton density relative to CSF = 1) at 1.5 T and 3 T, rounded from:
- Stanisz GJ et al. (2005) T1, T2 relaxation and magnetization transfer in tissue at 3T.
  Magn Reson Med 54:507-512 (white and grey matter, muscle, blood).
- Wansapura JP et al. (1999) NMR relaxation times in the human brain at 3.0 tesla.
  J Magn Reson Imaging 9:531-538 (white and grey matter, deep grey matter).
- Rooney WD et al. (2007) Magnetic field and tissue dependencies of human brain longitudinal
  1H2O relaxation in vivo. Magn Reson Med 57:308-318 (CSF, grey and white matter, 1.5-7 T).
- Lu H et al. (2004) Determining the longitudinal relaxation time (T1) of blood at 3.0 Tesla.
  Magn Reson Med 52:679-682 (venous blood: dura and sinuses).
- Gold GE et al. (2004) Musculoskeletal MRI at 3.0 T: relaxation times and image contrast.
  AJR 183:343-351 (fat, muscle, marrow).
- Bojorquez JZ et al. (2017) What are normal relaxation times of tissues at 3 T?
  Magn Reson Imaging 35:69-80 (review; skin, vitreous, soft tissue ranges).
- Tofts P (ed., 2003) Quantitative MRI of the Brain, ch. 4 (water content: WM 0.69-0.71,
  GM 0.80-0.83, CSF 1.0).
- Lesions (white-matter hyperintensities, MS plaques): T1 about 1.3-1.8x and T2 about 1.5-2.5x
  those of normal white matter, water content ~0.8 (Vrenken H et al. 2006, Radiology
  240:811-820; Neema M et al. 2007, J Neuroimaging 17 Suppl 1:16S-21S).
Where the sources give ranges the tables hold a central value; every image jitters each
tissue by :data:`JITTER` (relative), so the model sees the spread of real tissue.

Signal equations (Bernstein MA, King KF, Zhou XJ, Handbook of MRI Pulse Sequences, 2004):
- spin echo (T2w): ``S = PD (1 - e^(-TR/T1)) e^(-TE/T2)``;
- inversion recovery, magnitude (FLAIR): ``S = PD |1 - 2 e^(-TI/T1) + e^(-TR/T1)| e^(-TE/T2)``,
  with TI near the CSF null ``T1_csf ln(2 / (1 + e^(-TR/T1_csf)))``;
- spoiled gradient echo (SPGR/FLASH T1w):
  ``S = PD sin(a) (1 - E1) / (1 - cos(a) E1) e^(-TE/T2*)``, ``E1 = e^(-TR/T1)``;
- MPRAGE (T1w), simplified (the readout train saturates, then recovery for TD and an
  inversion): ``S = PD |1 - (2 - e^(-TD/T1)) e^(-TI/T1)| e^(-TE/T2*)``; T2* taken as T2 / 2.

CT numbers (Hounsfield units; ranges of standard radiology tables, e.g. Brant & Helms,
Fundamentals of Diagnostic Radiology): air -1000, fat -120 to -80, CSF 0-15, white matter
22-32, grey matter 35-45, blood 40-60, muscle 35-55, cortical bone 1000-1900, diploe 300-800;
white-matter lesions are hypodense (15-28).

All functions work per label (vectors of length ``N_LABELS``) or per voxel (any array).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .labels import LABELS, N_LABELS

FIELDS_T = (1.5, 3.0)
JITTER = 0.06  # relative per-tissue spread of T1 and T2 (PD: half of it)

#: Per label name: (T1 at 1.5 T, T1 at 3 T, T2 at 1.5 T, T2 at 3 T) in ms, and PD.
TISSUES: dict[str, tuple[float, float, float, float, float]] = {
    "background": (1000, 1000, 50, 50, 0.0),
    "cortical_gm": (1100, 1550, 105, 100, 0.80),
    "cerebral_wm": (700, 950, 75, 70, 0.70),
    "deep_gm": (950, 1300, 80, 75, 0.78),
    "cerebellar_gm": (1100, 1500, 95, 90, 0.80),
    "cerebellar_wm": (720, 980, 75, 70, 0.71),
    "brainstem": (850, 1150, 80, 75, 0.73),
    "ventricles": (4300, 4400, 2000, 1900, 1.00),
    "sulcal_csf": (4000, 4200, 1800, 1700, 0.98),
    "extracerebral_csf": (4300, 4400, 2000, 1900, 1.00),
    "dura_sinuses": (1350, 1650, 200, 150, 0.85),
    "bone_cortical": (300, 350, 1, 1, 0.05),
    "bone_diploe": (320, 400, 60, 50, 0.55),
    "scalp_fat": (260, 370, 85, 70, 0.90),
    "muscle": (1000, 1420, 40, 32, 0.75),
    "skin": (600, 850, 40, 35, 0.70),
    "eyes": (3800, 4000, 1000, 900, 1.00),
    "orbital_fat": (260, 370, 85, 70, 0.90),
    "soft_tissue": (900, 1200, 50, 45, 0.75),
    "air_cavity": (1000, 1000, 50, 50, 0.0),
}
#: Lesion tissue, as above.
LESION_TISSUE = (1000, 1400, 150, 140, 0.80)
assert set(TISSUES) == set(LABELS)

#: Per label name: CT number range (HU).
HOUNSFIELD: dict[str, tuple[float, float]] = {
    "background": (-1000, -1000), "cortical_gm": (35, 45), "cerebral_wm": (22, 32),
    "deep_gm": (32, 42), "cerebellar_gm": (35, 45), "cerebellar_wm": (24, 32),
    "brainstem": (28, 38), "ventricles": (0, 15), "sulcal_csf": (2, 18),
    "extracerebral_csf": (0, 15), "dura_sinuses": (40, 60), "bone_cortical": (1000, 1900),
    "bone_diploe": (300, 800), "scalp_fat": (-120, -80), "muscle": (35, 55), "skin": (20, 50),
    "eyes": (0, 20), "orbital_fat": (-120, -80), "soft_tissue": (20, 60),
    "air_cavity": (-1000, -900),
}
LESION_HOUNSFIELD = (15.0, 28.0)
assert set(HOUNSFIELD) == set(LABELS)

#: Sequence parameter ranges (ms, degrees) scanners use, per sequence.
SEQUENCES = {
    "MPRAGE": {"TI": (800.0, 1100.0), "TD": (400.0, 1200.0), "TE": (2.0, 4.5)},
    "SPGR": {"TR": (8.0, 25.0), "TE": (2.5, 5.0), "flip": (15.0, 35.0)},
    "T2w": {"TR": (3000.0, 7000.0), "TE": (80.0, 120.0)},
    "FLAIR": {"TR": (7000.0, 11000.0), "TE": (80.0, 140.0), "TI_null_factor": (0.95, 1.05)},
}
#: Which sequences render each contrast.
CONTRAST_SEQUENCES = {"T1w": ("MPRAGE", "SPGR"), "T2w": ("T2w",), "FLAIR": ("FLAIR",)}


@dataclass(frozen=True)
class TissueProperties:
    """T1, T2 (ms) and PD per label (length ``N_LABELS``) and of lesions, at ``field_t``."""

    t1: np.ndarray
    t2: np.ndarray
    pd: np.ndarray
    lesion: tuple[float, float, float]
    field_t: float
    #: The head's relative deviations from the tables ``(3, N_LABELS + 1)``: T1, T2, PD
    #: factors per label, then lesions (the same head at another field: :func:`at_field`).
    factors: np.ndarray | None = None


def _table() -> np.ndarray:
    """:data:`TISSUES` in label order, then :data:`LESION_TISSUE` (``(N_LABELS + 1, 5)``)."""
    names = sorted(LABELS, key=LABELS.get)
    return np.array([TISSUES[name] for name in names] + [LESION_TISSUE], dtype=np.float64)


def properties_from_factors(factors: np.ndarray, field_t: float) -> TissueProperties:
    """Tissue values at ``field_t`` of a head whose T1, T2 and PD are ``factors`` ``(3,
    N_LABELS + 1)`` times the tables' (labels, then lesions)."""
    column = 0 if field_t < 2.2 else 1
    table = _table()
    t1 = table[:, column] * factors[0]
    t2 = table[:, 2 + column] * factors[1]
    pd = np.clip(table[:, 4] * factors[2], 0, 1)
    return TissueProperties(t1[:N_LABELS], t2[:N_LABELS], pd[:N_LABELS],
                            (float(t1[-1]), float(t2[-1]), float(pd[-1])), field_t, factors)


def tissue_properties(rng: np.random.Generator, field_t: float | None = None,
                      jitter: float = JITTER) -> TissueProperties:
    """Tissue values of one head at ``field_t`` (default: 1.5 or 3 T at random), each
    tissue jittered by up to ``jitter`` (relative; PD by half of it)."""
    field_t = float(rng.choice(FIELDS_T)) if field_t is None else field_t
    count = N_LABELS + 1
    factors = np.stack([1 + rng.uniform(-jitter, jitter, count),
                        1 + rng.uniform(-jitter, jitter, count),
                        1 + rng.uniform(-jitter / 2, jitter / 2, count)])
    return properties_from_factors(factors, field_t)


def at_field(tissues: TissueProperties, field_t: float) -> TissueProperties:
    """The same head's tissues (same relative deviations from the tables) at ``field_t``."""
    factors = np.ones((3, N_LABELS + 1)) if tissues.factors is None else tissues.factors
    return properties_from_factors(factors, field_t)


#: Field strength (T) of the synthesis targets' reference protocols.
REFERENCE_FIELD_T = 3.0


def reference_signals() -> np.ndarray:
    """The synthesis targets of every tissue class, ``(3, N_LABELS + 1)`` (rows FLAIR, T2w
    relative to white matter, CT in HU; columns the labels, then lesions): the reference
    protocols at :data:`REFERENCE_FIELD_T` with the tables' central values, unjittered."""
    tissues = properties_from_factors(np.ones((3, N_LABELS + 1)), REFERENCE_FIELD_T)
    rows = []
    for contrast in ("FLAIR", "T2w"):
        means = contrast_means(contrast, tissues, None)
        rows.append([*means.labels, means.lesion])
    hounsfield, lesion_hu = hounsfield_units(None)
    rows.append([*hounsfield, lesion_hu])
    return np.array(rows, np.float64)


def sample_sequence(sequence: str, rng: np.random.Generator | None,
                    csf_t1_ms: float = 4300.0) -> dict[str, float]:
    """Random parameters of ``sequence`` (ms, degrees) within :data:`SEQUENCES`; FLAIR's TI
    near the null of CSF with T1 ``csf_t1_ms``. ``rng`` None: the reference protocol, the
    middle of every range (FLAIR TR 9000, TE 110, TI at the null; T2w TR 5000, TE 100)."""
    ranges = SEQUENCES[sequence]
    params = {name: float(np.mean(bounds) if rng is None else rng.uniform(*bounds))
              for name, bounds in ranges.items()}
    if sequence == "FLAIR":
        null = csf_t1_ms * np.log(2 / (1 + np.exp(-params["TR"] / csf_t1_ms)))
        params["TI"] = float(null * params.pop("TI_null_factor"))
    return params


def signal(sequence: str, params: dict[str, float], t1, t2, pd) -> np.ndarray:
    """Signal (arbitrary units, >= 0) of tissue with ``t1``, ``t2`` (ms) and ``pd`` (arrays
    or scalars) for ``sequence`` with ``params`` (see the module docstring)."""
    t1, t2, pd = (np.asarray(v, dtype=np.float64) for v in (t1, t2, pd))
    t1 = np.maximum(t1, 1e-3)
    t2 = np.maximum(t2, 1e-3)
    if sequence == "T2w":
        value = (1 - np.exp(-params["TR"] / t1)) * np.exp(-params["TE"] / t2)
    elif sequence == "FLAIR":
        value = np.abs(1 - 2 * np.exp(-params["TI"] / t1) + np.exp(-params["TR"] / t1)) * np.exp(
            -params["TE"] / t2)
    elif sequence == "SPGR":
        alpha = np.deg2rad(params["flip"])
        e1 = np.exp(-params["TR"] / t1)
        value = np.sin(alpha) * (1 - e1) / (1 - np.cos(alpha) * e1) * np.exp(
            -params["TE"] / (t2 / 2))
    elif sequence == "MPRAGE":
        recovered = 2 - np.exp(-params["TD"] / t1)
        value = np.abs(1 - recovered * np.exp(-params["TI"] / t1)) * np.exp(
            -params["TE"] / (t2 / 2))
    else:
        raise ValueError(f"unknown sequence {sequence!r}")
    return pd * value


@dataclass(frozen=True)
class ContrastMeans:
    """Mean signal per label (length ``N_LABELS``, scaled so white matter is 1) and of
    lesions, for one image of ``contrast`` made by ``sequence`` with ``params``."""

    labels: np.ndarray
    lesion: float
    contrast: str
    sequence: str
    params: dict[str, float]


def contrast_means(contrast: str, tissues: TissueProperties, rng: np.random.Generator | None,
                   sequence: str | None = None) -> ContrastMeans:
    """Label and lesion signals of one ``contrast`` (T1w, T2w or FLAIR) image of the head
    with ``tissues``, from a random sequence of that contrast (``rng`` None: the reference
    protocol of its first sequence), relative to white matter."""
    if sequence is None:
        choices = CONTRAST_SEQUENCES[contrast]
        sequence = str(choices[0] if rng is None else rng.choice(choices))
    params = sample_sequence(sequence, rng, float(tissues.t1[LABELS["ventricles"]]))
    values = signal(sequence, params, tissues.t1, tissues.t2, tissues.pd)
    lesion = float(signal(sequence, params, *tissues.lesion))
    white = float(values[LABELS["cerebral_wm"]])
    return ContrastMeans((values / white).astype(np.float32), lesion / white, contrast,
                         sequence, params)


def hounsfield_units(rng: np.random.Generator | None) -> tuple[np.ndarray, float]:
    """CT number per label (HU, length ``N_LABELS``) and of lesions, drawn within
    :data:`HOUNSFIELD` for one head (``rng`` None: the middle of each range, the reference
    CT)."""
    def draw(bounds):
        return float(np.mean(bounds)) if rng is None else float(rng.uniform(*bounds))

    names = sorted(LABELS, key=LABELS.get)
    values = np.array([draw(HOUNSFIELD[name]) for name in names], np.float32)
    return values, draw(LESION_HOUNSFIELD)
