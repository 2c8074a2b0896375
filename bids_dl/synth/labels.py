"""The label scheme of synthetic heads and the brain anatomies built from open data.

All label maps live on one grid: 1 mm, RAS, MNI-like world coordinates (``HEAD_GRID``).
Brain anatomies come from four independent sources; non-brain tissue is added by
:mod:`bids_dl.synth.head`.
"""

from __future__ import annotations

import csv

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..utils.resample import resample_to_grid, smooth_noise
from . import sources

#: Label values of every synthetic head (uint8).
LABELS: dict[str, int] = {
    "background": 0,
    "cortical_gm": 1,
    "cerebral_wm": 2,
    "deep_gm": 3,
    "cerebellar_gm": 4,
    "cerebellar_wm": 5,
    "brainstem": 6,
    "ventricles": 7,
    "sulcal_csf": 8,
    "extracerebral_csf": 9,
    "dura_sinuses": 10,
    "bone_cortical": 11,
    "bone_diploe": 12,
    "scalp_fat": 13,
    "muscle": 14,
    "skin": 15,
    "eyes": 16,
    "orbital_fat": 17,
    "soft_tissue": 18,
    "air_cavity": 19,
}
N_LABELS = max(LABELS.values()) + 1
#: The brain mask (target of brain extraction): brain tissue, ventricles and sulcal CSF.
BRAIN_LABELS = tuple(range(1, 9))

#: Shape and voxel-to-world affine of the common 1 mm grid (x -96..95, y -132..95, z -100..99).
HEAD_SHAPE = (192, 228, 200)
HEAD_AFFINE = np.array(
    [[1.0, 0, 0, -96.0], [0, 1.0, 0, -132.0], [0, 0, 1.0, -100.0], [0, 0, 0, 1.0]]
)

#: Anatomies and their role: only "train" ones feed training; "heldout" ones are for tests.
ANATOMIES = {
    "mni152": "train",
    "cat12": "train",
    "neuromorphometrics": "train",
    "jhu189": "heldout",
}
#: Version of each anatomy's builder: cached label maps of an older version are rebuilt.
ANATOMY_VERSIONS = {"mni152": 3, "cat12": 3, "neuromorphometrics": 3, "jhu189": 5}


def brain_mask(labels: np.ndarray) -> np.ndarray:
    """Boolean brain mask of a label map."""
    return (labels >= BRAIN_LABELS[0]) & (labels <= BRAIN_LABELS[-1])


def _load_on_grid(path, order: int, volume: int | None = None) -> np.ndarray:
    image = nib.load(str(path))
    data = np.asanyarray(image.dataobj)
    if volume is not None:
        data = data[..., volume]
    data = data.astype(np.float32) if order else data
    return resample_to_grid(data, image.affine, HEAD_SHAPE, HEAD_AFFINE, order=order)


def _neuromorphometrics_classes() -> tuple[np.ndarray, np.ndarray]:
    """Neuromorphometrics atlas on the head grid and a lookup from its ROI ids to our labels."""
    lookup = np.zeros(256, np.uint8)
    with open(sources.deepmriprep("neuromorphometrics.csv"), newline="") as handle:
        for row in csv.DictReader(handle, delimiter=";"):
            roi, name, region = int(row["ROIid"]), row["ROIname"], row["CircRegion"]
            if region == "Ventricle":
                lookup[roi] = LABELS["sulcal_csf"] if name == "CSF" else LABELS["ventricles"]
            elif "Cerebral White" in name:
                lookup[roi] = LABELS["cerebral_wm"]
            elif name == "Brain Stem":
                lookup[roi] = LABELS["brainstem"]
            elif "Cerebellum White" in name:
                lookup[roi] = LABELS["cerebellar_wm"]
            elif region == "Cerebellum":
                lookup[roi] = LABELS["cerebellar_gm"]
            elif region in ("Basal ganglia", "Amygdala", "Hippocampus", "Diencephalon",
                            "Basal Forebrain", "Optic chaism"):
                lookup[roi] = LABELS["deep_gm"]
            else:
                lookup[roi] = LABELS["cortical_gm"]
    atlas = _load_on_grid(sources.deepmriprep("neuromorphometrics.nii.gz"), order=0)
    return atlas, lookup


def _tissue_anatomy(gm: np.ndarray, wm: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Labels from GM/WM probabilities inside a brain mask, refined with neuromorphometrics'
    deep GM, ventricles, cerebellum and brainstem (same MNI space)."""
    csf = np.clip(1.0 - gm - wm, 0, 1)
    tissue = np.argmax(np.stack([csf, gm, wm]), axis=0)
    labels = np.choose(tissue, [LABELS["sulcal_csf"], LABELS["cortical_gm"], LABELS["cerebral_wm"]])
    atlas, lookup = _neuromorphometrics_classes()
    region = lookup[atlas]
    brain = mask & (labels != LABELS["sulcal_csf"])
    labels[brain & (region == LABELS["deep_gm"])] = LABELS["deep_gm"]
    labels[brain & (region == LABELS["brainstem"])] = LABELS["brainstem"]
    cerebellum = brain & np.isin(region, (LABELS["cerebellar_gm"], LABELS["cerebellar_wm"]))
    labels[cerebellum & (tissue == 1)] = LABELS["cerebellar_gm"]
    labels[cerebellum & (tissue == 2)] = LABELS["cerebellar_wm"]
    labels[mask & (region == LABELS["ventricles"]) & (tissue == 0)] = LABELS["ventricles"]
    labels[~mask] = 0
    return labels.astype(np.uint8)


def _clean_mask(mask: np.ndarray) -> np.ndarray:
    """Largest connected component with holes filled."""
    components, count = ndimage.label(mask)
    if count > 1:
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        mask = components == np.argmax(sizes)
    return ndimage.binary_fill_holes(mask)


def anatomy_mni152() -> np.ndarray:
    """MNI152 2009a symmetric template (nilearn): GM/WM maps inside its brain mask."""
    t1 = _load_on_grid(sources.mni152("t1"), order=1)
    gm = _load_on_grid(sources.mni152("gm"), order=1) / 255.0
    wm = _load_on_grid(sources.mni152("wm"), order=1) / 255.0
    return _tissue_anatomy(gm, wm, _clean_mask(t1 > 10))


def anatomy_cat12() -> np.ndarray:
    """CAT12 shooting template (deepmriprep ``Template_4_GS``: GM, WM, background at 1.5 mm)."""
    path = sources.deepmriprep("Template_4_GS.nii.gz")
    gm, wm, background = (_load_on_grid(path, order=1, volume=v) for v in range(3))
    del background  # mostly CSF + outside; the mask is closed around GM + WM instead
    tissue = ndimage.binary_closing(gm + wm > 0.3, structure=np.ones((3, 3, 3)), iterations=3)
    return _tissue_anatomy(gm, wm, _clean_mask(tissue))


def anatomy_neuromorphometrics() -> np.ndarray:
    """Neuromorphometrics maximum-probability atlas (deepmriprep), every ROI mapped to a class."""
    atlas, lookup = _neuromorphometrics_classes()
    labels = lookup[atlas]
    mask = _clean_mask(labels > 0)
    labels[mask & (labels == 0)] = LABELS["sulcal_csf"]
    return labels


def _jhu189_atlas() -> np.ndarray:
    return _load_on_grid(sources.mricron("jhu189.nii.gz"), order=0).astype(np.int64)


def anatomy_jhu189() -> np.ndarray:
    """JHU single-subject 189-ROI parcellation (mricron-data), before its cortex is drawn.

    jhu189 has no ROI names and no tissue classes: each ROI takes the class most of its voxels
    have in the MNI152 anatomy (same MNI space). Its gyral ROIs include the gyral white
    matter, so that vote makes whole gyri grey matter (1,156 ml, no sulci): every head built
    from it gets a cortex drawn over those gyri (:func:`redraw_cortex`)."""
    atlas = _jhu189_atlas()
    reference = anatomy_mni152().astype(np.int64)
    votes = np.bincount((atlas * N_LABELS + reference).ravel(), minlength=256 * N_LABELS)
    votes = votes.reshape(256, N_LABELS)
    votes[:, 0] = 0
    lookup = np.argmax(votes, axis=1).astype(np.uint8)
    lookup[0] = 0
    labels = lookup[atlas]
    labels[(atlas > 0) & (labels == 0)] = LABELS["sulcal_csf"]
    # Unlabelled gaps inside the brain (up to ~6 mm wide; some reach the outside, so filling
    # holes misses them) are CSF of the brain mask: ventricles next to the ventricles, else
    # sulcal CSF (cisterns, fissures). Left outside, they would be lined with cortex.
    mask = _clean_mask(labels > 0)
    closed = ndimage.binary_fill_holes(ndimage.binary_closing(mask, _ball(3)))
    gaps = closed & (labels == 0)
    near_ventricles = ndimage.distance_transform_edt(labels != LABELS["ventricles"]) <= 3
    labels[gaps] = LABELS["sulcal_csf"]
    labels[gaps & near_ventricles] = LABELS["ventricles"]
    labels[~closed] = 0
    return labels


def _ball(radius: int) -> np.ndarray:
    """Boolean ball structuring element of ``radius`` voxels."""
    grid = np.mgrid[(slice(-radius, radius + 1),) * 3]
    return np.sum(grid**2, axis=0) <= radius**2


def fold_cortex(labels: np.ndarray, gyri: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A folded cortical ribbon for a label map whose cerebrum is parcelled into gyri.

    ``labels``: label map (1 mm grid) whose cerebral tissue is ``cortical_gm`` (the gyri) and
    ``cerebral_wm``; ``gyri``: ROI id of every gyral voxel (0 elsewhere). Sulci (sulcal CSF,
    one voxel per side) are drawn where two gyri meet, from the brain surface down to 8-28 mm
    (a smooth random depth), plus shallow folds inside gyri (<= 4-14 mm) along the zero
    surface of a smooth random field. The cortex is every cerebral voxel within 2.0-3.6 mm
    (smooth random thickness) of the brain's surface or a sulcus; the rest of the cerebrum is
    white matter. Deep GM, ventricles, cerebellum and brainstem are kept. Sulci must open
    onto the surface: drawn sulci shut inside the cerebrum (:func:`enclosed_pieces`; a
    primary sulcus along a boundary of two gyral ROIs deep in the white matter) are not
    drawn, since lined with cortex each would be a ball of grey matter inside white matter, a
    lesion look-alike no healthy brain has; sulcal-CSF pockets shut inside the cerebrum
    (atlas gaps) become white matter."""
    cerebrum = (labels == LABELS["cortical_gm"]) | (labels == LABELS["cerebral_wm"])
    labels = labels.copy()
    pockets = enclosed_pieces(labels == LABELS["sulcal_csf"], cerebrum)
    labels[pockets] = LABELS["cerebral_wm"]
    cerebrum |= pockets
    shape = labels.shape
    between_gyri = np.zeros(shape, bool)
    for axis in range(3):
        for shift in (1, -1):
            neighbour = np.roll(gyri, shift, axis=axis)
            between_gyri |= (gyri > 0) & (neighbour > 0) & (neighbour != gyri)
    brain = brain_mask(labels)
    depth = ndimage.distance_transform_edt(brain)  # mm below the brain's surface
    primary = between_gyri & (depth <= np.clip(16 + 4 * smooth_noise(shape, rng, 6), 8, 28))
    fold_field = smooth_noise(shape, rng, 20)
    shallow = cerebrum & (np.abs(fold_field) < 0.12) & (
        depth <= np.clip(8 + 2 * smooth_noise(shape, rng, 6), 4, 14))
    sulci = primary | shallow
    sulci &= ~enclosed_pieces(sulci, cerebrum)
    thickness = np.clip(2.8 + 0.4 * smooth_noise(shape, rng, 8), 2.0, 3.6)
    to_surface = ndimage.distance_transform_edt(brain & ~sulci)
    out = labels.copy()
    out[sulci] = LABELS["sulcal_csf"]
    out[cerebrum & ~sulci] = LABELS["cerebral_wm"]
    out[cerebrum & ~sulci & (to_surface <= thickness)] = LABELS["cortical_gm"]
    return out


def enclosed_pieces(mask: np.ndarray, enclosure: np.ndarray) -> np.ndarray:
    """Boolean mask of the 26-connected pieces of ``mask`` whose neighbours all lie in
    ``enclosure``: CSF pockets or drawn sulci shut inside the cerebrum (a real sulcus opens
    onto the brain's surface or the other CSF spaces)."""
    neighbours = np.ones((3, 3, 3))
    pieces, count = ndimage.label(mask, neighbours)
    shut = np.ones(count + 1, bool)
    shut[0] = False
    # a piece is open when one of its voxels touches what lies neither in it nor in enclosure
    touching = ndimage.binary_dilation(~enclosure & ~mask, neighbours) & mask
    shut[np.unique(pieces[touching])] = False
    return shut[pieces]


def atlas_gyri() -> np.ndarray:
    """Gyral territories on the head grid: every voxel takes the id of the nearest cortical
    ROI of the neuromorphometrics atlas (same MNI space as the training anatomies)."""
    atlas, lookup = _neuromorphometrics_classes()
    cortical = lookup[atlas] == LABELS["cortical_gm"]
    nearest = ndimage.distance_transform_edt(~cortical, return_indices=True)[1]
    return atlas[tuple(nearest)].astype(np.int64)


def gyral_territories(name: str, anatomy: np.ndarray) -> np.ndarray:
    """The gyri a head's cortex is drawn over: jhu189's own gyral ROIs for jhu189, the
    neuromorphometrics territories (:func:`atlas_gyri`) for the training anatomies."""
    if name == "jhu189":
        return np.where(anatomy == LABELS["cortical_gm"], _jhu189_atlas(), 0)
    return atlas_gyri()


def cortex_redrawn(name: str, head: int) -> bool:
    """Whether head number ``head`` of an anatomy gets a drawn cortex: every held-out head;
    odd training heads (even ones keep the template's blurred, thick cortex)."""
    return ANATOMIES[name] == "heldout" or head % 2 == 1


def redraw_cortex(anatomy: np.ndarray, gyri: np.ndarray, rng: np.random.Generator,
                  ) -> np.ndarray:
    """``anatomy`` with its cortex redrawn by :func:`fold_cortex` over the gyral territories
    ``gyri`` (restricted to the cerebrum): a thin, folded ribbon that differs with ``rng``."""
    cerebrum = (anatomy == LABELS["cortical_gm"]) | (anatomy == LABELS["cerebral_wm"])
    return fold_cortex(anatomy, np.where(cerebrum, gyri, 0), rng)


BUILDERS = {
    "mni152": anatomy_mni152,
    "cat12": anatomy_cat12,
    "neuromorphometrics": anatomy_neuromorphometrics,
    "jhu189": anatomy_jhu189,
}
