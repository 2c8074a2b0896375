"""The optional adversarial term of synthesis training: the PatchGAN, one training step, and
a resumed run by the real command."""

from __future__ import annotations

import json

import numpy as np
import pytest


def test_patch_discriminator_scores_each_patch():
    """One score per 8³ block of the input, channels-first (training) or channels-last;
    the score depends on the images it is shown."""
    from bids_dl.models.discriminator import build_patch_discriminator

    first = build_patch_discriminator()
    pairs = np.random.default_rng(0).random((2, 4, 32, 24, 16)).astype(np.float32)
    scores = np.asarray(first.predict(pairs, verbose=0))
    assert scores.shape == (2, 1, 4, 3, 2)
    other = pairs.copy()
    other[:, 1:] = 0  # the same source, other images
    assert not np.allclose(np.asarray(first.predict(other, verbose=0)), scores)
    last = build_patch_discriminator(data_format="channels_last")
    last.set_weights(first.get_weights())
    moved = np.asarray(last.predict(np.moveaxis(pairs, 1, -1), verbose=0))
    assert np.allclose(np.moveaxis(moved, -1, 1), scores, atol=1e-4)


def _nets(count: int):
    """``count`` tiny channels-first synthesis nets (no dropout) with the same weights."""
    from bids_dl.models.synthesis_net import build_synthesis_net

    nets = [build_synthesis_net(filters=(4, 8), dropout=0.0, training=True,
                                data_format="channels_first") for _ in range(count)]
    for net in nets[1:]:
        net.set_weights(nets[0].get_weights())
    return nets


def test_adversarial_step_trains_the_net_and_the_discriminator_apart():
    """Weight 0: the net's step equals a plain step of its own loss (same optimizer), though
    the discriminator learns; weight > 0 moves the net elsewhere; the net's step never
    touches the discriminator, whose step never touches the net."""
    import keras

    from bids_dl.models.discriminator import build_patch_discriminator
    from bids_dl.training.adversarial import AdversarialTraining
    from bids_dl.training.losses import tissue_synthesis_loss

    rng = np.random.default_rng(1)
    source = rng.random((2, 1, 16, 16, 16)).astype(np.float32)
    plain, twin, third = _nets(3)
    initial = plain.get_weights()
    targets = rng.random((2, plain.output.shape[1], 16, 16, 16)).astype(np.float32)
    plain.compile(optimizer=keras.optimizers.Adam(1e-3), loss=tissue_synthesis_loss)
    plain.train_on_batch(source, targets)

    discriminator = build_patch_discriminator()
    before = [w.copy() for w in discriminator.get_weights()]
    unweighted = AdversarialTraining(twin, discriminator, 0.0, 1e-3, 2e-4,
                                     tissue_synthesis_loss)
    net_loss, (discriminator_loss, adversarial_loss) = unweighted.step(source, targets, 1e-3)
    assert np.isfinite([net_loss, discriminator_loss, adversarial_loss]).all()
    for mine, theirs in zip(twin.get_weights(), plain.get_weights()):
        assert np.allclose(mine, theirs, atol=1e-6)
    assert any(not np.array_equal(a, b) for a, b in zip(before, discriminator.get_weights()))

    third.set_weights(initial)  # the start of the plain step, trained with weight 10
    weighted = AdversarialTraining(third, build_patch_discriminator(), 10.0, 1e-3, 2e-4,
                                   tissue_synthesis_loss)
    weighted.discriminator.set_weights(discriminator.get_weights())
    settled = [w.copy() for w in discriminator.get_weights()]
    weighted.combined.train_on_batch(source, [targets, np.ones((2, 1, 2, 2, 2), np.float32)])
    assert all(np.array_equal(a, b)
               for a, b in zip(settled, weighted.discriminator.get_weights()))
    assert any(not np.allclose(a, b, atol=1e-6)
               for a, b in zip(third.get_weights(), plain.get_weights()))


def test_adversarial_training_resumes_and_ships_the_net_alone(labels_dir, tmp_path):
    """``bids-dl-train contrast-synthesis --adversarial``: a run stopped after one step keeps
    the discriminator and both optimizers' states; resumed, it ends with a plain synthesis
    net (no discriminator inside; safe-mode loadable) and a card that records the term."""
    import keras

    from bids_dl.reports.boilerplate import methods_text
    from bids_dl.training import cli

    work = tmp_path / "work"
    args = ["contrast-synthesis", "--labels", str(labels_dir), "--work-dir", str(work),
            "--filters", "4,8", "--patch", "16", "--patch-steps", "2", "--workers", "0",
            "--adversarial", "0.05", "--discriminator-learning-rate", "1e-4", "--no-evaluate"]
    assert cli.main([*args, "--stop-after", "1"]) == 0
    state = json.loads((work / "state.json").read_text())
    assert state["step"] == 1 and len(state["discriminator_history"]) == 1
    saved = keras.saving.load_model(work / "discriminator.keras", safe_mode=True)
    assert len(saved.optimizer.variables) > 2  # moments of every weight, not only a counter
    first_weights = saved.get_weights()
    assert cli.main(args) == 0
    state = json.loads((work / "state.json").read_text())
    assert state["step"] == 2 and len(state["history"]) == 2
    assert len(state["discriminator_history"]) == 2
    resumed = keras.saving.load_model(work / "discriminator.keras", safe_mode=True)
    assert any(not np.array_equal(a, b) for a, b in zip(first_weights, resumed.get_weights()))
    model = keras.saving.load_model(work / "contrast_synthesis.keras", safe_mode=True)
    assert model.output_shape[-1] == 3
    assert not any("disc" in layer.name for layer in model.layers)
    card = json.loads((work / "contrast_synthesis.json").read_text())
    assert card["recipe"]["adversarial_weight"] == 0.05
    assert card["recipe"]["discriminator_learning_rate"] == 1e-4
    assert "PatchGAN" in card["recipe"]["loss"] and "adversarial term x0.05" in card["lineage"][-1]
    assert "adversarial term" in methods_text({"contrast-synthesis": card}, [])


@pytest.mark.parametrize("task", ["brain-extraction", "lesion-segmentation"])
def test_adversarial_term_is_for_synthesis_only(labels_dir, tmp_path, task):
    """Other tasks have no --adversarial option; a recipe that asks for it is refused."""
    from bids_dl.training import cli
    from bids_dl.training.train import Recipe, train

    with pytest.raises(SystemExit):
        cli.main([task, "--labels", str(labels_dir), "--work-dir", str(tmp_path),
                  "--adversarial", "0.1"])
    with pytest.raises(ValueError, match="--adversarial is for contrast synthesis"):
        train(Recipe(task=task, adversarial_weight=0.1), labels_dir, tmp_path / "run")
