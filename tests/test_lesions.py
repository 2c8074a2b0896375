"""Synthetic lesions (shapes, places, sizes, contrasts) and rigid registration of two
contrasts of one head."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from bids_dl.synth.contrasts import FAMILIES, label_intensities
from bids_dl.synth.demo import LABELS_FILE, DemoImage, render_image
from bids_dl.synth.labels import LABELS
from bids_dl.synth.lesions import (
    GREY_MATTER,
    MIN_LESION_MM3,
    LesionAnatomy,
    _blob,
    lesion_intensity,
    paint_lesions,
    simulate_choroid_plexus,
    simulate_lesions,
    simulate_perivascular_spaces,
    with_choroid_plexus,
)
from bids_dl.utils.registration import rigid_register, world_overlap


@pytest.fixture(scope="module")
def head():
    template = nib.load(str(LABELS_FILE))
    labels = np.asarray(template.dataobj)
    return labels, template.affine, LesionAnatomy.from_labels(labels)


def _components(mask):
    labels, count = ndimage.label(mask, np.ones((3, 3, 3)))
    return labels, count, np.bincount(labels.ravel())[1:]


def test_lesions_lie_in_white_matter_with_real_sizes(head):
    labels, _, anatomy = head
    counts = []
    for seed in range(12):
        mask = simulate_lesions(anatomy, np.random.default_rng(seed))
        _, count, sizes = _components(mask)
        counts.append(count)
        assert not (mask.astype(bool) & ~anatomy.allowed).any()
        assert np.isin(labels[mask > 0], [LABELS["cerebral_wm"], LABELS["cerebellar_wm"],
                                          LABELS["brainstem"]]).all()
        if count:
            assert sizes.min() >= MIN_LESION_MM3 and sizes.max() <= 30000
        assert count <= 60
    assert 0 in counts  # lesion-free heads are drawn (seeds 3 and 11 here)
    assert max(counts) >= 5


def test_lesions_are_seeded(head):
    anatomy = head[2]
    one = simulate_lesions(anatomy, np.random.default_rng(3), count=20)
    two = simulate_lesions(anatomy, np.random.default_rng(3), count=20)
    other = simulate_lesions(anatomy, np.random.default_rng(4), count=20)
    assert np.array_equal(one, two) and not np.array_equal(one, other)
    assert _components(one)[1] >= 8  # some of 20 merge or are clipped, most stay apart
    assert simulate_lesions(anatomy, np.random.default_rng(3), count=0).sum() == 0


def _principal_axes(mask):
    points = np.argwhere(mask).astype(float)
    values, vectors = np.linalg.eigh(np.cov((points - points.mean(0)).T))
    return vectors[:, 0], vectors[:, -1]  # shortest, longest


def test_lesion_shapes_follow_the_ventricles(head):
    """Deep lesions point away from the ventricles; periventricular ones lie flat on them."""
    anatomy = head[2]
    rng = np.random.default_rng(0)
    deep_cosines, flat_cosines = [], []
    for kind, store in (("deep", deep_cosines), ("periventricular", flat_cosines)):
        for _ in range(8):
            pool = anatomy.candidates[kind]
            centre = pool[int(rng.integers(len(pool)))]
            box, blob = _blob(anatomy, centre, 600.0, kind, rng)
            if blob.sum() < 200:  # clipped by the white matter: shape not measurable
                continue
            gradient = anatomy.ventricle_gradient[(slice(None), *centre)]
            gradient = gradient / np.linalg.norm(gradient)
            shortest, longest = _principal_axes(blob)
            store.append(abs(longest @ gradient) if kind == "deep" else
                         abs(shortest @ gradient))
    assert len(deep_cosines) >= 4 and np.median(deep_cosines) > 0.8
    assert len(flat_cosines) >= 4 and np.median(flat_cosines) > 0.7


def test_lesion_contrast_orderings():
    rng = np.random.default_rng(0)
    wm, csf = LABELS["cerebral_wm"], LABELS["ventricles"]
    for _ in range(50):
        for contrast in ("FLAIR", "T1w", "T2w", "PD"):
            means = label_intensities(contrast, rng)
            value = lesion_intensity(contrast, means, rng)
            if contrast == "FLAIR":
                grey = max(means[label] for label in GREY_MATTER)
                assert value > means[wm] and value >= 1.1 * grey - 1e-6
            elif contrast == "PD":
                assert value > means[wm]
            elif contrast == "T1w":
                assert means[csf] < value < means[wm]
            else:
                assert means[wm] < value < means[csf]
    assert set(FAMILIES) == {"T1w", "T2w", "FLAIR", "PD"}


def test_painted_lesions_stand_out(head):
    """On FLAIR, lesion cores are brighter than white matter and than the cortex (the
    contrast families let the cortex reach 1.9 x WM, so the latter is its own check)."""
    labels, _, anatomy = head
    rng = np.random.default_rng(1)
    mask = simulate_lesions(anatomy, rng, count=15)
    core = ndimage.binary_erosion(mask)
    away = ~ndimage.binary_dilation(mask, iterations=2)
    wm = (labels == LABELS["cerebral_wm"]) & away
    cortex = (labels == LABELS["cortical_gm"]) & away
    for _ in range(6):
        means = label_intensities("FLAIR", rng)
        painted = paint_lesions(means[labels], mask, lesion_intensity("FLAIR", means, rng),
                                rng)
        assert painted[core].mean() > 1.2 * painted[wm].mean()
        assert painted[core].mean() > 1.05 * painted[cortex].mean()


def _motion(degrees: float, shift_mm) -> np.ndarray:
    angle = np.deg2rad(degrees)
    c, s = np.cos(angle), np.sin(angle)
    matrix = np.eye(4)
    matrix[:3, :3] = np.array([[1, 0, 0], [0, c, -s], [0, s, c]]) @ np.array(
        [[c, -s, 0], [s, c, 0], [0, 0, 1]])
    matrix[:3, 3] = shift_mm
    return matrix


def _t1w_and_flair():
    """A T1w (with its true brain mask) and a FLAIR of the demo head in the same pose."""
    template = nib.load(str(LABELS_FILE))
    labels = np.asarray(template.dataobj)
    t1w, truth = render_image(labels, template.affine, DemoImage("01", None, None, "T1w",
                                                                 (1.0, 1.0, 1.0), 11), True)
    flair = render_image(labels, template.affine, DemoImage("01", None, None, "FLAIR",
                                                            (1.0, 1.0, 1.0), 11))
    return t1w, truth, flair


def test_rigid_registration_of_a_moved_flair_to_a_t1w():
    """The FLAIR of the head moved by 5 degrees (about two axes) and 5 mm is realigned to the
    T1w to within 1 mm everywhere in the brain."""
    t1w, truth, flair = _t1w_and_flair()
    motion = _motion(5.0, [5.0, -3.0, 4.0])
    voxels = np.linalg.inv(flair.affine) @ np.linalg.inv(motion) @ flair.affine
    moved = ndimage.affine_transform(flair.get_fdata(dtype=np.float32), voxels[:3, :3],
                                     voxels[:3, 3], order=1)
    transform = rigid_register(t1w, nib.Nifti1Image(moved, flair.affine))
    brain = np.argwhere(np.asarray(truth.dataobj) > 0)[::20].T
    world = t1w.affine[:3, :3] @ brain + t1w.affine[:3, 3:]
    error = np.linalg.norm(transform[:3, :3] @ world + transform[:3, 3:]
                           - (motion[:3, :3] @ world + motion[:3, 3:]), axis=0)
    assert error.max() < 1.0, error.max()


def test_registration_is_reproducible():
    """The same pair gives the same transform every time (the metric's random sample has a
    fixed seed; SimpleITK's seed 0, a wall-clock seed, is refused)."""
    t1w, _, flair = _t1w_and_flair()
    first, second = rigid_register(t1w, flair), rigid_register(t1w, flair)
    assert np.abs(first - second).max() < 1e-9  # threads may reorder sums: 1e-13
    with pytest.raises(ValueError, match="wall-clock"):
        rigid_register(t1w, flair, seed=0)


def test_world_overlap():
    image = nib.Nifti1Image(np.zeros((10, 10, 10), np.float32), np.eye(4))
    shifted = np.eye(4)
    shifted[0, 3] = 5
    far = np.eye(4)
    far[0, 3] = 500
    assert world_overlap(image, image) == pytest.approx(1.0)
    assert world_overlap(image, nib.Nifti1Image(image.dataobj, shifted)) == pytest.approx(0.5)
    assert world_overlap(image, nib.Nifti1Image(image.dataobj, far)) == 0.0


def test_registration_of_images_that_do_not_overlap():
    """Headers 300 mm apart (no overlap at all): the centre-of-mass start still finds the
    head, to within 1 mm."""
    t1w, truth, flair = _t1w_and_flair()
    far = flair.affine.copy()
    far[:3, 3] += (300.0, 0.0, 0.0)
    moved = nib.Nifti1Image(np.asarray(flair.dataobj), far)
    assert world_overlap(t1w, moved) == 0.0
    transform = rigid_register(t1w, moved)
    brain = np.argwhere(np.asarray(truth.dataobj) > 0)[::20].T
    world = t1w.affine[:3, :3] @ brain + t1w.affine[:3, 3:]
    expected = world + np.array([[300.0], [0.0], [0.0]])
    error = np.linalg.norm(transform[:3, :3] @ world + transform[:3, 3:] - expected, axis=0)
    assert error.max() < 1.0, error.max()


def test_lesion_training_samples(head):
    """Samples of the lesion generator: FLAIR lesions bright and T1w lesions dark against
    white matter on the model grid, targets where they belong, patches of one head pure
    functions of the seed, a left-out contrast all zeros."""
    from bids_dl.synth.lesion_generator import TARGETS, LesionConfig, LesionHeads

    labels, _, _ = head
    heads = LesionHeads([labels])
    whole = heads.sample(7, lesion_count=20, present=(True, True))
    assert whole.image.shape == (2, *heads.config.geometry.out_shape)
    assert whole.mask.shape == (len(TARGETS), *whole.image.shape[1:])
    lesions = whole.mask[0].astype(bool)
    assert lesions.sum() > 100
    assert not (lesions & ~whole.brain.astype(bool)).any()
    core = ndimage.binary_erosion(lesions)
    white = whole.brain.astype(bool) & ~ndimage.binary_dilation(lesions, iterations=2) & ~(
        whole.mask[1:].any(0))
    flair, t1w = whole.image
    assert flair[core].mean() > np.median(flair[white]) + 0.5 * flair[white].std()
    assert t1w[core].mean() < np.median(t1w[white])
    assert whole.mask[1].sum() > 1000  # ventricles
    patched = LesionHeads([labels], LesionConfig(patch=32))
    first = patched.samples((3, 1), 3, present=(True, False))
    again = patched.samples((3, 1), 3, present=(True, False))
    assert len(first) == 3 and first[0].image.shape == (2, 32, 32, 32)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, again))
    assert not any(p.image[1].any() for p in first)
    assert not np.array_equal(first[0].image, first[1].image)


def test_perivascular_spaces_are_thin_vertical_csf_tubes_apart_from_lesions(head):
    """Enlarged perivascular spaces: in the deep grey or cerebral white matter only, never in
    a lesion, each tube at most 3 mm across and running within 30° of the superior-inferior
    axis (the longest principal axis of every long component); seeded; half of the heads
    have none by default."""
    labels, _, anatomy = head
    lesions = simulate_lesions(anatomy, np.random.default_rng(5), count=20).astype(bool)
    spaces = simulate_perivascular_spaces(labels, np.random.default_rng(5), 25, lesions)
    again = simulate_perivascular_spaces(labels, np.random.default_rng(5), 25, lesions)
    assert np.array_equal(spaces, again) and spaces.any()
    assert np.isin(labels[spaces], [LABELS["deep_gm"], LABELS["cerebral_wm"]]).all()
    assert not (spaces & lesions).any()
    components, count, sizes = _components(spaces)
    assert count >= 15  # 25 tubes; a few touch or are clipped to nothing
    assert sizes.max() <= np.pi * 1.5**2 * 15 * 2  # two crossing tubes at most
    tilts = []
    for index in np.flatnonzero(sizes >= 15) + 1:
        points = np.argwhere(components == index).astype(float)
        extent = points.max(0) - points.min(0)
        if extent[2] < 6:  # clipped short: no direction to measure
            continue
        longest = _principal_axes(components == index)[1]
        tilts.append(np.degrees(np.arccos(abs(longest[2]))))
        assert min(extent[:2]) <= 3 + 15 * np.sin(np.radians(30)) + 1
    assert tilts and max(tilts) < 40, tilts  # 30° drawn, voxelised
    drawn = [simulate_perivascular_spaces(labels, np.random.default_rng(seed)).any()
             for seed in range(20)]
    assert 4 <= sum(drawn) <= 16  # about half of the heads
    assert not simulate_perivascular_spaces(labels, np.random.default_rng(0), 0).any()


def test_lesion_samples_render_perivascular_spaces_like_csf(head, monkeypatch):
    """On the model grid the mimics are white or deep grey matter relabelled as CSF, never
    lesion targets, and render dark against white matter on FLAIR and T1w (CSF-like, where
    FLAIR lesions are bright); the config switches them off."""
    from bids_dl.synth import lesions as lesion_module
    from bids_dl.synth.lesion_generator import LesionConfig, LesionHeads

    labels, _, _ = head
    original = lesion_module.simulate_perivascular_spaces
    drawn = []

    def thirty(labels, rng, count=None, avoid=None):  # fixed tubes; the outer draws untouched
        drawn.append(original(labels, np.random.default_rng(0), 30, avoid))
        return drawn[-1]

    monkeypatch.setattr(lesion_module, "simulate_perivascular_spaces", thirty)
    heads, geometry = LesionHeads([labels]), LesionConfig().geometry
    with_spaces, fraction, _ = heads.on_grid(0, np.random.default_rng(3), geometry, 10, True)
    plain, same_fraction, _ = heads.on_grid(0, np.random.default_rng(3), geometry, 10, False)
    assert len(drawn) == 1 and np.array_equal(fraction, same_fraction)
    changed = with_spaces != plain
    assert changed.sum() > 50
    assert (with_spaces[changed] == LABELS["sulcal_csf"]).all()
    assert np.isin(plain[changed], [LABELS["deep_gm"], LABELS["cerebral_wm"]]).all()
    assert not (changed & (fraction >= 0.5)).any()
    white = (plain == LABELS["cerebral_wm"]) & ~ndimage.binary_dilation(changed, iterations=2)
    lesion = fraction >= 0.9
    for contrast in ("FLAIR", "T1w"):
        image, _ = heads._render(with_spaces, fraction, contrast, np.random.default_rng(1))
        assert image[changed].mean() < 0.9 * np.median(image[white]), contrast
        if contrast == "FLAIR" and lesion.any():
            assert image[lesion].mean() > np.median(image[white]) > image[changed].mean()
    LesionHeads([labels], LesionConfig(perivascular_spaces=False)).sample(11, lesion_count=5)
    assert len(drawn) == 1  # off: never drawn
    LesionHeads([labels]).sample(11, lesion_count=5)
    assert len(drawn) == 2


def test_choroid_plexus_lies_in_the_lateral_ventricles(head):
    """The choroid plexus: inside the ventricles only, in both lateral ventricles (none in
    the midline third ventricle or the fourth ventricle), its largest part (the glomus) in
    the posterior half about the atrium, 0.1-4 ml in all; seeded; in most heads by default;
    relabelled as deep grey matter and nothing else changed."""
    labels, affine, _ = head
    ventricles = labels == LABELS["ventricles"]
    plexus = simulate_choroid_plexus(labels, np.random.default_rng(2), True, affine)
    assert np.array_equal(plexus, simulate_choroid_plexus(labels, np.random.default_rng(2),
                                                          True, affine))
    assert plexus.any() and not (plexus & ~ventricles).any()
    world = np.argwhere(plexus) @ affine[:3, :3].T + affine[:3, 3]
    assert (np.abs(world[:, 0]) > 3).all()
    assert not ((world[:, 2] <= -5) & (np.abs(world[:, 0]) <= 18)).any()  # fourth ventricle
    assert 100 <= plexus.sum() <= 4000  # 1 mm voxels
    for side in (-1, 1):
        mask = plexus.copy()
        mask[(np.indices(plexus.shape)[0] * affine[0, 0] + affine[0, 3]) * side <= 0] = False
        components, _, sizes = _components(mask)
        glomus = np.argwhere(components == np.argmax(sizes) + 1) @ affine[:3, :3].T
        centre = glomus.mean(0) + affine[:3, 3]
        assert centre[0] * side > 10 and -55 < centre[1] < -25 and -5 < centre[2] < 25, centre
    drawn = [simulate_choroid_plexus(labels, np.random.default_rng(seed), affine=affine).any()
             for seed in range(40)]
    assert 28 <= sum(drawn) <= 39  # 85 % of the heads
    assert not simulate_choroid_plexus(labels, np.random.default_rng(2), False, affine).any()
    relabelled = with_choroid_plexus(labels, plexus)
    assert (relabelled[plexus] == LABELS["deep_gm"]).all()
    assert np.array_equal(relabelled[~plexus], labels[~plexus])
    assert relabelled.dtype == labels.dtype


def test_lesion_samples_render_choroid_plexus_grey_matter_like(head, monkeypatch):
    """On the model grid the choroid plexus is ventricle relabelled as deep grey matter, never
    a lesion or ventricle target; on T1w it renders darker than white matter (like a
    lesion) and brighter than the ventricle CSF, on FLAIR brighter than the CSF; the config
    switches it off."""
    from bids_dl.synth import lesions as lesion_module
    from bids_dl.synth.lesion_generator import TARGETS, LesionConfig, LesionHeads

    labels, _, _ = head
    original = lesion_module.simulate_choroid_plexus
    drawn = []

    def fixed(labels, rng, present=None, affine=None):  # own rng: the outer draws untouched
        drawn.append(original(labels, np.random.default_rng(4), True))
        return drawn[-1]

    monkeypatch.setattr(lesion_module, "simulate_choroid_plexus", fixed)
    heads = LesionHeads([labels], LesionConfig(perivascular_spaces=False))
    geometry = heads.config.geometry
    shown, fraction, _ = heads.on_grid(0, np.random.default_rng(3), geometry, 10,
                                       choroid_plexus=True)
    plain, same_fraction, _ = heads.on_grid(0, np.random.default_rng(3), geometry, 10)
    assert len(drawn) == 1 and np.array_equal(fraction, same_fraction)
    changed = shown != plain
    assert changed.sum() > 20
    assert (plain[changed] == LABELS["ventricles"]).all()
    assert (shown[changed] == LABELS["deep_gm"]).all()
    assert not (changed & (fraction >= 0.5)).any()
    core = ndimage.binary_erosion(changed)
    white = (plain == LABELS["cerebral_wm"]) & (fraction == 0)
    csf = (shown == LABELS["ventricles"]) & ~ndimage.binary_dilation(changed, iterations=2)
    inside = core if core.sum() > 5 else changed
    for contrast in ("FLAIR", "T1w"):
        ratios = []  # plexus / white matter over five random intensity draws
        for seed in range(5):
            image, _ = heads._render(shown, fraction, contrast, np.random.default_rng(seed))
            assert image[inside].mean() > 1.2 * np.median(image[csf]), contrast
            ratios.append(image[inside].mean() / np.median(image[white]))
        if contrast == "T1w":
            assert max(ratios) < 1.0 and np.median(ratios) < 0.9, ratios
    sample = heads.sample(11, lesion_count=5)
    assert len(drawn) == 2
    ventricle_target = sample.mask[TARGETS.index("ventricles")]
    assert ventricle_target.any()
    LesionHeads([labels], LesionConfig(choroid_plexus=False)).sample(11, lesion_count=5)
    assert len(drawn) == 2  # off: never drawn
