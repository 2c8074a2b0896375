"""U-Net architecture, channels-first/last equivalence, registry integrity checks."""

from __future__ import annotations

import json
import os
import shutil

import keras
import numpy as np
import pytest

from bids_dl.models import registry
from bids_dl.models.unet import build_unet, to_channels_last


def test_unet_shapes_and_output_range():
    model = build_unet((4, 8), groups=2)
    x = np.random.default_rng(0).random((1, 16, 24, 8, 1)).astype(np.float32)
    y = np.asarray(model(x))
    assert y.shape == (1, 16, 24, 8, 1)
    assert 0 <= y.min() and y.max() <= 1


def test_channels_first_weights_give_the_same_channels_last_model():
    first = build_unet((4, 8), groups=2, data_format="channels_first")
    x = np.random.default_rng(1).random((1, 1, 16, 16, 16)).astype(np.float32)
    try:
        expected = np.asarray(first(x))[0, 0]
    except Exception:  # TensorFlow on CPU has no channels-first Conv3D
        pytest.skip("this backend cannot run channels-first 3D convolutions on the CPU")
    last = to_channels_last(first, filters=(4, 8), groups=2)
    got = np.asarray(last(np.moveaxis(x, 1, -1)))[0, ..., 0]
    assert np.allclose(expected, got, atol=1e-5)


def test_saved_model_reloads_in_safe_mode(tmp_path):
    model = build_unet((4, 8), groups=2)
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True, compile=False)
    x = np.random.default_rng(2).random((1, 8, 8, 8, 1)).astype(np.float32)
    assert np.allclose(np.asarray(model(x)), np.asarray(again(x)), atol=1e-6)


def test_shipped_model_matches_its_card():
    entry = registry.get_entry("brain-extraction")
    card = registry.verify(entry)
    for key in ("recipe", "data", "seed", "steps", "metrics", "sha256"):
        assert key in card
    assert card["steps"] == card["recipe"]["patch_steps"] + card["recipe"]["steps"]


def test_synthetic_flair_threshold_was_calibrated_with_the_shipped_synthesis_model():
    """The synthetic-FLAIR threshold (in the card of the model that reads synthetic FLAIRs:
    the separate one the lesion card names, or the lesion model) names the synthesis model
    its FLAIRs came from: a new synthesis model without a recalibration fails here."""
    from bids_dl.models.lesion_segmentation import SYNTHETIC_FLAIR_SET, synthetic_flair_card

    if not (registry.available("lesion-segmentation")
            and registry.available("contrast-synthesis")):
        pytest.skip("the lesion and synthesis models are not both installed")
    lesion = synthetic_flair_card(registry.get_entry("lesion-segmentation").read_card())
    synthesis = registry.verify(registry.get_entry("contrast-synthesis"))
    calibration = lesion["synthetic_flair_calibration"]
    assert calibration["synthesis_model_sha256"] == synthesis["sha256"]
    assert lesion["thresholds"][SYNTHETIC_FLAIR_SET] == calibration["threshold"]


def test_shipped_synthesis_lesion_branch_is_the_synthetic_flair_readers_t1w_path():
    """The shipped synthesis model's frozen lesion branch holds the weights of the lesion model
    that reads its FLAIRs (the separate model the lesion card names, else the lesion model;
    its first convolution: the T1w input channel), and its card names that model; the lesion
    card's pointer names the installed file's sha256."""
    from bids_dl.models.lesion_segmentation import synthetic_flair_reader

    if not (registry.available("lesion-segmentation")
            and registry.available("contrast-synthesis")):
        pytest.skip("the lesion and synthesis models are not both installed")
    synthesis, card = registry.load_model("contrast-synthesis")
    if "lesion_branch" not in [layer.name for layer in synthesis.layers]:
        pytest.skip("the shipped synthesis model has no lesion branch")
    lesion, lesion_card = synthetic_flair_reader(*registry.load_model("lesion-segmentation"))
    assert card["lesion_branch"]["sha256"] == lesion_card["sha256"]
    lesion_weights = {w.path: np.asarray(w.numpy()) for w in lesion.weights}
    branch = synthesis.get_layer("lesion_branch").weights
    assert len(branch) == len(lesion_weights)
    for weight in branch:
        expected = lesion_weights[weight.path]
        if weight.path == "down0_conv1/kernel":
            expected = expected[..., 1:2, :]  # channel 1 of (FLAIR, T1w)
        np.testing.assert_array_equal(np.asarray(weight.numpy()), expected)


def test_synthetic_flair_reader_is_the_one_the_lesion_card_names(tmp_path, monkeypatch):
    """A lesion card that names a separate model for synthetic FLAIRs gets that model (by
    sha256); a different file in its place is refused, naming it; a card that names none is
    its own reader."""
    from bids_dl.models.lesion_segmentation import (
        SYNTHETIC_FLAIR_MODEL,
        synthetic_flair_card,
        synthetic_flair_reader,
        verified_synthetic_flair_card,
    )

    lesion_card = registry.get_entry("lesion-segmentation").read_card()
    if not lesion_card.get("synthetic_flair_model"):
        pytest.skip("the shipped lesion model reads synthetic FLAIRs itself")
    reader_entry = registry.get_entry(SYNTHETIC_FLAIR_MODEL)
    assert lesion_card["synthetic_flair_model"]["sha256"] == registry.sha256(
        reader_entry.weights_path)
    assert lesion_card["synthetic_flair_model"]["file"] == reader_entry.weights
    assert synthetic_flair_card(lesion_card)["sha256"] != lesion_card["sha256"]
    marker = object()
    assert synthetic_flair_reader(marker, {"sha256": "x"}) == (marker, {"sha256": "x"})
    assert verified_synthetic_flair_card({}) is None
    # the lesion model's own file put where the reader should be: refused
    for entry in (registry.get_entry("lesion-segmentation"), reader_entry):
        shutil.copy(entry.card_path, tmp_path / entry.card)
    shutil.copy(registry.get_entry("lesion-segmentation").weights_path,
                tmp_path / reader_entry.weights)
    card = json.loads((tmp_path / reader_entry.card).read_text())
    card["sha256"] = registry.sha256(tmp_path / reader_entry.weights)
    (tmp_path / reader_entry.card).write_text(json.dumps(card))
    monkeypatch.setenv("BIDS_DL_MODEL_DIR", str(tmp_path))
    with pytest.raises(registry.ModelIntegrityError,
                       match="lesion_segmentation_synthetic_flair.keras.*lesion card names"):
        verified_synthetic_flair_card(lesion_card)
    (tmp_path / reader_entry.weights).unlink()
    with pytest.raises(registry.ModelIntegrityError, match="weights file not found"):
        verified_synthetic_flair_card(lesion_card)


def test_tampered_weights_are_refused(tmp_path, monkeypatch):
    entry = registry.get_entry("brain-extraction")
    shutil.copy(entry.card_path, tmp_path / entry.card)
    blob = bytearray(entry.weights_path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (tmp_path / entry.weights).write_bytes(bytes(blob))
    monkeypatch.setenv("BIDS_DL_MODEL_DIR", str(tmp_path))
    with pytest.raises(registry.ModelIntegrityError, match="does not match its card"):
        registry.verify(entry)
    (tmp_path / entry.weights).unlink()
    with pytest.raises(registry.ModelIntegrityError, match="weights file not found"):
        registry.verify(entry)


CROSS_BACKEND_SCRIPT = """
import sys, numpy as np
from bids_dl.models.registry import load_model
model, _ = load_model("brain-extraction")
x = np.load(sys.argv[1])
np.save(sys.argv[2], model.predict_on_batch(x))
"""


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_same_result_on_another_backend(backend, tmp_path):
    """The shipped model gives the same probabilities on TensorFlow and another backend."""
    import importlib.util
    import os
    import subprocess
    import sys

    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"the {backend} backend is not installed here")
    from bids_dl.models.registry import load_model

    rng = np.random.default_rng(0)
    x = rng.random((1, 48, 56, 48, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    env = dict(os.environ, KERAS_BACKEND=backend, CUDA_VISIBLE_DEVICES="-1")
    done = subprocess.run([sys.executable, "-c", CROSS_BACKEND_SCRIPT, str(tmp_path / "x.npy"),
                           str(tmp_path / "y.npy")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    model, _ = load_model("brain-extraction")
    expected = model.predict_on_batch(x)
    assert np.abs(np.load(tmp_path / "y.npy") - expected).max() < 1e-3


def _group_norm_float64(x: np.ndarray, groups: int, gamma: np.ndarray, beta: np.ndarray,
                        epsilon: float) -> np.ndarray:
    """Group normalisation of channels-last ``x`` (batch 1) computed in float64."""
    values = x[0].astype(np.float64)
    grouped = values.reshape(-1, groups, values.shape[-1] // groups)
    mean, var = grouped.mean(axis=(0, 2)), grouped.var(axis=(0, 2))
    normed = (grouped - mean[None, :, None]) / np.sqrt(var[None, :, None] + epsilon)
    return normed.reshape(values.shape) * gamma + beta


def test_accurate_group_normalization_matches_float64_on_a_whole_grid():
    """On a 96x112x96 grid (the brain model's; about 2 M values per group) the accurate layer
    equals the float64 result to float32 precision on every backend (Keras' own layer is off
    by up to 6e-3 with TensorFlow on the CPU), and with the same weights and configuration."""
    from bids_dl.models.layers import AccurateGroupNormalization, use_accurate_normalization

    rng = np.random.default_rng(3)
    x = (5 + rng.standard_normal((1, 96, 112, 96, 4)) * (1 + rng.random(4))).astype(np.float32)
    inputs = keras.Input((None, None, None, 4))
    model = keras.Model(inputs, keras.layers.GroupNormalization(groups=2, name="norm")(inputs))
    layer = model.get_layer("norm")
    gamma, beta = rng.random(4).astype(np.float32) + 0.5, rng.random(4).astype(np.float32)
    layer.set_weights([gamma, beta])
    use_accurate_normalization(model)
    assert type(layer) is AccurateGroupNormalization
    got = np.asarray(model.predict_on_batch(x))[0]
    expected = _group_norm_float64(x, 2, gamma, beta, layer.epsilon)
    assert np.abs(got - expected).max() < 2e-5


def test_shipped_models_load_with_accurate_normalization():
    from bids_dl.models.layers import AccurateGroupNormalization

    model, _ = registry.load_model("brain-extraction")
    norms = [layer for layer in model.layers if "norm" in layer.name]
    assert norms and all(type(layer) is AccurateGroupNormalization for layer in norms)


def test_device_configuration_keeps_tf32_off_unless_asked(monkeypatch):
    from bids_dl.utils.device import DeviceError, configure_device

    for name in ("NVIDIA_TF32_OVERRIDE", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.setenv(name, "unset-by-test")
        monkeypatch.delenv(name)
    configure_device("auto")
    assert os.environ["NVIDIA_TF32_OVERRIDE"] == "0" and "CUDA_VISIBLE_DEVICES" not in os.environ
    monkeypatch.setenv("NVIDIA_TF32_OVERRIDE", "1")  # the user's choice wins
    configure_device("cpu")
    assert os.environ["NVIDIA_TF32_OVERRIDE"] == "1" and os.environ["CUDA_VISIBLE_DEVICES"] == "-1"
    with pytest.raises(DeviceError, match="unknown device"):
        configure_device("tpu")


def test_synthesis_net_renders_its_tissue_mixture(tmp_path):
    """The synthesis net: softmax tissue fractions (sum 1), images rendered from them by the
    fixed physics layer (a voxel certain to be white matter reads FLAIR = T2w = 1 and 27 HU);
    the training model's extra tissue channels; its inference copy and safe-mode reload."""
    from bids_dl.models.layers import load_keras_model
    from bids_dl.models.synthesis_net import build_synthesis_net, to_inference
    from bids_dl.synth.labels import LABELS

    model = build_synthesis_net((4, 8), data_format="channels_first", training=True)
    bias = np.zeros(len(LABELS) + 1, np.float32)
    bias[LABELS["cerebral_wm"]] = 50.0
    kernel = model.get_layer("output").get_weights()[0]
    model.get_layer("output").set_weights([np.zeros_like(kernel), bias])
    image = np.random.default_rng(0).random((1, 1, 16, 16, 16)).astype(np.float32)
    out = model.predict(image, verbose=0)
    assert out.shape == (1, 3 + len(LABELS) + 1, 16, 16, 16)
    assert np.allclose(out[0, 3:].sum(axis=0), 1.0, atol=1e-5)
    assert np.allclose(out[0, 0], 1.0, atol=1e-4) and np.allclose(out[0, 1], 1.0, atol=1e-4)
    assert np.allclose(out[0, 2], 0.027, atol=1e-5)
    shipped = to_inference(model, filters=(4, 8))
    path = tmp_path / "synthesis.keras"
    shipped.save(path)
    reloaded = load_keras_model(path)
    again = reloaded.predict(np.moveaxis(image, 1, -1), verbose=0)
    assert again.shape == (1, 16, 16, 16, 3)
    assert np.allclose(np.moveaxis(again, -1, 1), out[:, :3], atol=1e-4)
    assert not reloaded.get_layer("render").trainable


def test_synthesis_net_lesion_branch_replaces_the_mixtures_lesions(tmp_path):
    """With a lesion branch, a voxel the branch calls lesion (p = 1) inside parenchyma is
    rendered as lesion (FLAIR, T2w, CT of the lesion class) whatever the mixture says; outside
    parenchyma (a ventricle) the mixture stands, and p = 0 leaves the mixture as it is. The
    branch is frozen, also after a safe-mode reload."""
    from bids_dl.models.layers import load_keras_model
    from bids_dl.models.synthesis_net import build_synthesis_net, rendering_weights, to_inference
    from bids_dl.synth.labels import LABELS

    signals = rendering_weights()
    image = np.random.default_rng(1).random((1, 1, 16, 16, 16)).astype(np.float32)

    def render(tissue: str, lesion_logit: float):
        model = build_synthesis_net((4, 8), data_format="channels_first", training=True,
                                    lesion_branch=True)
        bias = np.zeros(len(LABELS) + 1, np.float32)
        bias[LABELS[tissue]] = 50.0
        kernel = model.get_layer("output").get_weights()[0]
        model.get_layer("output").set_weights([np.zeros_like(kernel), bias])
        branch_out = model.get_layer("lesion_branch").get_layer("output")
        kernel, branch_bias = branch_out.get_weights()
        branch_bias[:] = lesion_logit
        branch_out.set_weights([np.zeros_like(kernel), branch_bias])
        return model, model.predict(image, verbose=0)[0]

    model, lesion_in_wm = render("cerebral_wm", 30.0)
    assert np.allclose(lesion_in_wm[3 + len(LABELS)], 1.0, atol=1e-5)
    for channel in range(3):
        assert np.allclose(lesion_in_wm[channel], signals[-1, channel], atol=1e-4)
    _, in_ventricle = render("ventricles", 30.0)
    assert np.allclose(in_ventricle[0], signals[LABELS["ventricles"], 0], atol=1e-4)
    _, no_lesion = render("cerebral_wm", -30.0)
    assert np.allclose(no_lesion[0], 1.0, atol=1e-4)
    assert len(model.trainable_weights) < len(model.weights) - 30  # the branch is frozen
    shipped = to_inference(model, filters=(4, 8), lesion_branch=True)
    path = tmp_path / "synthesis.keras"
    shipped.save(path)
    reloaded = load_keras_model(path)
    assert not reloaded.get_layer("lesion_branch").trainable
    again = reloaded.predict(np.moveaxis(image, 1, -1), verbose=0)
    assert np.allclose(np.moveaxis(again, -1, 1)[0], lesion_in_wm[:3], atol=1e-4)


def test_synthesis_net_residual_correction_starts_at_zero(tmp_path):
    """``residual=True``: a net started from one without the correction renders exactly what
    that one does (the correction starts at zero), a correction's bias adds to the rendered
    images, the inference copy keeps it after a safe-mode reload, and a net without the
    correction refuses to start from one with it."""
    from bids_dl.models.layers import load_keras_model
    from bids_dl.models.synthesis_net import build_synthesis_net, to_inference
    from bids_dl.training.train import initialise_from

    image = np.random.default_rng(2).random((1, 1, 16, 16, 16)).astype(np.float32)
    plain = build_synthesis_net((4, 8), dropout=0.0, data_format="channels_first",
                                training=True)
    plain_path = tmp_path / "plain.keras"
    to_inference(plain, filters=(4, 8), dropout=0.0).save(plain_path)
    model = build_synthesis_net((4, 8), dropout=0.0, data_format="channels_first",
                                training=True, residual=True)
    assert initialise_from(model, plain_path, include_output=True) == len(
        [layer for layer in plain.layers if layer.trainable and layer.weights])
    expected = plain.predict(image, verbose=0)
    assert np.allclose(model.predict(image, verbose=0), expected, atol=1e-5)
    kernel, bias = model.get_layer("residual").get_weights()
    model.get_layer("residual").set_weights([kernel, np.array([0.5, -0.25, 0.1], np.float32)])
    out = model.predict(image, verbose=0)
    assert np.allclose(out[:, :3] - expected[:, :3],
                       np.array([0.5, -0.25, 0.1])[None, :, None, None, None], atol=1e-4)
    assert np.allclose(out[:, 3:], expected[:, 3:], atol=1e-5)  # the mixture is untouched
    path = tmp_path / "residual.keras"
    to_inference(model, filters=(4, 8), dropout=0.0, residual=True).save(path)
    again = load_keras_model(path).predict(np.moveaxis(image, 1, -1), verbose=0)
    assert np.allclose(np.moveaxis(again, -1, 1), out[:, :3], atol=1e-4)
    with pytest.raises(ValueError, match="residual correction"):
        initialise_from(plain, path, include_output=True)


def test_shipped_lesion_thresholds_are_what_the_calibration_chooses_from_its_sweeps():
    """Each shipped lesion threshold and filter (and the synthetic-FLAIR reading) is what the
    calibration's rules choose from the sweeps stored beside it, made with today's protocol
    (its number of lesion-free validation heads): a hand-edited threshold, or a calibration
    from an older protocol, fails here."""
    from bids_dl.models.lesion_segmentation import SYNTHETIC_FLAIR_SET, synthetic_flair_card
    from bids_dl.training.calibrate_lesions import (
        LESION_FREE_HEADS,
        choose_min_peak,
        choose_reading,
        choose_threshold,
    )

    if not registry.available("lesion-segmentation"):
        pytest.skip("the lesion model is not installed")
    card = registry.get_entry("lesion-segmentation").read_card()
    reader = synthetic_flair_card(card)
    checked = [(card, card["threshold_calibration"])]
    if "synthetic_flair_calibration" in reader:
        checked.append((reader, reader["synthetic_flair_calibration"]))
    for owner, calibration in checked:
        assert calibration["lesion_free_heads"] == LESION_FREE_HEADS
        for inputs, sweep in calibration["per_input"].items():
            rows = sweep["per_threshold"]
            assert len(rows[0]["lesion_free_per_head_ml"]) == LESION_FREE_HEADS
            chosen = choose_threshold({r["threshold"]: r["dice"] for r in rows},
                                      {r["threshold"]: r["lesion_free_ml"] for r in rows})
            assert owner["thresholds"][inputs] == sweep["threshold"] == chosen
            assert owner.get("min_peaks", {}).get(inputs, 0.0) == sweep["min_peak"] \
                == choose_min_peak(sweep["per_min_peak"])
    if "per_reading" in reader.get("synthetic_flair_calibration", {}):
        calibration = reader["synthetic_flair_calibration"]
        assert reader["synthetic_flair_reading"] == choose_reading(calibration["per_reading"])
        assert reader["thresholds"][SYNTHETIC_FLAIR_SET] == \
            calibration["per_reading"][reader["synthetic_flair_reading"]]["threshold"]
