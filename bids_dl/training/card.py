"""Model cards: what a shipped model is, how it was made and how well it does."""

from __future__ import annotations

import copy
import datetime
import json
import platform
import shutil
from dataclasses import asdict
from pathlib import Path

from .. import __version__
from ..models.grid import (
    LESION_SHAPE,
    LESION_SPACING,
    MODEL_SHAPE,
    MODEL_SPACING,
    lesion_grid_shape,
)
from ..models.registry import get_entry, sha256
from ..synth.lesion_generator import LesionConfig
from ..synth.lesions import LESION_CONTRAST_TEXT, P_CHOROID_PLEXUS
from ..utils.io import atomic_path
from .train import FINAL_ACTIVATION, Recipe

LABEL_SOURCES = {
    "mni152": "nilearn: mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a_converted.nii.gz + "
              "deepmriprep neuromorphometrics (deep GM, ventricles, cerebellum, brainstem)",
    "cat12": "deepmriprep: Template_4_GS.nii.gz (GM, WM) + neuromorphometrics",
    "neuromorphometrics": "deepmriprep: neuromorphometrics.nii.gz/.csv",
    "jhu189": "mricron-data: jhu189.nii.gz (held out: evaluation only)",
    "non-brain": "procedural (bids_dl.synth.head): CSF, dura, skull tables and diploe, scalp "
                 "fat, muscle, skin, eyes, orbital fat, face and neck tissue, air cavities",
}


CARD_IO = {
    "brain-extraction": {
        "input": {"grid_shape": list(MODEL_SHAPE), "spacing_mm": MODEL_SPACING,
                  "axes": "world R, A, S", "channels": ["any MR contrast"],
                  "normalisation": "0.5-99.5th percentile to 0-1"},
        "output": "probability of brain (brain tissue, ventricles, sulcal CSF)"},
    "lesion-segmentation": {
        "input": {"grid_shape": list(LESION_SHAPE), "spacing_mm": LESION_SPACING,
                  "axes": "world R, A, S, centred on the brain", "channels": ["FLAIR", "T1w"],
                  "missing_input": "one model for FLAIR + T1w, FLAIR alone and T1w alone: a "
                                   "missing contrast is a channel of zeros (as in training)",
                  "normalisation": "1st-99th percentile inside the brain mask to 0-1, "
                                   "clipped at 2"},
        "output": "probabilities of: white-matter lesions, ventricles, cortex, "
                  "infratentorial brain (the last three place each lesion)"},
    "contrast-synthesis": {
        "input": {"grid_shape": list(LESION_SHAPE), "spacing_mm": LESION_SPACING,
                  "axes": "world R, A, S, centred on the brain", "channels": ["T1w"],
                  "normalisation": "1st-99th percentile inside the brain mask to 0-1, "
                                   "clipped at 2"},
        "output": "FLAIR and T2w of the reference 3 T protocols relative to white matter "
                  "(= 1), CT in HU / 1000: the predicted tissue mixture rendered with each "
                  "tissue's reference signal (bids_dl.synth.physics.reference_signals)"},
}
ARCHITECTURES = {
    "contrast-synthesis": "3D U-Net, group normalisation, softmax over the tissue classes "
                          "(every label of the synthetic heads, then lesions), then a fixed "
                          "1x1x1 physics rendering layer (bids_dl.models.synthesis_net)",
}
#: Added to the architecture of a synthesis net with ``residual=True``
RESIDUAL_TEXT = (", plus a learned additive correction of the rendered images (residual: "
                 "a 3x3x3 and a 1x1x1 convolution on the U-Net's last features and the T1w)")


def evaluate_model(model_path: Path, labels_dir: Path) -> dict:
    """Held-out metrics of a ``.keras`` file through the shipped inference engine."""
    from ..models.brain_extraction import brain_probability
    from ..models.layers import load_keras_model
    from . import evaluate

    model = load_keras_model(model_path)

    def segment(image):
        return brain_probability(image, model) > 0.5

    metrics = {"synthetic_heldout_dice": evaluate.synthetic_heldout(segment, labels_dir)}
    try:
        metrics["colin27"] = evaluate.colin27(segment)
        metrics["colin27_robustness_dice_to_clean"] = evaluate.robustness(
            lambda image: brain_probability(image, model), evaluate.colin27_head())
    except FileNotFoundError as error:
        metrics["colin27"] = f"not measured: {error}"
    return metrics


def card_io(recipe: Recipe) -> dict:
    """The card's ``input`` and ``output`` of ``recipe``'s model (the lesion grid of its
    ``grid_spacing`` when set)."""
    io = copy.deepcopy(CARD_IO[recipe.task])
    if recipe.task == "lesion-segmentation" and recipe.grid_spacing is not None:
        io["input"]["grid_shape"] = list(lesion_grid_shape(recipe.grid_spacing))
        io["input"]["spacing_mm"] = float(recipe.grid_spacing)
    return io


def evaluate_lesion_model(model_path: Path, labels_dir: Path,
                          grid_spacing: float | None = None) -> dict:
    """Held-out lesion metrics of a ``.keras`` file through the shipped inference path
    (``grid_spacing``: the model's grid in mm, None: the default)."""
    import numpy as np

    from ..models.layers import load_keras_model
    from ..models.lesion_segmentation import segment_lesions
    from . import evaluate_lesions

    model = load_keras_model(model_path)

    def locate(flair, t1w):
        result = segment_lesions(flair, t1w, model=model, grid_spacing=grid_spacing)
        return np.asarray(result.mask.dataobj) > 0, result.lesions

    def segment(flair, t1w):
        return locate(flair, t1w)[0]

    return evaluate_lesions.evaluate_all(segment, labels_dir, locate=locate)


def evaluate_synthesis_model(model_path: Path, labels_dir: Path, cases: int = 3) -> dict:
    """Held-out synthesis metrics of a ``.keras`` file (tiles of the shipped engine)."""
    import numpy as np

    from ..models.engine import GridSpec, InferenceEngine
    from ..models.layers import load_keras_model
    from . import evaluate_synthesis

    model = load_keras_model(model_path)
    engine = InferenceEngine(model, GridSpec(LESION_SHAPE, LESION_SPACING))

    def synthesise(source: np.ndarray) -> np.ndarray:
        return np.moveaxis(engine.predict_tiled(np.moveaxis(source, 0, -1), 64), -1, 0)

    return evaluate_synthesis.evaluate_pairs(synthesise, labels_dir, cases)


_LESION_INPUTS = LesionConfig()
_LEFT_OUT = (f"FLAIR alone {_LESION_INPUTS.p_flair_only:.0%}, T1w alone "
             f"{_LESION_INPUTS.p_t1w_only:.0%} of the samples; pooled: drawn per patch")
_MIMICS = "".join(
    ("; lesion mimics: enlarged perivascular spaces (CSF-like tubes) in half of the heads"
     if _LESION_INPUTS.perivascular_spaces else "",
     f"; a choroid plexus (grey-matter-like, in the lateral ventricles) in "
     f"{P_CHOROID_PLEXUS:.0%} of the heads" if _LESION_INPUTS.choroid_plexus else ""))
GENERATORS = {
    "brain-extraction": "bids_dl.synth.generator.SyntheticHeads",
    "lesion-segmentation": "bids_dl.synth.lesion_generator.LesionHeads (lesions: "
                           "bids_dl.synth.lesions; periventricular, deep, confluent, "
                           "juxtacortical, infratentorial; 10 mm3-30 ml; 0-60 per head, 15 % "
                           "lesion-free; " + LESION_CONTRAST_TEXT + "; " + _LEFT_OUT
                           + _MIMICS + ")",
    "contrast-synthesis": "bids_dl.synth.pairs.PairedHeads (physics: bids_dl.synth.physics; "
                          "T1w by MPRAGE or SPGR at 1.5/3 T -> clean FLAIR and T2w of the "
                          "reference 3 T protocols and the reference CT of the same head, and "
                          "its tissue fractions; lesions in half of the heads)",
}
#: The held-out evaluation of a freshly trained model, per task: ``(model_path, labels_dir,
#: recipe) -> metrics`` (the recipe says what the card cannot yet, e.g. the lesion grid).
EVALUATORS = {
    "brain-extraction": lambda path, labels, recipe: evaluate_model(path, labels),
    "lesion-segmentation": lambda path, labels, recipe: evaluate_lesion_model(
        path, labels, recipe.grid_spacing),
    "contrast-synthesis": lambda path, labels, recipe: evaluate_synthesis_model(path, labels),
}


def label_map_builds(labels_dir: Path, names: list[str]) -> dict[str, dict]:
    """Builder version and cortex of each training label map, from the folder's manifest
    (the same file name can hold another map after a builder change)."""
    manifest_path = Path(labels_dir) / "manifest.json"
    maps = json.loads(manifest_path.read_text())["maps"] if manifest_path.exists() else {}
    return {name: {"version": maps.get(name, {}).get("version", 1),
                   "folded_cortex": maps.get(name, {}).get("folded_cortex", False)}
            for name in names}


def describe_run(recipe: Recipe, steps: int) -> str:
    """One line of a card's lineage: what ``steps`` steps of ``recipe`` were."""
    phases = []
    patch_steps = min(steps, recipe.patch_steps)
    if patch_steps:
        source = (f"pooled from {recipe.pool} pre-rendered heads" if recipe.pool
                  else "fresh heads")
        phases.append(f"{patch_steps:,} steps on {recipe.patch}^3 patches ({source})")
    if steps > recipe.patch_steps:
        phases.append(f"{steps - recipe.patch_steps:,} whole-grid steps (fresh heads)")
    start = ""
    if recipe.init_from:
        start = (" from that model (--init-from" + (" --init-output: every layer, the output "
                 "layer too" if recipe.init_output else ": every layer but the output layer")
                 + (f"; input channel {recipe.init_input_channel} of its first convolution"
                    if recipe.init_input_channel is not None else "") + ")")
    decay = f"decaying linearly to {recipe.final_learning_rate:g}"
    rate = (f"learning rate {recipe.learning_rate:g} {decay}" if not recipe.steps else
            f"learning rate {recipe.learning_rate / 2:g} {decay}" if not recipe.patch_steps else
            f"learning rate {recipe.learning_rate:g} on patches, then "
            f"{recipe.learning_rate / 2:g} {decay}")
    branch = (f"; lesion branch frozen from {Path(recipe.lesion_branch_from).name}"
              if recipe.lesion_branch_from else "")
    if recipe.adversarial_weight:
        branch += (f"; adversarial term x{recipe.adversarial_weight:g} (conditional 3D "
                   f"PatchGAN, learning rate {recipe.discriminator_learning_rate:g})")
    if not steps:
        return f"no training steps: the weights{start}{branch}"
    return (f"{' then '.join(phases)}{start}, batch {recipe.batch_size}, generator seed "
            f"{recipe.seed}, {rate}{branch}")


def inherited(recipe: Recipe, steps: int) -> dict:
    """Card fields carried from the card of ``recipe.init_from`` (the ``.json`` beside it,
    when it is a model of the same task): the starting model named by file, version and
    sha256, its lineage with this run added, the steps of the whole lineage and its
    experimental status. A run from scratch starts a lineage of one run."""
    run = describe_run(recipe, steps)
    if not recipe.init_from:
        return {"lineage": [run], "steps_with_lineage": steps}
    start = Path(recipe.init_from)
    card_path = start.with_suffix(".json")
    parent = json.loads(card_path.read_text()) if card_path.is_file() else {}
    if parent.get("name") != recipe.task:
        origin = (f"weights of {start.name} (the {parent['name']} model {parent.get('version')}, "
                  f"sha256 {parent.get('sha256')}, "
                  f"{parent.get('steps_with_lineage', parent.get('steps', 0)):,} steps in its "
                  "lineage)" if parent.get("name") else f"weights of {start.name}")
        return {"lineage": [origin, run]}
    fields = {"init_from": f"{start.name} {parent.get('version')} (sha256 "
                           f"{parent.get('sha256')}; see lineage)",
              "lineage": [*parent.get("lineage", []), run],
              "steps_with_lineage": parent.get("steps_with_lineage", parent.get("steps", 0))
              + steps}
    for key in ("experimental", "experimental_reason"):
        if key in parent:
            fields[key] = parent[key]
    return fields


LESION_BRANCH_TEXT = ("; lesions from a frozen lesion branch (the lesion model's T1w path, "
                      "gated by the mixture's parenchyma share) replace the mixture's lesion "
                      "class")


def lesion_branch_origin(recipe: Recipe) -> dict | None:
    """The lesion model frozen into a synthesis net (file, version, sha256 and steps from
    its card), or None without a branch."""
    if not recipe.lesion_branch_from:
        return None
    path = Path(recipe.lesion_branch_from)
    card_path = path.with_suffix(".json")
    parent = json.loads(card_path.read_text()) if card_path.is_file() else {}
    return {"file": path.name, "name": parent.get("name"), "version": parent.get("version"),
            "sha256": sha256(path),
            "steps_with_lineage": parent.get("steps_with_lineage", parent.get("steps")),
            "input_channel": "T1w (channel 1 of its first convolution)"}


def write_model(model_path: Path, out_dir: Path, recipe: Recipe, labels_dir: Path,
                work_dir: Path, evaluate: bool = True, wall_seconds: float | None = None,
                ) -> dict:
    """Copy the trained model into ``out_dir`` under its registry name and write its card."""
    import keras

    entry = get_entry(recipe.task)
    state = json.loads((work_dir / "state.json").read_text())
    history = state["history"]
    lineage = inherited(recipe, state["step"])  # before the copy: it may replace init_from
    recorded = json.loads(json.dumps(asdict(recipe)))
    recorded["init_from"] = lineage.pop("init_from", recorded["init_from"])
    branch = lesion_branch_origin(recipe)
    if branch:
        recorded["lesion_branch_from"] = (f"{branch['file']} {branch['version']} (sha256 "
                                          f"{branch['sha256']})")
        lineage["lesion_branch"] = branch
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / entry.weights
    with atomic_path(target) as tmp:
        shutil.copyfile(model_path, tmp)
    card = {
        "name": recipe.task,
        "version": __version__,
        "file": entry.weights,
        "sha256": sha256(target),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "architecture": ARCHITECTURES.get(
            recipe.task, f"3D U-Net, group normalisation, {FINAL_ACTIVATION[recipe.task]} "
                         "output (bids_dl.models.unet)") + (LESION_BRANCH_TEXT if branch else "")
        + (RESIDUAL_TEXT if recipe.residual else ""),
        **card_io(recipe),
        "recipe": recorded,
        "seed": recipe.seed,
        "steps": state["step"],
        "data": {"generator": GENERATORS[recipe.task],
                 "label_maps": recipe.label_maps,
                 "label_map_builds": label_map_builds(labels_dir, recipe.label_maps),
                 "label_sources": LABEL_SOURCES,
                 "never_used": "Colin27 (ch2, ch2bet, ch2better): held-out evaluation only"},
        "training": {"keras": keras.__version__, "backend": keras.backend.backend(),
                     "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
                     "wall_seconds": wall_seconds,
                     "final_loss_mean_last_100": sum(history[-100:]) / max(len(history[-100:]), 1)},
        "metrics": EVALUATORS[recipe.task](target, labels_dir, recipe) if evaluate else {},
        **lineage,
    }
    with atomic_path(out_dir / entry.card) as tmp:
        Path(tmp).write_text(json.dumps(card, indent=2) + "\n")
    return card
