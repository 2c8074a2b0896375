"""U-Net architecture, channels-first/last equivalence, registry integrity checks."""

from __future__ import annotations

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
