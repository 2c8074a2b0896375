"""Train a bids-dl model (brain extraction, lesions, synthesis) from synthetic heads
(resumable).

Two phases: ``patch_steps`` steps on cubic patches (cheap, many samples), then ``steps`` on
the whole model grid (so the group-normalisation statistics match inference). Every batch is
a pure function of ``(seed, step)``, so a resumed run sees the data an unbroken run would.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..synth.generator import SyntheticHeads
from .data import BatchStream, load_label_maps, patch_config


@dataclass
class Recipe:
    """Everything that defines a training run (stored in the model card)."""

    task: str = "brain-extraction"
    filters: tuple[int, ...] = (8, 16, 32, 64)
    groups: int = 4
    dropout: float = 0.1
    patch: int = 64
    patch_steps: int = 900
    steps: int = 1100
    batch_size: int = 1
    patches_per_head: int = 1  # patches cut from one rendered head (lesion generator)
    pool: int = 0  # > 0: cut the patches from this many pre-rendered heads (few CPU cores)
    learning_rate: float = 1e-3
    final_learning_rate: float = 5e-5
    seed: int = 0
    loss: str = "soft Dice + binary cross-entropy"
    optimizer: str = "Adam"
    activation: str = "relu"  # of the U-Net blocks (leaky_relu: no dying units)
    output_bias: float = 0.0  # initial bias of the output layer
    init_from: str | None = None  # a .keras whose weights start the run (output layer fresh)
    init_output: bool = False  # also copy init_from's output layer (fine-tuning one task)
    #: With init_from: the input channel of its first convolution to keep (a model with more
    #: inputs starting a one-input model, e.g. 1: the lesion model's T1w)
    init_input_channel: int | None = None
    #: Chance that a patch is centred on a lesion voxel (None: the generator's default)
    patch_on_lesion: float | None = None
    #: Contrast synthesis: a lesion-segmentation .keras whose T1w path becomes the net's
    #: frozen lesion branch (:mod:`bids_dl.models.synthesis_net`); None: no branch
    lesion_branch_from: str | None = None
    #: Lesion segmentation: > 0 weighs the cross-entropy of each small lesion's voxels by
    #: (SMALL_LESION_REFERENCE / its voxels)^0.5, capped at this value (0: every voxel 1)
    small_lesion_weight: float = 0.0
    #: Lesion segmentation: add the per-lesion Dice term of
    #: :func:`~bids_dl.training.losses.blob_dice_bce_loss` (every lesion counts alike)
    blob_loss: bool = False
    #: With ``blob_loss``: score the per-lesion term only in patches with an acquired FLAIR
    #: (small lesions that a T1w alone, or a FLAIR synthesised from it, cannot show are not
    #: asked for there; the pooled Dice and cross-entropy still apply)
    blob_flair_only: bool = False
    #: ... and only in patches whose FLAIR has no thick slices (where lesions of a few voxels
    #: show; half the rendered FLAIRs have 3-7 mm slices)
    blob_thin_flair_only: bool = False
    #: Lesion segmentation, pooled: chance that a FLAIR + T1w patch reads the shipped
    #: synthesis model's FLAIR of the head's T1w instead of its FLAIR
    #: (:mod:`bids_dl.training.synthetic_inputs`; 0: never)
    synthetic_flair: float = 0.0
    synthetic_flair_model: str | None = None  # its sha256 (the shipped one at training time)
    #: Lesion segmentation: chances that a sample keeps the FLAIR alone and the T1w alone
    #: (the rest keep both); None: the generator's (0.35, 0.20)
    input_rates: tuple[float, float] | None = None
    #: Lesion segmentation: the model grid's spacing in mm (None: the default 1.5 mm,
    #: :data:`bids_dl.models.grid.LESION_SPACING`); the card records it and inference uses it
    grid_spacing: float | None = None
    #: Contrast synthesis: > 0 adds this weight x the least-squares adversarial loss of a
    #: conditional 3D PatchGAN (:mod:`bids_dl.training.adversarial`); 0: off
    adversarial_weight: float = 0.0
    #: With ``adversarial_weight``: the discriminator's learning rate (it decays in
    #: proportion to the net's)
    discriminator_learning_rate: float = 2e-4
    #: Contrast synthesis: a learned additive correction of the rendered images
    #: (``build_synthesis_net(residual=True)``), zero at the start
    residual: bool = False
    label_maps: list[str] = field(default_factory=list)

    @property
    def total_steps(self) -> int:
        return self.patch_steps + self.steps

    def learning_rate_at(self, step: int) -> float:
        """Constant during the patch phase, then linear decay to ``final_learning_rate``;
        a patches-only recipe (``steps == 0``) decays linearly over the patch phase."""
        if self.steps == 0:
            fraction = min(step / max(self.patch_steps, 1), 1.0)
            return self.learning_rate + fraction * (self.final_learning_rate - self.learning_rate)
        if step < self.patch_steps:
            return self.learning_rate
        fraction = (step - self.patch_steps) / max(self.steps, 1)
        start = self.learning_rate / 2
        return start + fraction * (self.final_learning_rate - start)


#: Input and output channels of each task's model (lesion segmentation: FLAIR and T1w in;
#: lesions, ventricles, cortex, infratentorial brain out).
IN_CHANNELS = {"brain-extraction": 1, "lesion-segmentation": 2, "contrast-synthesis": 1}
OUT_CHANNELS = {"brain-extraction": 1, "lesion-segmentation": 4, "contrast-synthesis": 3}
#: Output activation per task (contrast synthesis: FLAIR, T2w, CT intensities, unbounded).
FINAL_ACTIVATION = {"brain-extraction": "sigmoid", "lesion-segmentation": "sigmoid",
                    "contrast-synthesis": "linear"}


def architecture(recipe: Recipe) -> dict:
    """:func:`bids_dl.models.unet.build_unet` arguments of ``recipe``'s model."""
    return {"filters": recipe.filters, "groups": recipe.groups, "dropout": recipe.dropout,
            "in_channels": IN_CHANNELS[recipe.task], "out_channels": OUT_CHANNELS[recipe.task],
            "final_activation": FINAL_ACTIVATION[recipe.task], "activation": recipe.activation,
            "output_bias": recipe.output_bias}


def _synthesis_architecture(recipe: Recipe) -> dict:
    return {"filters": recipe.filters, "groups": recipe.groups, "dropout": recipe.dropout,
            "activation": recipe.activation,
            "lesion_branch": bool(recipe.lesion_branch_from), "residual": recipe.residual}


def _build(recipe: Recipe, data_format: str):
    """The training model (contrast synthesis: the tissue-mixture net with its tissue
    output, :mod:`bids_dl.models.synthesis_net`; else a U-Net)."""
    if recipe.task == "contrast-synthesis":
        from ..models.synthesis_net import build_synthesis_net

        return build_synthesis_net(data_format=data_format, training=True,
                                   **_synthesis_architecture(recipe))
    from ..models.unet import build_unet

    return build_unet(data_format=data_format, **architecture(recipe))


def _shipped(model, recipe: Recipe):
    """The channels-last inference copy of a trained model."""
    if recipe.task == "contrast-synthesis":
        from ..models.synthesis_net import to_inference

        return to_inference(model, **_synthesis_architecture(recipe))
    from ..models.unet import to_channels_last

    return to_channels_last(model, **architecture(recipe))


def initialise_from(model, path: Path, include_output: bool = False,
                    input_channel: int | None = None) -> int:
    """Copy the weights of the ``.keras`` at ``path`` into ``model``, layer by layer by name,
    except the output layer unless ``include_output`` (else kept fresh: a restarted head)
    and fixed (non-trainable) layers; returns the layers copied. ``input_channel``: keep
    only this input channel of the first convolution (``down0_conv1``). The block
    activations may differ (e.g. a ReLU run continued with leaky ReLUs). Training models
    are channels-first, shipped ones channels-last: the convolution kernels are the same
    arrays either way. A synthesis net's residual correction missing from the source keeps
    its initial weights (zero correction)."""
    import keras

    from ..models.synthesis_net import RESIDUAL_LAYERS

    source = keras.saving.load_model(path, compile=False, safe_mode=True)
    names = {layer.name for layer in source.layers}
    own = {layer.name for layer in model.layers}
    if any(name in names and name not in own for name in RESIDUAL_LAYERS):
        raise ValueError(f"{path} has a residual correction that the recipe's model lacks "
                         "(train with --residual)")
    targets = [layer for layer in model.layers
               if layer.trainable and (include_output or layer.name != "output")
               and (layer.name in names or layer.name not in RESIDUAL_LAYERS)]
    return _copy_weights(targets, source, path, input_channel, "the recipe's model")


def _copy_weights(targets: list, source, path: Path, input_channel: int | None,
                  what: str) -> int:
    """Set each of ``targets`` (layers) that has weights to ``source``'s layer of the same
    name (``input_channel``: only that input channel of ``down0_conv1``); returns the
    layers set. Raises ValueError (naming ``path`` and ``what``) on a shape mismatch."""
    copied = 0
    for layer in targets:
        if not layer.weights:
            continue
        weights = source.get_layer(layer.name).get_weights()
        if input_channel is not None and layer.name == "down0_conv1":
            weights = [weights[0][..., input_channel:input_channel + 1, :], *weights[1:]]
        if [w.shape for w in weights] != [tuple(w.shape) for w in layer.weights]:
            raise ValueError(f"{path}: layer {layer.name} does not match {what}")
        layer.set_weights(weights)
        copied += 1
    return copied


def initialise_lesion_branch(model, path: Path, input_channel: int = 1) -> int:
    """Copy the lesion model at ``path`` into ``model``'s frozen ``lesion_branch``, keeping
    only ``input_channel`` of its first convolution (1: the T1w; a left-out contrast is a
    channel of zeros for the lesion model, so the branch computes its T1w-alone output);
    returns the layers copied. A lesion model of another grid than the synthesis net's
    (its card's ``input.spacing_mm``) is refused."""
    import keras

    from ..models.grid import LESION_SPACING
    from ..models.lesion_segmentation import card_grid_spacing

    card_path = path.with_suffix(".json")
    spacing = card_grid_spacing(json.loads(card_path.read_text()) if card_path.is_file() else {})
    if abs(spacing - LESION_SPACING) > 1e-6:
        raise ValueError(f"{path}: a lesion model of a {spacing:g} mm grid cannot be the "
                         f"lesion branch of the synthesis net ({LESION_SPACING:g} mm grid)")
    source = keras.saving.load_model(path, compile=False, safe_mode=True)
    return _copy_weights(model.get_layer("lesion_branch").layers, source, path,
                         input_channel, "the lesion branch")


def checked_input_rates(input_rates) -> tuple[float, float]:
    """``(P_FLAIR, P_T1W)``, the chances of FLAIR alone and T1w alone, as floats; raises
    ValueError unless both are at least 0 and their sum is at most 1."""
    flair_only, t1w_only = (float(rate) for rate in input_rates)
    if min(flair_only, t1w_only) < 0 or flair_only + t1w_only > 1:
        raise ValueError(f"--input-rates {flair_only:g} {t1w_only:g}: two chances of at "
                         "least 0 whose sum is at most 1")
    return flair_only, t1w_only


def make_heads(task: str, maps: list, patch: int | None, pooled: bool = False,
               patch_on_lesion: float | None = None, grid_spacing: float | None = None,
               synthetic_flair: float = 0.0,
               input_rates: tuple[float, float] | None = None):
    """The sample generator of ``task`` (``patch``: cubic patches; None: whole grid;
    ``pooled``: whole heads for a :class:`~bids_dl.training.pool.PatchPool`;
    ``patch_on_lesion``: the chance of a lesion-centred patch, None: the generator's;
    ``grid_spacing``: lesion segmentation's grid spacing in mm, None: the default;
    ``synthetic_flair``: pooled lesion heads, the chance a FLAIR + T1w patch reads the
    synthetic FLAIR; ``input_rates``: lesion segmentation's chances of FLAIR alone and T1w
    alone, None: the generator's)."""
    on_lesion = {} if patch_on_lesion is None else {"p_patch_on_lesion": patch_on_lesion}
    if synthetic_flair and not (task == "lesion-segmentation" and pooled):
        raise ValueError("--synthetic-flair is for pooled lesion segmentation (--pool N)")
    rates = {}
    if input_rates is not None:
        if task != "lesion-segmentation":
            raise ValueError(f"--input-rates is for lesion segmentation, not {task}")
        flair_only, t1w_only = checked_input_rates(input_rates)
        rates = {"p_flair_only": flair_only, "p_t1w_only": t1w_only}
    if task == "lesion-segmentation":
        from ..synth.lesion_generator import LesionConfig, LesionHeads, lesion_geometry

        config = LesionConfig(patch=patch, leave_out_in_crop=pooled,
                              p_synthetic_flair=synthetic_flair, **on_lesion, **rates)
        if grid_spacing is not None:
            config = replace(config, geometry=lesion_geometry(config.geometry, grid_spacing))
        return LesionHeads(maps, config)
    if grid_spacing is not None:
        raise ValueError(f"--grid-spacing is for lesion segmentation, not {task}")
    if task == "contrast-synthesis":
        from ..synth.pairs import PairConfig, PairedHeads

        return PairedHeads(maps, PairConfig(patch=patch, **on_lesion))
    return SyntheticHeads(maps, patch_config(patch))


def train(recipe: Recipe, labels_dir: Path, work_dir: Path, workers: int = 1,
          checkpoint_every: int = 100, verbose: int = 1, stop_after: int | None = None,
          time_limit: float | None = None) -> Path | None:
    """Run (or resume) training in ``work_dir``; returns the path of the final
    channels-last, uncompiled ``.keras`` model, or None when ``stop_after`` (a step count)
    or ``time_limit`` (seconds of this call, e.g. a job's wall-time limit) ended the run
    early: it checkpoints first; run again to resume. Training is channels-first (fast on the
    PyTorch backend); :func:`bids_dl.models.unet.to_channels_last` converts at the end."""
    import keras

    from . import losses  # noqa: F401  (registers the loss for checkpoint loading)

    called = time.time()
    work_dir.mkdir(parents=True, exist_ok=True)
    state_path, checkpoint = work_dir / "state.json", work_dir / "checkpoint.keras"
    maps, names = load_label_maps(labels_dir, "train")
    recipe.label_maps = names
    start, history, discriminator_history = 0, [], []
    adversarial, adversary = recipe.adversarial_weight > 0, None
    if adversarial:
        if recipe.task != "contrast-synthesis":
            raise ValueError(f"--adversarial is for contrast synthesis, not {recipe.task}")
        from .adversarial import AdversarialTraining
    keras.utils.set_random_seed(recipe.seed)
    if state_path.exists() and checkpoint.exists():
        state = json.loads(state_path.read_text())
        stored = {**_jsonable(Recipe()), **state["recipe"]}  # fields added since: defaults
        if _without_lengths(stored) != _without_lengths(_jsonable(recipe)):
            raise ValueError(f"{work_dir}: holds a run with another recipe; use a new work dir")
        if state["step"] > recipe.patch_steps and stored["patch_steps"] != (
                recipe.patch_steps):
            raise ValueError(f"{work_dir}: the patch phase is over; --patch-steps cannot change")
        if adversarial:
            adversary = AdversarialTraining.resume(
                checkpoint, recipe.adversarial_weight, recipe.learning_rate,
                recipe.discriminator_learning_rate)
            model = adversary.generator
        else:
            model = keras.models.load_model(checkpoint, compile=True)
        start, history = state["step"], state["history"]
        discriminator_history = state.get("discriminator_history", [])
        print(f"resuming at step {start} of {recipe.total_steps}", flush=True)
    else:
        model = _build(recipe, "channels_first")
        if recipe.init_from:
            copied = initialise_from(model, Path(recipe.init_from), recipe.init_output,
                                     recipe.init_input_channel)
            print(f"initialised {copied} layers from {recipe.init_from}", flush=True)
        if recipe.lesion_branch_from:
            copied = initialise_lesion_branch(model, Path(recipe.lesion_branch_from))
            print(f"lesion branch: {copied} layers from {recipe.lesion_branch_from}",
                  flush=True)
        loss = losses.blob_dice_bce_loss if recipe.blob_loss else losses.LOSSES[recipe.task]
        if adversarial:
            from ..models.discriminator import build_patch_discriminator

            adversary = AdversarialTraining(
                model, build_patch_discriminator(), recipe.adversarial_weight,
                recipe.learning_rate, recipe.discriminator_learning_rate, loss)
        else:
            model.compile(optimizer=keras.optimizers.Adam(recipe.learning_rate), loss=loss)
    progress = keras.utils.Progbar(recipe.total_steps, verbose=verbose,
                                   stateful_metrics=["lr", "phase"])
    progress.update(start)
    for phase_start, phase_stop, patch in ((0, recipe.patch_steps, recipe.patch),
                                           (recipe.patch_steps, recipe.total_steps, None)):
        if start >= phase_stop:
            continue
        pooled = bool(recipe.pool and patch)
        heads = make_heads(recipe.task, maps, None if pooled else patch, pooled,
                           recipe.patch_on_lesion, recipe.grid_spacing,
                           recipe.synthetic_flair if pooled else 0.0, recipe.input_rates)
        if pooled:
            if recipe.task == "brain-extraction":
                raise ValueError("--pool: brain extraction trains from fresh heads")
            from .pool import PatchPool

            heads = PatchPool(heads, work_dir / "pool", recipe.pool, recipe.seed, patch,
                              workers=max(workers, 1))
            if recipe.synthetic_flair:
                from .synthetic_inputs import add_synthetic_flairs

                add_synthetic_flairs(heads.folder)
        stream = BatchStream(heads, recipe.seed, max(start, phase_start), phase_stop,
                             recipe.batch_size, workers,
                             patches_per_head=recipe.patches_per_head if patch and not pooled
                             else 1, small_lesion_weight=recipe.small_lesion_weight,
                             blob_loss=recipe.blob_loss,
                             blob_flair_only=recipe.blob_flair_only,
                             blob_thin_flair_only=recipe.blob_thin_flair_only)
        tic = time.time()
        for step, (images, masks) in enumerate(stream, start=max(start, phase_start)):
            rate = recipe.learning_rate_at(step)
            if adversary is not None:  # (it sets both of its models' learning rates)
                loss, adversarial_losses = adversary.step(images, masks, rate)
                discriminator_history.append(adversarial_losses)
            else:
                model.optimizer.learning_rate.assign(rate)
                loss = float(np.asarray(model.train_on_batch(images, masks)))
            history.append(loss)
            progress.update(step + 1, [("loss", loss), ("lr", rate),
                                       ("phase", 1 if patch else 2)])
            stopping = (stop_after is not None and step + 1 >= stop_after) or (
                time_limit is not None and time.time() - called >= time_limit)
            if (step + 1) % checkpoint_every == 0 or step + 1 == recipe.total_steps or stopping:
                _checkpoint(adversary or model, checkpoint, state_path, recipe, step + 1,
                            history, time.time() - tic, discriminator_history)
                tic = time.time()
            if stopping and step + 1 < recipe.total_steps:
                return None
    if not state_path.exists():  # a run of 0 steps (e.g. only a lesion branch added)
        _checkpoint(adversary or model, checkpoint, state_path, recipe, start, history, 0.0,
                    discriminator_history)
    final = work_dir / "final.keras"
    _shipped(model, recipe).save(final)
    return final


def _without_lengths(recipe: dict) -> dict:
    """A recipe minus its phase lengths, which a resumed run may change (extend/shorten)."""
    return {k: v for k, v in recipe.items() if k not in ("steps", "patch_steps")}


def _jsonable(recipe: Recipe) -> dict:
    return json.loads(json.dumps(asdict(recipe)))


def _checkpoint(model, path: Path, state_path: Path, recipe: Recipe, step: int,
                history: list[float], seconds: float,
                discriminator_history: list | None = None) -> None:
    """Save ``model`` (a compiled Keras model, or an
    :class:`~bids_dl.training.adversarial.AdversarialTraining`) and the run's state."""
    from ..utils.io import atomic_path

    if hasattr(model, "combined"):
        model.save(path)
    else:
        with atomic_path(path) as tmp:
            model.save(tmp)
    state = {"step": step, "recipe": _jsonable(recipe), "history": history,
             "seconds_since_last_checkpoint": seconds}
    if discriminator_history:  # per step: the discriminator's loss, the net's adversarial
        state["discriminator_history"] = discriminator_history
    with atomic_path(state_path) as tmp:
        Path(tmp).write_text(json.dumps(state))
