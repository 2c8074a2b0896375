"""The shared inference engine's geometry, with a fixed tiny model (output = bright voxels)."""

from __future__ import annotations

import keras
import nibabel as nib
import numpy as np
import pytest

from bids_dl.models.engine import GridSpec, InferenceEngine, largest_component
from bids_dl.utils.resample import resample_to_grid, smooth_noise


@pytest.fixture(scope="module")
def threshold_engine():
    """A 1x1x1 convolution + sigmoid: probability > 0.5 where normalised intensity > 0.5."""
    model = keras.Sequential([keras.Input((None, None, None, 1)),
                              keras.layers.Conv3D(1, 1, activation="sigmoid")])
    model.set_weights([np.full((1, 1, 1, 1, 1), 20.0, np.float32), np.array([-10.0], np.float32)])
    return InferenceEngine(model, GridSpec(shape=(48, 48, 48), spacing=4.0))


def _ball_image(affine: np.ndarray, shape, radius=40.0, centre=(5.0, -10.0, 8.0)):
    """A bright ball (world mm) sampled on a grid; returns data and the true mask."""
    index = np.indices(shape).reshape(3, -1)
    world = affine[:3, :3] @ index + affine[:3, 3:]
    inside = (np.linalg.norm(world - np.array(centre)[:, None], axis=0) <= radius).reshape(shape)
    rng = np.random.default_rng(0)
    return (inside * 100.0 + rng.normal(0, 2, shape) + 20).astype(np.float32), inside


def _dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


AFFINES = {
    "RAS 1mm": np.diag([1.0, 1.0, 1.0, 1.0]),
    "LPS 1mm": np.diag([-1.0, -1.0, 1.0, 1.0]),
    "PSL 1.5mm": np.array([[0, 0, -1.5, 0], [-1.5, 0, 0, 0], [0, 1.5, 0, 0], [0, 0, 0, 1.0]]),
    "thick slices 1x1x5": np.diag([1.0, 1.0, 5.0, 1.0]),
}


@pytest.mark.parametrize("name", list(AFFINES) + ["oblique"])
def test_probabilities_land_on_the_native_grid(threshold_engine, name):
    if name == "oblique":
        angle = np.deg2rad(20)
        rotation = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)],
                             [0, np.sin(angle), np.cos(angle)]])
        affine = np.eye(4)
        affine[:3, :3] = rotation * 1.2
    else:
        affine = AFFINES[name].copy()
    shape = tuple(int(round(140 / abs(v))) for v in np.linalg.norm(affine[:3, :3], axis=0))
    affine[:3, 3] = -affine[:3, :3] @ (np.array(shape) - 1) / 2  # grid centred on world 0
    data, truth = _ball_image(affine, shape)
    result = threshold_engine.run(data, affine)
    assert result.probability.shape == data.shape
    mask = largest_component(result.probability > 0.5)
    assert _dice(mask, truth) > 0.95


def test_recentres_on_the_structure(threshold_engine):
    """A ball far from the image's foreground centre is found in the second pass."""
    affine = np.eye(4)
    affine[:3, 3] = -100
    data, truth = _ball_image(affine, (200, 200, 200), radius=30, centre=(40, 0, 0))
    data[:20] = 90.0  # a bright slab pulls the foreground centroid away from the ball
    result = threshold_engine.run(data, affine)
    assert result.passes == 2


def test_resample_round_trip_preserves_labels():
    labels = np.zeros((30, 40, 50), np.uint8)
    labels[5:20, 10:30, 20:40] = 3
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])
    flipped = np.diag([2.0, -2.0, 2.0, 1.0])
    flipped[:3, 3] = [-58.0, 78.0, 0]
    there = resample_to_grid(labels, affine, labels.shape, flipped, order=0)
    back = resample_to_grid(there, flipped, labels.shape, affine, order=0)
    assert there.sum() == labels.sum() and np.array_equal(back, labels)


@pytest.mark.parametrize(("shape", "coarse"), [((182, 218, 182), 4), ((96, 80, 64), 24),
                                               ((40, 50, 30), (4, 5, 4)), ((33, 7, 9), 6)])
def test_smooth_noise_is_linear_upsampling_of_coarse_noise(shape, coarse):
    """The separable smooth field equals scipy's linear zoom of the same coarse noise
    (to float32 rounding), has unit variance, and the coarse samples sit on the corners."""
    from scipy import ndimage

    field = smooth_noise(shape, np.random.default_rng(3), coarse)
    coarse_shape = (coarse,) * 3 if np.isscalar(coarse) else coarse
    small = np.random.default_rng(3).standard_normal(coarse_shape).astype(np.float32)
    zoomed = ndimage.zoom(small, np.divide(shape, coarse_shape), order=1, grid_mode=False)
    assert field.shape == zoomed.shape == shape and field.dtype == np.float32
    reference = zoomed / zoomed.std()
    assert np.abs(field - reference).max() < 1e-6
    assert abs(float(field.std()) - 1) < 1e-5
    assert np.isclose(field[-1, 0, -1], small[-1, 0, -1] / zoomed.std(), atol=1e-6)


def test_largest_component_fills_holes():
    mask = np.zeros((20, 20, 20), bool)
    mask[2:12, 2:12, 2:12] = True
    mask[6, 6, 6] = False
    mask[15:17, 15:17, 15:17] = True
    out = largest_component(mask)
    assert out[6, 6, 6] and not out[16, 16, 16] and out.sum() == 1000


def test_engine_accepts_nifti_storage_orders(threshold_engine, tmp_path):
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = -70
    data, _ = _ball_image(affine, (140, 140, 140))
    image = nib.Nifti1Image(data, affine)
    reoriented = image.as_reoriented(nib.orientations.axcodes2ornt("PSL"))
    a = threshold_engine.run(np.asarray(image.dataobj), image.affine).probability
    b = threshold_engine.run(np.asarray(reoriented.dataobj), reoriented.affine).probability
    back = nib.as_closest_canonical(nib.Nifti1Image(b, reoriented.affine))
    assert np.allclose(back.affine, image.affine)
    assert np.abs(np.asarray(back.dataobj) - a).max() < 1e-3


def test_tiled_prediction_matches_whole_volume_for_a_local_model():
    """A model that sees only a 3x3x3 neighbourhood gives the same result tiled or whole."""
    import keras

    from bids_dl.models.engine import GridSpec, InferenceEngine

    inputs = keras.Input((None, None, None, 2))
    outputs = keras.layers.Conv3D(3, 3, padding="same", activation="sigmoid")(inputs)
    model = keras.Model(inputs, outputs)
    engine = InferenceEngine(model, GridSpec((40, 48, 40), 1.5))
    grid = np.random.default_rng(0).random((40, 48, 40, 2), dtype=np.float32)
    whole = engine.predict_channels(grid)
    tiled = engine.predict_tiled(grid, tile=16)
    inner = (slice(2, -2),) * 3
    assert tiled.shape == whole.shape == (40, 48, 40, 3)
    assert np.abs(tiled[inner] - whole[inner]).max() < 0.02


def test_tiles_cover_only_the_box_of_where():
    """With ``where``, tiles cover its bounding box only (2 per axis for a 28-voxel box of
    16-voxel tiles at 5 % overlap), the result matches the whole-volume one inside it and is
    0 outside."""
    import keras

    from bids_dl.models.engine import GridSpec, InferenceEngine

    inputs = keras.Input((None, None, None, 1))
    outputs = keras.layers.Conv3D(1, 3, padding="same", activation="sigmoid")(inputs)
    engine = InferenceEngine(keras.Model(inputs, outputs), GridSpec((48, 48, 48), 1.5))
    grid = np.random.default_rng(1).random((48, 48, 48, 1), dtype=np.float32)
    where = np.zeros((48, 48, 48), bool)
    where[10:38, 12:40, 8:36] = True
    tiles = []
    predict = engine.predict_channels
    engine.predict_channels = lambda part: tiles.append(part.shape) or predict(part)
    tiled = engine.predict_tiled(grid, tile=16, overlap=0.05, where=where)
    whole = predict(grid)
    assert len(tiles) == 8 and all(shape[:3] == (16, 16, 16) for shape in tiles)
    inner = (slice(11, 37), slice(13, 39), slice(9, 35))
    assert np.abs(tiled[inner] - whole[inner]).max() < 0.02
    outside = np.ones(where.shape, bool)
    outside[10:38, 12:40, 8:36] = False
    assert not tiled[outside].any()


def test_mirrored_prediction_averages_the_left_right_mirror_image():
    """Test-time mirroring gives the mean of the output for the grid and, mirrored back, for
    its left-right (axis 0) mirror image: a left-right symmetric result for any model; with
    ``where``, both passes cover only its box (the mirror image's mirrored, so the same
    voxels once mirrored back)."""
    import keras

    from bids_dl.models.engine import GridSpec, InferenceEngine

    inputs = keras.Input((None, None, None, 1))
    outputs = keras.layers.Conv3D(2, 3, padding="same", activation="sigmoid")(inputs)
    engine = InferenceEngine(keras.Model(inputs, outputs), GridSpec((32, 32, 32), 1.5))
    grid = np.random.default_rng(2).random((32, 32, 32, 1), dtype=np.float32)
    grid = (grid + grid[::-1]) / 2  # a symmetric input: the mirrored mean must be symmetric
    plain = engine.predict_tiled(grid, tile=16, overlap=0.05)
    mirrored = engine.predict_tiled(grid, tile=16, overlap=0.05, mirror=True)
    assert np.abs(plain - plain[::-1]).max() > 1e-3  # the kernels are not symmetric
    assert np.abs(mirrored - mirrored[::-1]).max() < 1e-5
    expected = (plain + engine.predict_tiled(grid[::-1], tile=16, overlap=0.05)[::-1]) / 2
    assert np.abs(mirrored - expected).max() < 1e-6
    where = np.zeros((32, 32, 32), bool)
    where[2:14, 10:26, 8:24] = True
    boxed = engine.predict_tiled(grid, tile=16, overlap=0.05, where=where, mirror=True)
    assert boxed[2:14, 10:26, 8:24].all() and not boxed[20:].any()
    assert not boxed[:, :4].any()


def test_probability_maps_read_back_within_0_1(tmp_path):
    """Stored as uint8 with a float32 slope, a probability of exactly 1 must not read back
    as 1.00000005."""
    from bids_dl.utils.io import probability_image

    reference = nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4))
    probability = np.linspace(0, 1, 512, dtype=np.float32).reshape(8, 8, 8)
    nib.save(probability_image(reference, probability), tmp_path / "p.nii.gz")
    stored = nib.load(tmp_path / "p.nii.gz")
    values = stored.get_fdata()
    assert stored.get_data_dtype() == np.uint8
    assert values.min() == 0 and 0.999 < values.max() <= 1
    assert np.abs(values - probability).max() < 0.5 / 255 + 1e-6
