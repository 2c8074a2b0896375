"""bids-dl-train's machinery on a tiny budget: batches, resumption, the card."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bids_dl.synth import labels as L
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
    for key in ("activation", "output_bias", "init_from"):  # a run from before these fields
        del state["recipe"][key]
    (work / "state.json").write_text(json.dumps(state))
    assert cli.main(args) == 0  # resumes at step 2
    state = json.loads((work / "state.json").read_text())
    assert state["step"] == 4 and len(state["history"]) == 4
    card = json.loads((work / "brain_extraction.json").read_text())
    assert card["steps"] == 4 and card["recipe"]["filters"] == [2, 4]
    assert card["data"]["label_maps"] == ["mni152_head-00.nii.gz"]
    assert card["data"]["label_map_builds"] == {"mni152_head-00.nii.gz": {
        "version": L.ANATOMY_VERSIONS["mni152"], "folded_cortex": False}}
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
    assert card["recipe"]["activation"] == "leaky_relu" and card["recipe"]["output_bias"] < 0
    assert "lesion" in card["data"]["generator"]
    activations = {layer.get_config()["activation"] for layer in model.layers
                   if layer.name.endswith(("_relu1", "_relu2"))}
    assert activations == {"leaky_relu"}


def test_init_from_copies_every_layer_but_the_output(lesion_model_dir):
    """--init-from: a new run starts from another run's weights (here a leaky-ReLU model
    from the tiny lesion model's file), the output layer fresh with the recipe's bias; a
    model of other filters is refused."""
    import keras

    from bids_dl.training.train import _build, initialise_from

    path = lesion_model_dir / "lesion_segmentation.keras"
    source = keras.saving.load_model(path, safe_mode=True)
    recipe = Recipe(task="lesion-segmentation", filters=(4, 8), activation="relu",
                    output_bias=-2.0)
    model = _build(recipe, "channels_first")
    assert initialise_from(model, path) == sum(
        1 for layer in model.layers if layer.weights and layer.name != "output")
    for layer in model.layers:
        if layer.weights and layer.name != "output":
            for mine, theirs in zip(layer.get_weights(), source.get_layer(layer.name).get_weights()):
                assert np.array_equal(mine, theirs)
    bias = model.get_layer("output").get_weights()[1]
    assert np.all(bias == -2.0)
    assert not np.array_equal(bias, source.get_layer("output").get_weights()[1])
    with pytest.raises(ValueError, match="does not match"):
        initialise_from(_build(Recipe(task="lesion-segmentation", filters=(2, 8)),
                               "channels_first"), path)
    tuned = _build(recipe, "channels_first")  # fine-tuning: the output layer copied too
    assert initialise_from(tuned, path, include_output=True) == sum(
        1 for layer in tuned.layers if layer.weights)
    for mine, theirs in zip(tuned.get_layer("output").get_weights(),
                            source.get_layer("output").get_weights()):
        assert np.array_equal(mine, theirs)


def test_synthesis_net_starts_from_the_lesion_models_t1w_channel(lesion_model_dir):
    """--init-from with --init-input-channel: the one-input synthesis net takes the two-input
    lesion model's weights, its first convolution's T1w channel (1) only; the logits layer
    stays fresh and the fixed rendering layer keeps its physics."""
    import keras

    from bids_dl.models.synthesis_net import rendering_weights
    from bids_dl.training.train import _build, initialise_from

    path = lesion_model_dir / "lesion_segmentation.keras"
    source = keras.saving.load_model(path, safe_mode=True)
    model = _build(Recipe(task="contrast-synthesis", filters=(4, 8)), "channels_first")
    with pytest.raises(ValueError, match="does not match"):
        initialise_from(model, path)  # two input channels into one
    initialise_from(model, path, input_channel=1)
    mine = model.get_layer("down0_conv1").get_weights()[0]
    assert mine.shape[-2] == 1
    assert np.array_equal(mine, source.get_layer("down0_conv1").get_weights()[0][..., 1:2, :])
    assert np.array_equal(model.get_layer("up0_conv2").get_weights()[0],
                          source.get_layer("up0_conv2").get_weights()[0])
    assert np.allclose(model.get_layer("render").get_weights()[0][0, 0, 0], rendering_weights())


def test_lesion_branch_from_the_shipped_lesion_model(labels_dir, tmp_path):
    """--lesion-branch-from: a 0-step run freezes the shipped lesion model's T1w path into
    the synthesis net (its lesion output equals the lesion model's on a T1w alone), and the
    card names the lesion model by sha256 and says so in its architecture and methods text."""
    import keras

    from bids_dl.models.registry import MODEL_DIR
    from bids_dl.reports.boilerplate import methods_text
    from bids_dl.training import cli

    lesion_path = MODEL_DIR / "lesion_segmentation.keras"
    work = tmp_path / "work"
    assert cli.main(["contrast-synthesis", "--labels", str(labels_dir), "--work-dir", str(work),
                     "--filters", "4,8", "--patch-steps", "0", "--steps", "0",
                     "--lesion-branch-from", str(lesion_path), "--no-evaluate"]) == 0
    card = json.loads((work / "contrast_synthesis.json").read_text())
    lesion_card = json.loads(lesion_path.with_suffix(".json").read_text())
    assert card["lesion_branch"]["sha256"] == lesion_card["sha256"]
    assert lesion_card["sha256"] in card["recipe"]["lesion_branch_from"]
    assert "lesion branch" in card["architecture"]
    assert "frozen copy of the lesion model" in methods_text({"contrast-synthesis": card}, [])
    model = keras.saving.load_model(work / "contrast_synthesis.keras", safe_mode=True)
    lesion_model = keras.saving.load_model(lesion_path, safe_mode=True)
    t1w = np.random.default_rng(2).random((1, 32, 32, 32, 1)).astype(np.float32)
    branch = keras.Model(model.input, model.get_layer("lesion_probability").output)
    expected = lesion_model.predict(np.concatenate([np.zeros_like(t1w), t1w], -1),
                                    verbose=0)[..., :1]
    assert np.allclose(branch.predict(t1w, verbose=0), expected, atol=2e-3)


def test_tissue_synthesis_loss():
    """The synthesis loss: ~0 for the exact images and a confident right tissue mixture;
    higher for the right images from a wrong mixture, higher still when both are wrong."""
    from bids_dl.training.losses import tissue_synthesis_loss

    rng = np.random.default_rng(0)
    classes = rng.integers(0, 4, (1, 16, 16, 16))
    fractions = np.moveaxis(np.eye(4, dtype=np.float32)[classes], -1, 1)
    values = np.array([[0.1, 1.0, 1.3, 2.0]] * 3, np.float32)
    images = np.einsum("bkxyz,tk->btxyz", fractions, values)
    truth = np.concatenate([images, fractions], axis=1)

    def loss(pred):
        return float(np.asarray(tissue_synthesis_loss(truth, pred.astype(np.float32)))[0])

    confident = np.clip(fractions, 1e-4, 1.0)
    exact = loss(np.concatenate([images, confident], axis=1))
    wrong_mixture = np.roll(confident, 1, axis=1)
    assert exact < 0.01
    assert loss(np.concatenate([images, wrong_mixture], axis=1)) > exact + 5
    wrong_images = np.einsum("bkxyz,tk->btxyz", wrong_mixture, values)
    assert loss(np.concatenate([wrong_images, wrong_mixture], axis=1)) > loss(
        np.concatenate([images, wrong_mixture], axis=1)) + 0.3


def test_tissue_synthesis_loss_counts_small_lesions():
    """A mixture that calls 8 lesion voxels (of 4,096) white matter costs at least the
    lesion Dice weight, however few the lesion voxels are."""
    from bids_dl.training.losses import LESION_DICE_WEIGHT, tissue_synthesis_loss

    classes = np.zeros((1, 16, 16, 16), int)
    classes[0, 4:6, 4:6, 4:6] = 3  # the last class: lesions
    fractions = np.moveaxis(np.eye(4, dtype=np.float32)[classes], -1, 1)
    truth = np.concatenate([np.zeros((1, 3, 16, 16, 16), np.float32), fractions], axis=1)
    missed = fractions.copy()
    missed[:, 0] += missed[:, 3]
    missed[:, 3] = 0

    def loss(mixture):
        pred = np.concatenate([truth[:, :3], np.clip(mixture, 1e-4, 1.0)], axis=1)
        return float(np.asarray(tissue_synthesis_loss(truth, pred))[0])

    assert loss(fractions) < 0.05  # the clipped 1e-4 elsewhere adds to the Dice sums
    assert loss(missed) - loss(fractions) > 0.8 * LESION_DICE_WEIGHT + 0.1


def test_small_lesion_weights_and_weighted_loss(tmp_path):
    """Small-lesion weighting: a 27-voxel lesion's voxels weigh (300 / 27)^0.5 = 3.33, a
    1,000-voxel one's 1, the background 1; with the weights as an extra target channel the
    loss of missing the small lesion grows, that of the rest does not; a pooled batch with
    the weighting carries them as its last mask channel."""
    from bids_dl.synth.demo import LABELS_FILE
    from bids_dl.training.data import SMALL_LESION_REFERENCE, make_batch, small_lesion_weights
    from bids_dl.training.losses import channelwise_dice_bce_loss
    from bids_dl.training.pool import PatchPool
    from bids_dl.training.train import make_heads

    lesions = np.zeros((32, 32, 32), np.uint8)
    lesions[2:5, 2:5, 2:5] = 1
    lesions[15:25, 15:25, 15:25] = 1
    weights = small_lesion_weights(lesions, cap=5.0)
    assert np.isclose(weights[3, 3, 3], np.sqrt(SMALL_LESION_REFERENCE / 27))
    assert weights[20, 20, 20] == 1 and weights[0, 31, 31] == 1
    assert small_lesion_weights(lesions, cap=2.0).max() == 2.0

    truth = np.zeros((1, 4, 32, 32, 32), np.float32)
    truth[0, 0] = lesions
    missed_small = np.clip(truth.copy(), 0.01, 0.99)
    missed_small[0, 0, 2:5, 2:5, 2:5] = 0.01
    missed_large = np.clip(truth.copy(), 0.01, 0.99)
    missed_large[0, 0, 16:19, 16:19, 16:19] = 0.01  # as many voxels, inside the large one
    weighted = np.concatenate([truth, weights[None, None]], axis=1)

    def loss(target, pred):
        return float(np.asarray(channelwise_dice_bce_loss(target, pred))[0])

    assert np.isclose(loss(truth, missed_small), loss(truth, missed_large), atol=1e-3)
    assert loss(weighted, missed_small) > loss(weighted, missed_large) + 0.003
    assert np.isclose(loss(weighted, missed_large), loss(truth, missed_large), atol=1e-4)

    import nibabel as nib

    labels = np.asarray(nib.load(str(LABELS_FILE)).dataobj)
    heads = make_heads("lesion-segmentation", [labels], None, pooled=True)
    pool = PatchPool(heads, tmp_path / "pool", 1, seed=4, patch=32)
    from bids_dl.training import data

    data._init_worker(pool)
    _, plain = make_batch((4, 0, 2, 1))
    _, masks = make_batch((4, 0, 2, 1, 5.0))
    assert masks.shape[1] == plain.shape[1] + 1 and np.array_equal(masks[:, :-1], plain)
    assert np.array_equal(masks[:, -1], np.stack([small_lesion_weights(m[0], 5.0)
                                                  for m in plain]))


def test_lesion_instances_and_blob_loss(tmp_path):
    """Blob loss: the instance ids number the lesions smallest first and each neighbourhood
    holds its lesion's id; missing a 27-voxel lesion costs the blob loss far more than
    missing as many voxels inside a 1,000-voxel one (the plain loss: the same), a halo of
    false positives beside the small lesion costs it too, and a pooled batch with the blob
    loss carries both channels."""
    from bids_dl.synth.demo import LABELS_FILE
    from bids_dl.training.data import lesion_instances, make_batch
    from bids_dl.training.losses import blob_dice_bce_loss, channelwise_dice_bce_loss
    from bids_dl.training.pool import PatchPool
    from bids_dl.training.train import make_heads

    lesions = np.zeros((32, 32, 32), np.uint8)
    lesions[2:5, 2:5, 2:5] = 1
    lesions[15:25, 15:25, 15:25] = 1
    ids, near = lesion_instances(lesions, max_blobs=16, radius=3.0)
    assert ids[3, 3, 3] == 1 and ids[20, 20, 20] == 2 and ids[0, 31, 31] == 0
    assert near[6, 3, 3] == 1 and near[9, 3, 3] == 0 and near[13, 20, 20] == 2
    assert lesion_instances(lesions, max_blobs=1, radius=3.0)[0][20, 20, 20] == 2
    assert not lesion_instances(np.zeros_like(lesions), 16, 3.0).any()

    truth = np.zeros((1, 4, 32, 32, 32), np.float32)
    truth[0, 0] = lesions
    exact = np.clip(truth.copy(), 1e-4, 1 - 1e-4)
    missed_small = exact.copy()
    missed_small[0, 0, 2:5, 2:5, 2:5] = 1e-4
    missed_large = exact.copy()
    missed_large[0, 0, 16:19, 16:19, 16:19] = 1e-4
    halo = exact.copy()
    halo[0, 0, 5:7, 2:5, 2:5] = 0.9  # 18 false-positive voxels beside the small lesion
    blobs = np.concatenate([truth, np.stack([ids, near])[None]], axis=1)

    def plain(pred):
        return float(np.asarray(channelwise_dice_bce_loss(truth, pred))[0])

    def blob(pred):
        return float(np.asarray(blob_dice_bce_loss(blobs, pred))[0])

    assert np.isclose(plain(missed_small), plain(missed_large), atol=1e-3)
    assert blob(exact) - plain(exact) < 0.01
    assert blob(missed_small) - blob(missed_large) > 0.4  # half of the per-lesion mean
    assert blob(halo) - blob(exact) > 0.1

    import nibabel as nib

    labels = np.asarray(nib.load(str(LABELS_FILE)).dataobj)
    heads = make_heads("lesion-segmentation", [labels], None, pooled=True)
    pool = PatchPool(heads, tmp_path / "pool", 1, seed=4, patch=32)
    from bids_dl.training import data

    data._init_worker(pool)
    _, masks_plain = make_batch((4, 0, 2, 1))
    _, masks = make_batch((4, 0, 2, 1, 0.0, True))
    assert masks.shape[1] == masks_plain.shape[1] + 2
    assert np.array_equal(masks[:, :-2], masks_plain)
    assert np.array_equal((masks[:, -2] > 0), masks_plain[:, 0] > 0)

def test_time_limit_checkpoints_and_resumes(labels_dir, tmp_path):
    """--time-limit 0 stops after the first step with a checkpoint; a rerun resumes there."""
    from bids_dl.training import cli

    work = tmp_path / "work"
    args = ["brain-extraction", "--labels", str(labels_dir), "--work-dir", str(work),
            "--patch", "16", "--patch-steps", "3", "--steps", "0", "--filters", "2,4",
            "--no-evaluate", "--workers", "0", "--final-learning-rate", "2e-4"]
    assert cli.main([*args, "--time-limit", "0"]) == 0
    state = json.loads((work / "state.json").read_text())
    assert state["step"] == 1 and (work / "checkpoint.keras").is_file()
    assert state["recipe"]["final_learning_rate"] == 2e-4
    assert not (work / "brain_extraction.keras").exists()
    assert cli.main(args) == 0
    assert json.loads((work / "state.json").read_text())["step"] == 3
    assert (work / "brain_extraction.keras").is_file()


def test_fine_tune_card_carries_the_lineage(labels_dir, tmp_path):
    """A run started with --init-from a model of the same task writes a card that names the
    starting model by sha256 and carries its lineage (this run added), the lineage's total
    steps and its experimental status; a run from scratch starts a lineage of one."""
    from bids_dl.training import cli

    args = ["brain-extraction", "--labels", str(labels_dir), "--patch", "16", "--steps", "0",
            "--filters", "2,4", "--no-evaluate", "--workers", "0"]
    first, second = tmp_path / "first", tmp_path / "second"
    assert cli.main([*args, "--work-dir", str(first), "--patch-steps", "3"]) == 0
    parent = json.loads((first / "brain_extraction.json").read_text())
    assert parent["steps_with_lineage"] == 3 and len(parent["lineage"]) == 1
    assert "3 steps on 16^3 patches" in parent["lineage"][0]
    parent["experimental"], parent["experimental_reason"] = True, "a test"
    (first / "brain_extraction.json").write_text(json.dumps(parent))
    assert cli.main([*args, "--work-dir", str(second), "--patch-steps", "2", "--seed", "4",
                     "--init-from", str(first / "brain_extraction.keras"),
                     "--init-output"]) == 0
    card = json.loads((second / "brain_extraction.json").read_text())
    assert card["recipe"]["init_from"].startswith("brain_extraction.keras ")
    assert parent["sha256"] in card["recipe"]["init_from"]
    assert card["lineage"][:1] == parent["lineage"] and len(card["lineage"]) == 2
    assert "2 steps" in card["lineage"][1] and "seed 4" in card["lineage"][1]
    assert "--init-output" in card["lineage"][1]
    assert card["steps"] == 2 and card["steps_with_lineage"] == 5
    assert card["experimental"] is True and card["experimental_reason"] == "a test"


def test_synthesis_training_and_evaluation(labels_dir, synthesis_model_dir):
    """Two steps of the synthesis recipe by the real command (tiny U-Net, see conftest): a
    channels-last model with one input (T1w) and three outputs (FLAIR, T2w, CT, rendered
    from the tissue mixture by the fixed physics layer), its
    card with the held-out metrics; and the metrics themselves: a perfect synthesiser scores
    SSIM 1 and 0 HU error, copying the T1w does far worse."""
    import keras

    from bids_dl.synth.pairs import PairedHeads
    from bids_dl.training.data import load_label_maps
    from bids_dl.training.evaluate_synthesis import SEED_OFFSET, evaluate_pairs, psnr, ssim

    out = synthesis_model_dir
    model = keras.saving.load_model(out / "contrast_synthesis.keras", safe_mode=True)
    assert model.input_shape[-1] == 1 and model.output_shape[-1] == 3
    assert model.layers[-1].get_config()["activation"] == "linear"
    card = json.loads((out / "contrast_synthesis.json").read_text())
    assert card["steps"] == 2 and "softmax over the tissue classes" in card["architecture"]
    assert model.get_layer("render").trainable is False
    assert {"FLAIR_ssim_brain", "T2w_psnr_db_brain", "CT_mae_hu_head"} <= set(card["metrics"])

    maps, _ = load_label_maps(labels_dir, "heldout")
    truth = {}

    def perfect(source):
        sample = PairedHeads(maps).sample((SEED_OFFSET, 0), label_map=0, lesion_count=20)
        assert np.array_equal(sample.source, source)
        truth["sample"] = sample
        return sample.targets

    scores = evaluate_pairs(perfect, labels_dir, cases=1)
    assert scores["FLAIR_ssim_brain"] == pytest.approx(1.0)
    assert scores["CT_mae_hu_head"] == 0 and scores["FLAIR_lesion_to_wm_contrast"] > 1.2
    copied = evaluate_pairs(lambda source: np.repeat(source, 3, axis=0), labels_dir, cases=1)
    assert copied["FLAIR_ssim_brain"] < 0.9 and copied["CT_mae_hu_head"] > 100
    sample = truth["sample"]
    brain = sample.brain.astype(bool)
    noisy = sample.targets[1] + np.random.default_rng(0).normal(0, 0.1, brain.shape)
    assert 0.3 < ssim(noisy, sample.targets[1], brain, 2.0) < 0.99
    assert 10 < psnr(noisy, sample.targets[1], brain) < 40


def test_patch_pool(tmp_path):
    """A pool of pre-rendered lesion heads: rendered once (a second pool over the same folder
    renders nothing), patches a pure function of the seed, lesion-centred when asked,
    from a random pool entry."""
    import nibabel as nib

    from bids_dl.synth.demo import LABELS_FILE
    from bids_dl.synth.lesion_generator import LesionConfig, LesionHeads
    from bids_dl.training.pool import PatchPool

    labels = np.asarray(nib.load(str(LABELS_FILE)).dataobj)
    heads = LesionHeads([labels], LesionConfig(p_patch_on_lesion=1.0))
    pool = PatchPool(heads, tmp_path / "pool", 2, seed=3, patch=32)
    stamps = [pool.path(i).stat().st_mtime_ns for i in range(2)]
    again = PatchPool(heads, tmp_path / "pool", 2, seed=3, patch=32)
    assert [again.path(i).stat().st_mtime_ns for i in range(2)] == stamps
    first, second = pool.sample((3, 7, 0)), again.sample((3, 7, 0))
    assert first.image.dtype == np.float32 and first.image.shape == (2, 32, 32, 32)
    assert np.array_equal(first.image, second.image) and np.array_equal(first.mask, second.mask)
    assert isinstance(first.present, tuple) and all(isinstance(v, bool) for v in first.present)
    for step in range(12):  # every patch of a head with lesions is centred on a lesion
        index = int(np.random.default_rng((3, step, 0)).integers(2))
        if pool.entry(index).mask[0].any():
            assert pool.sample((3, step, 0)).mask[0].any()
    assert any(pool.entry(i).mask[0].any() for i in range(2))
    whole = pool.entry(0)
    assert whole.image.shape[1:] == heads.config.geometry.out_shape
    assert whole.image.dtype == np.float16  # the pool is kept small in memory


def test_pooled_lesion_heads_leave_out_per_patch(tmp_path):
    """Pooled lesion training: the pre-rendered heads keep FLAIR and T1w, and every patch
    draws its own inputs (FLAIR alone, T1w alone, both) at the configured rates; a kept
    contrast is the patch of the whole head unchanged, a left-out one all zeros."""
    import nibabel as nib

    from bids_dl.synth.demo import LABELS_FILE
    from bids_dl.synth.lesion_generator import crop_patch
    from bids_dl.training.pool import PatchPool
    from bids_dl.training.train import make_heads

    labels = np.asarray(nib.load(str(LABELS_FILE)).dataobj)
    heads = make_heads("lesion-segmentation", [labels], None, pooled=True)
    assert heads.config.leave_out_in_crop and heads.config.patch is None
    assert not make_heads("lesion-segmentation", [labels], 32).config.leave_out_in_crop
    pool = PatchPool(heads, tmp_path / "pool", 1, seed=4, patch=32)
    whole = pool.entry(0)
    assert whole.present == (True, True) and whole.image.astype(bool).any(axis=(1, 2, 3)).all()
    drawn = []
    for step in range(120):
        sample = pool.sample((4, step, 0))
        rng = np.random.default_rng((4, step, 0))
        rng.integers(1)
        full = crop_patch(whole, 32, rng, heads.config.p_patch_on_lesion)
        present = heads.draw_inputs(rng)
        flip = rng.random() < 0.5
        assert sample.present == present
        for channel, kept in enumerate(present):
            expected = full.image[channel].astype(np.float32)
            expected = np.flip(expected, axis=0) if flip else expected
            if kept:
                assert np.array_equal(sample.image[channel], expected)
            else:
                assert not sample.image[channel].any()
        drawn.append(present)
    flair_alone = drawn.count((True, False)) / len(drawn)
    t1w_alone = drawn.count((False, True)) / len(drawn)
    assert abs(flair_alone - heads.config.p_flair_only) < 0.12
    assert abs(t1w_alone - heads.config.p_t1w_only) < 0.12
    assert drawn.count((True, True)) > 20


def test_input_rates_set_how_often_each_input_set_is_drawn():
    """--input-rates: the chances of FLAIR alone and T1w alone (the rest both) that pooled
    lesion patches draw, against the generator's 0.35 / 0.20; refused for other tasks and
    for rates that are not chances."""
    from bids_dl.training.train import make_heads

    labels = np.zeros((8, 8, 8), np.uint8)

    def shares(heads):
        rng = np.random.default_rng(0)
        draws = [heads.draw_inputs(rng) for _ in range(4000)]
        return {case: draws.count(case) / len(draws)
                for case in ((True, False), (False, True), (True, True))}

    default = shares(make_heads("lesion-segmentation", [labels], None, pooled=True))
    chosen = shares(make_heads("lesion-segmentation", [labels], None, pooled=True,
                               input_rates=(0.5, 0.1)))
    assert default[True, False] == pytest.approx(0.35, abs=0.03)
    assert chosen[True, False] == pytest.approx(0.5, abs=0.03)
    assert chosen[False, True] == pytest.approx(0.1, abs=0.02)
    assert chosen[True, True] == pytest.approx(0.4, abs=0.03)
    with pytest.raises(ValueError, match="lesion segmentation"):
        make_heads("contrast-synthesis", [labels], 32, input_rates=(0.5, 0.1))
    with pytest.raises(ValueError, match="at most 1"):
        make_heads("lesion-segmentation", [labels], None, input_rates=(0.8, 0.3))


def test_patch_pool_of_synthesis_pairs(tmp_path):
    """The pool serves paired synthesis samples too: the source and its three targets are
    cut and mirrored together (checked against the crop replayed from the seed)."""
    import nibabel as nib

    from bids_dl.synth.demo import LABELS_FILE
    from bids_dl.synth.pairs import PairedHeads, PairSample
    from bids_dl.training.pool import PatchPool

    labels = np.asarray(nib.load(str(LABELS_FILE)).dataobj)
    heads = PairedHeads([labels])
    pool = PatchPool(heads, tmp_path / "pool", 1, seed=5, patch=32)
    whole = pool.entry(0)
    assert isinstance(whole, PairSample) and whole.targets.dtype == np.float16
    assert whole.targets.shape == (3, *heads.config.geometry.out_shape)
    flips = set()
    for step in range(8):
        sample = pool.sample((5, step, 0))
        assert sample.source.shape == (1, 32, 32, 32) and sample.targets.shape == (3, 32, 32, 32)
        assert sample.source.dtype == sample.targets.dtype == np.float32
        rng = np.random.default_rng((5, step, 0))
        rng.integers(1)
        patch = heads.crop(whole, 32, rng)
        flip = rng.random() < 0.5
        flips.add(flip)
        mirror = (lambda a: np.flip(a, axis=-3)) if flip else (lambda a: a)
        for name in ("source", "targets", "brain", "head", "lesions", "labels",
                     "lesion_fraction"):
            assert np.array_equal(getattr(sample, name),
                                  mirror(getattr(patch, name)).astype(getattr(sample, name).dtype))
    assert flips == {True, False}


def test_lesion_grid_spacing_is_trained_recorded_and_used(labels_dir, train_head, demo_dir,
                                                           tmp_path, monkeypatch):
    """--grid-spacing 1.2: samples on a 1.2 mm grid of the same field of view (144 x 160 x
    144 voxels), the card records it, inference runs the model on it (outputs on the
    FLAIR's grid), and such a model cannot become the 1.5 mm synthesis net's lesion
    branch."""
    import nibabel as nib
    from conftest import _tiny_model_dir

    from bids_dl.models import registry
    from bids_dl.models.grid import LESION_SHAPE, lesion_grid_shape
    from bids_dl.models.lesion_segmentation import card_grid_spacing, segment_lesions
    from bids_dl.training.train import initialise_lesion_branch, make_heads

    assert lesion_grid_shape(1.5) == LESION_SHAPE == (112, 128, 112)
    assert lesion_grid_shape(1.0) == (168, 192, 168)
    with pytest.raises(ValueError, match="outside"):
        lesion_grid_shape(0.1)
    sample = make_heads("lesion-segmentation", [train_head], None, grid_spacing=1.2).sample(3)
    assert sample.image.shape[-3:] == (144, 160, 144)
    assert np.allclose(np.diag(sample.affine)[:3], 1.2)
    with pytest.raises(ValueError, match="lesion segmentation"):
        make_heads("contrast-synthesis", [train_head], 32, grid_spacing=1.2)

    models = _tiny_model_dir("lesion-segmentation", labels_dir, tmp_path, "--steps", "0",
                             "--no-evaluate", "--patch", "32", "--grid-spacing", "1.2")
    card = json.loads((models / "lesion_segmentation.json").read_text())
    assert card["input"]["spacing_mm"] == 1.2 and card["input"]["grid_shape"] == [144, 160, 144]
    assert card["recipe"]["grid_spacing"] == 1.2 and card_grid_spacing(card) == 1.2
    assert card_grid_spacing({}) == 1.5  # cards from before the option: the 1.5 mm grid

    flair = demo_dir / "sub-02/ses-2/anat/sub-02_ses-2_FLAIR.nii.gz"
    monkeypatch.setenv("BIDS_DL_MODEL_DIR", str(models))
    registry.load_model.cache_clear()
    try:
        result = segment_lesions(flair, None, device="cpu")
    finally:
        monkeypatch.delenv("BIDS_DL_MODEL_DIR")
        registry.load_model.cache_clear()
    assert result.model["grid_spacing_mm"] == 1.2 and result.model["sha256"] == card["sha256"]
    assert result.mask.shape == nib.load(str(flair)).shape
    with pytest.raises(ValueError, match="1.2 mm grid cannot be the lesion branch"):
        initialise_lesion_branch(None, models / "lesion_segmentation.keras")


def test_pooled_lesion_heads_read_the_synthetic_flair(tmp_path):
    """--synthetic-flair: each pooled lesion head gets a synthesis model's FLAIR of its own
    T1w (normalised inside the brain, stored once: a second pass changes nothing), and a
    FLAIR + T1w patch reads it as its FLAIR at the configured chance (1: always), while
    FLAIR-alone patches keep the rendered FLAIR and every T1w is unchanged; with
    --blob-flair-only the per-lesion loss scores only the patches with an acquired FLAIR;
    off (0), the patches are those of a pool without it."""
    import nibabel as nib

    from bids_dl.models.unet import build_unet
    from bids_dl.synth.demo import LABELS_FILE
    from bids_dl.synth.lesion_generator import crop_patch
    from bids_dl.training.pool import PatchPool
    from bids_dl.training.synthetic_inputs import add_synthetic_flairs, synthetic_flair
    from bids_dl.training.train import make_heads

    labels = np.asarray(nib.load(str(LABELS_FILE)).dataobj)
    with pytest.raises(ValueError, match="pooled"):
        make_heads("lesion-segmentation", [labels], 32, synthetic_flair=0.5)
    plain = PatchPool(make_heads("lesion-segmentation", [labels], None, pooled=True),
                      tmp_path / "plain", 1, seed=6, patch=32)
    heads = make_heads("lesion-segmentation", [labels], None, pooled=True, synthetic_flair=1.0)
    folder = tmp_path / "pool"
    PatchPool(heads, folder, 1, seed=6, patch=32)
    model = build_unet(filters=(4, 8), in_channels=1, out_channels=3,
                       final_activation="linear")
    assert add_synthetic_flairs(folder, model) == 1
    assert add_synthetic_flairs(folder, model) == 0
    pool = PatchPool(heads, folder, 1, seed=6, patch=32)
    whole = pool.entry(0)
    assert whole.synthetic_flair.dtype == np.float16
    expected = synthetic_flair(model, whole.image[1].astype(np.float32), whole.brain > 0)
    assert np.allclose(whole.synthetic_flair, expected, atol=2e-3)
    inside = whole.brain > 0
    assert np.percentile(whole.synthetic_flair[inside], 99) == pytest.approx(1.0, abs=0.01)
    assert not np.allclose(whole.synthetic_flair, whole.image[0], atol=0.05)
    cases = set()
    for step in range(40):
        sample = pool.sample((6, step, 0))
        assert sample.synthetic_flair is None
        rng = np.random.default_rng((6, step, 0))
        rng.integers(1)
        full = crop_patch(whole, 32, rng, heads.config.p_patch_on_lesion)
        present = heads.draw_inputs(rng)
        if all(present):
            rng.random()
        flip = rng.random() < 0.5
        mirror = (lambda a: np.flip(a, axis=0)) if flip else (lambda a: a)
        cases.add(present)
        if present[1]:
            assert np.array_equal(sample.image[1], mirror(full.image[1].astype(np.float32)))
        if present == (True, True):
            assert np.array_equal(sample.image[0],
                                  mirror(full.synthetic_flair.astype(np.float32)))
        elif present[0]:
            assert np.array_equal(sample.image[0], mirror(full.image[0].astype(np.float32)))
    assert {(True, True), (True, False)} <= cases
    # --blob-flair-only: the per-lesion term's channels are zeros in the patches without an
    # acquired FLAIR (the synthetic FLAIR + T1w ones here, and T1w alone), kept elsewhere
    from bids_dl.training import data

    data._init_worker(pool)
    scored = {True: 0, False: 0}
    for step in range(12):
        samples = [pool.sample((6, step, i)) for i in range(2)]
        _, masks = data.make_batch((6, step, 2, 1, 0.0, True, True))
        _, unfiltered = data.make_batch((6, step, 2, 1, 0.0, True, False))
        for sample, mask, full in zip(samples, masks, unfiltered):
            acquired = data.has_acquired_flair(sample)
            assert acquired == (sample.present == (True, False))
            assert sample.flair_is_synthetic == (sample.present == (True, True))
            if acquired:
                assert np.array_equal(mask[-2:], full[-2:])
            else:
                assert not mask[-2:].any()
            scored[acquired] += int(full[-2].any())
    assert scored[True] and scored[False]  # lesions in patches of both kinds
    heads.config.p_synthetic_flair = 0.0
    for step in range(10):
        ours, theirs = pool.sample((6, step, 0)), plain.sample((6, step, 0))
        assert np.array_equal(ours.image, theirs.image)
        assert not ours.flair_is_synthetic


def test_synthetic_flair_option_needs_a_pool(labels_dir, tmp_path):
    """bids-dl-train lesion-segmentation --synthetic-flair without --pool (or outside 0-1),
    --blob-flair-only without --blob-loss and input rates that do not make chances, are
    refused before anything is trained."""
    from bids_dl.training.cli import main

    base = ["lesion-segmentation", "--labels", str(labels_dir), "--work-dir",
            str(tmp_path / "run"), "--patch-steps", "1", "--steps", "0"]
    with pytest.raises(SystemExit, match="--pool"):
        main([*base, "--synthetic-flair", "0.3"])
    with pytest.raises(SystemExit, match="--pool"):
        main([*base, "--synthetic-flair", "1.5", "--pool", "2"])
    with pytest.raises(SystemExit, match="--blob-loss"):
        main([*base, "--blob-flair-only", "--pool", "2"])
    with pytest.raises(SystemExit, match="--blob-loss"):
        main([*base, "--blob-thin-flair-only", "--pool", "2"])
    with pytest.raises(SystemExit, match="--input-rates"):
        main([*base, "--input-rates", "0.7", "0.4"])
    assert not (tmp_path / "run").exists()


def test_blob_loss_on_thin_flairs_only(tmp_path):
    """A lesion sample records whether its FLAIR was rendered with thick slices: flagged,
    it is the rendering that thick slices would give (p_thick_flair 1), unflagged the one
    without (0), from the same seed; the flag survives the pool and the patch. With
    --blob-thin-flair-only the per-lesion loss's channels are zeros in patches whose FLAIR
    is thick-sliced (as in those without an acquired FLAIR) and kept in the others."""
    import nibabel as nib

    from bids_dl.synth.demo import LABELS_FILE
    from bids_dl.synth.lesion_generator import LesionConfig, LesionHeads, lesion_geometry
    from bids_dl.training import data
    from bids_dl.training.pool import PatchPool

    labels = np.asarray(nib.load(str(LABELS_FILE)).dataobj)

    heads = LesionHeads([labels])  # one generator: its lesion anatomy is made once
    coarse = lesion_geometry(LesionConfig().geometry, 3.0)  # 56 x 64 x 56: fast

    def render(p_thick: float, seed: int):
        heads.config = LesionConfig(geometry=coarse, p_thick_flair=p_thick)
        return heads.sample(seed, present=(True, True))

    flags = []
    for seed in range(4):
        sample = render(0.5, seed)
        flags.append(sample.flair_thick)
        forced, other = (1.0, 0.0) if sample.flair_thick else (0.0, 1.0)
        assert np.array_equal(sample.image, render(forced, seed).image)
        assert not np.allclose(sample.image[0], render(other, seed).image[0])
    assert set(flags) == {True, False}, flags

    heads.config = LesionConfig(geometry=coarse, p_thick_flair=0.5, leave_out_in_crop=True)
    pool = PatchPool(heads, tmp_path / "pool", 4, seed=4, patch=24)  # 2 thick, 2 thin
    thick = {bool(pool.entry(i).flair_thick) for i in range(4)}
    data._init_worker(pool)
    seen = {"thin": 0, "thick": 0, "none": 0}
    for step in range(30):
        samples = [pool.sample((4, step, i)) for i in range(2)]
        _, masks = data.make_batch((4, step, 2, 1, 0.0, True, True, True))
        _, unfiltered = data.make_batch((4, step, 2, 1, 0.0, True, False, False))
        for sample, mask, full in zip(samples, masks, unfiltered):
            kind = ("none" if not data.has_acquired_flair(sample)
                    else "thick" if sample.flair_thick else "thin")
            assert data.has_thin_flair(sample) == (kind == "thin")
            if kind == "thin":
                assert np.array_equal(mask[-2:], full[-2:])
            else:
                assert not mask[-2:].any()
            seen[kind] += int(full[-2].any())
    assert thick == {True, False} and all(seen.values()), (thick, seen)
