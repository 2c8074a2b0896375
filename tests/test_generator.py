"""The synthetic-image generator: every stage, seeds, labels through deformation."""

from __future__ import annotations

import numpy as np
import pytest

from bids_dl.models.grid import MODEL_SHAPE
from bids_dl.synth import generator as G
from bids_dl.synth.contrasts import FAMILIES, label_intensities, tissue_order
from bids_dl.synth.labels import LABELS, brain_mask


@pytest.fixture(scope="module")
def heads(train_head):
    return G.SyntheticHeads([train_head])


def test_same_seed_same_sample_other_seed_other_sample(heads):
    a, b, c = heads.sample(7), heads.sample(7), heads.sample(8)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.image, c.image)
    assert a.image.shape == MODEL_SHAPE and a.image.dtype == np.float32
    assert 0.0 <= a.image.min() and a.image.max() <= 1.0


def test_labels_survive_deformation(train_head):
    """Without crop, the mask equals the deformed brain labels and its volume follows the
    affine's scaling (a warp moves voxels, it does not invent or lose brain)."""
    config = G.GeneratorConfig(p_crop=0.0)
    heads = G.SyntheticHeads([train_head], config)
    true_ml = brain_mask(train_head).sum() / 1000.0
    for seed in range(3):
        sample = heads.sample(seed, with_labels=True)
        from_labels = brain_mask(sample.labels)
        overlap = 2 * (from_labels & (sample.mask > 0)).sum() / (from_labels.sum() + sample.mask.sum())
        assert overlap > 0.97
        volume = sample.mask.sum() * 8 / 1000.0  # 2 mm voxels
        low, high = config.scale_range
        assert true_ml / high**3 * 0.95 < volume < true_ml / low**3 * 1.05


def test_identity_transform_reproduces_the_label_map(train_head):
    """With every random transform switched off, the sample is a pure crop of the label map
    at the position its affine states (to within the rounding of a half voxel)."""
    import itertools

    from bids_dl.synth.labels import HEAD_AFFINE

    config = G.GeneratorConfig(max_rotation=0, scale_range=(1, 1), max_shear=0, max_shift=0,
                               max_warp=0, p_crop=0, spacing=1.0, out_shape=(96, 96, 96))
    sample = G.SyntheticHeads([train_head], config).sample(0, with_labels=True)
    first = (np.linalg.inv(HEAD_AFFINE) @ sample.affine @ [0, 0, 0, 1])[:3]
    agreement = 0.0
    for rounding in itertools.product((np.floor, np.ceil), repeat=3):
        start = [int(f(v)) for f, v in zip(rounding, first)]
        expected = train_head[start[0]:start[0] + 96, start[1]:start[1] + 96,
                              start[2]:start[2] + 96]
        agreement = max(agreement, float(np.mean(sample.labels == expected)))
    assert agreement > 0.99


def test_contrast_families_keep_tissue_orderings():
    rng = np.random.default_rng(0)
    for _ in range(20):
        gm, wm, csf = tissue_order(label_intensities("T1w", rng), "cortical_gm", "cerebral_wm",
                                   "ventricles")
        assert wm > gm > csf
        gm, wm, csf = tissue_order(label_intensities("T2w", rng), "cortical_gm", "cerebral_wm",
                                   "ventricles")
        assert csf > gm > wm
        gm, wm, csf = tissue_order(label_intensities("FLAIR", rng), "cortical_gm",
                                   "cerebral_wm", "ventricles")
        assert gm > wm > csf
    assert set(FAMILIES) == {"T1w", "T2w", "FLAIR", "PD"}


def test_image_intensities_follow_the_contrast(heads):
    sample = heads.sample(3, contrast="T1w", with_labels=True)
    interior = sample.labels
    wm = sample.image[interior == LABELS["cerebral_wm"]].mean()
    gm = sample.image[interior == LABELS["cortical_gm"]].mean()
    ventricles = sample.image[interior == LABELS["ventricles"]].mean()
    assert wm > gm > ventricles


def test_thick_slices_blur_one_axis_only():
    rng = np.random.default_rng(0)
    image = rng.random((48, 48, 48)).astype(np.float32)
    config = G.GeneratorConfig(p_thick_slices=1.0, max_slice_thickness=7.0)
    out = G.degrade_resolution(image, np.random.default_rng(5), config)
    roughness = [np.abs(np.diff(out, axis=a)).mean() for a in range(3)]
    smooth_axis = int(np.argmin(roughness))
    others = [r for a, r in enumerate(roughness) if a != smooth_axis]
    assert roughness[smooth_axis] < 0.5 * min(others)
    assert out.shape == image.shape


def test_rician_and_gaussian_noise():
    config = G.GeneratorConfig(max_noise=0.08)
    zeros = np.zeros((32, 32, 32), np.float32)
    outputs = [G.add_noise(zeros, np.random.default_rng(s), config) for s in range(6)]
    assert all(o.min() >= 0 for o in outputs)  # magnitude images
    assert any(o.std() > 0.01 for o in outputs)


def test_field_of_view_crop_clears_image_and_mask():
    image = np.ones((20, 20, 20), np.float32)
    mask = np.ones((20, 20, 20), np.uint8)
    cropped, cropped_mask = G.crop_field_of_view(image, mask, np.random.default_rng(1))
    assert np.array_equal(cropped > 0, cropped_mask > 0)
    assert 0.6 <= cropped.mean() <= 0.9


def test_random_affine_is_bounded():
    config = G.GeneratorConfig()
    for seed in range(20):
        matrix = G.random_affine(np.random.default_rng(seed), config)
        det = np.linalg.det(matrix)
        low, high = config.scale_range
        assert low**3 * 0.9 < det < high**3 * 1.1


def test_render_native_thick_slices(labels_dir):
    import nibabel as nib

    labels = np.asarray(nib.load(str(labels_dir / "jhu189_head-00.nii.gz")).dataobj)
    image, affine, mask = G.render_native(labels, "FLAIR", np.random.default_rng(0), 5.0)
    assert image.shape == (labels.shape[0], labels.shape[1], labels.shape[2] // 5)
    assert affine[2, 2] == 5.0
    assert mask.sum() * 5 / 1000 == pytest.approx(brain_mask(labels).sum() / 1000, rel=0.03)


def test_brain_centre_is_the_centre_of_mass_in_world_mm():
    """The world centre of a brain mask on the head grid; the grid's centre (not NaN) when
    the mask is empty (label maps without brain, as in the input-rate test)."""
    from bids_dl.synth.generator import brain_centre
    from bids_dl.synth.labels import HEAD_AFFINE, HEAD_SHAPE

    mask = np.zeros(HEAD_SHAPE, bool)
    middle = HEAD_AFFINE[:3, :3] @ ((np.array(HEAD_SHAPE) - 1) / 2) + HEAD_AFFINE[:3, 3]
    assert np.allclose(brain_centre(mask), middle)
    mask[10:20, 30:34, 50:60] = True
    expected = HEAD_AFFINE[:3, :3] @ np.array([14.5, 31.5, 54.5]) + HEAD_AFFINE[:3, 3]
    assert np.allclose(brain_centre(mask), expected)
