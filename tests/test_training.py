"""bids-dl-train's machinery on a tiny budget: batches, resumption, the card."""

from __future__ import annotations

import json

import numpy as np

from bids_dl.synth.generator import SyntheticHeads
from bids_dl.training.data import BatchStream, patch_config
from bids_dl.training.train import Recipe


def test_batches_are_a_function_of_seed_and_step(train_head):
    heads = SyntheticHeads([train_head], patch_config(24))
    in_workers = [b for b in BatchStream(heads, 3, 5, 8, workers=1)]
    inline = [b for b in BatchStream(heads, 3, 5, 8, workers=0)]
    assert len(in_workers) == 3
    for (xa, ya), (xb, yb) in zip(in_workers, inline):
        assert xa.shape == (1, 1, 24, 24, 24) and np.array_equal(xa, xb) and np.array_equal(ya, yb)


def test_learning_rate_schedule():
    recipe = Recipe(patch_steps=10, steps=10, learning_rate=1e-3, final_learning_rate=1e-4)
    assert recipe.learning_rate_at(0) == recipe.learning_rate_at(9) == 1e-3
    assert recipe.learning_rate_at(10) == 5e-4
    assert abs(recipe.learning_rate_at(20) - 1e-4) < 1e-12


def test_train_resume_and_card(labels_dir, tmp_path, monkeypatch):
    from bids_dl.training import cli

    work = tmp_path / "work"
    args = ["brain-extraction", "--labels", str(labels_dir), "--work-dir", str(work),
            "--patch", "16", "--patch-steps", "4", "--steps", "0", "--filters", "2,4",
            "--no-evaluate", "--workers", "0"]
    assert cli.main([*args, "--stop-after", "2"]) == 0
    state = json.loads((work / "state.json").read_text())
    assert state["step"] == 2 and len(state["history"]) == 2
    assert not (work / "brain_extraction.keras").exists()
    assert cli.main(args) == 0  # resumes at step 2
    state = json.loads((work / "state.json").read_text())
    assert state["step"] == 4 and len(state["history"]) == 4
    card = json.loads((work / "brain_extraction.json").read_text())
    assert card["steps"] == 4 and card["recipe"]["filters"] == [2, 4]
    assert card["data"]["label_maps"] == ["mni152_head-00.nii.gz"]
    from bids_dl.models import registry

    monkeypatch.setenv("BIDS_DL_MODEL_DIR", str(work))
    model, loaded_card = registry.load_model.__wrapped__("brain-extraction")
    assert loaded_card["sha256"] == registry.sha256(work / "brain_extraction.keras")
    assert model.output_shape[-1] == 1


def test_lesion_training_writes_a_two_input_four_output_model(lesion_model_dir):
    """Two steps of the lesion recipe (tiny U-Net, see conftest): a channels-last model with
    FLAIR + T1w in and lesions, ventricles, cortex, infratentorial out, and its card."""
    import json

    import keras

    model = keras.saving.load_model(lesion_model_dir / "lesion_segmentation.keras",
                                    safe_mode=True)
    assert model.input_shape[-1] == 2 and model.output_shape[-1] == 4
    card = json.loads((lesion_model_dir / "lesion_segmentation.json").read_text())
    assert card["name"] == "lesion-segmentation" and card["steps"] == 2
    assert card["input"]["channels"] == ["FLAIR", "T1w"]
    assert card["recipe"]["steps"] == 0 and card["recipe"]["patch"] == 64
    assert "lesion" in card["data"]["generator"]
