"""``bids-dl-train``: train a bids-dl model from synthetic heads and write it with its card.

The run is resumable: run the same command again with the same ``--work-dir`` and it goes on
from the last checkpoint. Training runs on any Keras backend; set ``KERAS_BACKEND=torch``
for CPU training (about 4x faster than TensorFlow for 3D convolutions here) or on a GPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .data import SMALL_LESION_REFERENCE
from .train import Recipe, checked_input_rates

#: Recipe defaults that differ per task (lesions: 64³ patches of the 1.5 mm lesion grid
#: throughout; the model then runs on 64³ tiles, so that its normalisation statistics match).
TASK_DEFAULTS = {
    "brain-extraction": {},
    "lesion-segmentation": {"patch_steps": 5000, "steps": 0, "patch": 64, "batch_size": 2,
                            "patches_per_head": 2, "activation": "leaky_relu",
                            "output_bias": -3.0,
                            "loss": "channel-wise soft Dice (over the batch) + binary "
                                    "cross-entropy (lesion channel x2)"},
    "contrast-synthesis": {"patch_steps": 4000, "steps": 0, "patch": 64, "batch_size": 2,
                           "loss": "L1 + (1 - SSIM) of the rendered images (7^3 windows) + "
                                   "cross-entropy of the tissue mixture (lesion class x10) + "
                                   "soft Dice of the lesion class (over the batch)"},
}
TASK_HELP = {"brain-extraction": "train the brain-extraction U-Net (1 input: any contrast)",
             "lesion-segmentation": "train the lesion U-Net (2 inputs: FLAIR, T1w; either "
                                    "may be missing)",
             "contrast-synthesis": "train the synthesis net (T1w in; tissue mixture -> "
                                   "FLAIR, T2w, CT out)"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bids-dl-train", description=__doc__.split("\n")[0])
    tasks = parser.add_subparsers(dest="task", required=True, metavar="TASK")
    for task, overrides in TASK_DEFAULTS.items():
        defaults = Recipe(task=task, **overrides)
        sub = tasks.add_parser(task, help=TASK_HELP[task])
        sub.add_argument("--labels", type=Path, required=True,
                         help="folder written by bids-dl-build-labels")
        sub.add_argument("--work-dir", type=Path, required=True,
                         help="checkpoints and state (resume by running again)")
        sub.add_argument("--out-dir", type=Path, default=None,
                         help="where to write the final .keras and card "
                              "(default: the work dir; bids_dl/data/models to ship)")
        sub.add_argument("--patch-steps", type=int, default=defaults.patch_steps)
        sub.add_argument("--steps", type=int, default=defaults.steps,
                         help="whole-grid steps after the patch phase")
        sub.add_argument("--patch", type=int, default=defaults.patch)
        sub.add_argument("--batch-size", type=int, default=defaults.batch_size)
        sub.add_argument("--patches-per-head", type=int, default=defaults.patches_per_head,
                         help="patches cut from one rendered head (lesion segmentation)")
        sub.add_argument("--pool", type=int, default=defaults.pool, metavar="N",
                         help="render N whole heads once and cut every patch from them "
                              "(lesions or synthesis on few CPU cores; 0: a fresh head "
                              "per patch pair)")
        sub.add_argument("--filters", default=",".join(map(str, defaults.filters)))
        sub.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
        sub.add_argument("--seed", type=int, default=defaults.seed)
        sub.add_argument("--activation", default=defaults.activation,
                         choices=("relu", "leaky_relu"), help="of the U-Net blocks")
        sub.add_argument("--output-bias", type=float, default=defaults.output_bias,
                         help="initial bias of the output layer (a rare class's prior logit)")
        sub.add_argument("--init-from", type=Path, default=None, metavar="MODEL.keras",
                         help="start a new run from this model's weights (same filters; the "
                              "output layer starts fresh unless --init-output)")
        sub.add_argument("--init-output", action="store_true",
                         help="with --init-from: copy the output layer too (fine-tuning a "
                              "model of the same task)")
        sub.add_argument("--init-input-channel", type=int, default=None, metavar="C",
                         help="with --init-from: keep only input channel C of its first "
                              "convolution (e.g. 1: the lesion model's T1w channel)")
        sub.add_argument("--patch-on-lesion", type=float, default=defaults.patch_on_lesion,
                         metavar="P", help="chance that a patch is centred on a lesion "
                                           "(default: the generator's; lesion "
                                           "segmentation 0.7, synthesis 0)")
        if task == "lesion-segmentation":
            sub.add_argument("--small-lesion-weight", type=float, default=0.0, metavar="W",
                             help="weigh the cross-entropy of a small lesion's voxels by "
                                  f"({SMALL_LESION_REFERENCE} voxels / its size)^0.5, at most "
                                  "W (0: off)")
            sub.add_argument("--blob-loss", action="store_true",
                             help="add a per-lesion soft Dice term to the loss (each lesion "
                                  "counts alike, however small; Kofler et al.'s blob loss)")
            sub.add_argument("--blob-flair-only", action="store_true",
                             help="with --blob-loss: score the per-lesion term only in patches "
                                  "with an acquired FLAIR (not T1w alone or a synthetic FLAIR, "
                                  "where small lesions do not show)")
            sub.add_argument("--blob-thin-flair-only", action="store_true",
                             help="with --blob-loss: score the per-lesion term only in patches "
                                  "with an acquired FLAIR without thick slices (where lesions "
                                  "of a few voxels show)")
            sub.add_argument("--input-rates", type=float, nargs=2, default=None,
                             metavar=("P_FLAIR", "P_T1W"),
                             help="chances that a training sample keeps the FLAIR alone and "
                                  "the T1w alone (the rest keep both; default 0.35 0.20)")
            sub.add_argument("--synthetic-flair", type=float, default=0.0, metavar="P",
                             help="with --pool: a FLAIR + T1w patch reads the shipped "
                                  "synthesis model's FLAIR of the head's T1w at this chance "
                                  "(the input of --synthesize-missing; 0: never)")
            sub.add_argument("--grid-spacing", type=float, default=None, metavar="MM",
                             help="the model grid's spacing (default 1.5 mm; a finer grid resolves "
                                  "smaller lesions but has more voxels: 1.0 mm has 3.4x as "
                                  "many); the card records it and inference uses it")
        if task == "contrast-synthesis":
            sub.add_argument("--lesion-branch-from", type=Path, default=None,
                             metavar="LESION.keras",
                             help="freeze this lesion model's T1w path into the net as its "
                                  "lesion branch (lesions rendered where it sees them)")
            sub.add_argument("--residual", action="store_true",
                             help="add a learned additive correction of the rendered images "
                                  "(zero at the start; for what fixed per-tissue signals "
                                  "cannot follow: texture, a head's own tissue values)")
            sub.add_argument("--adversarial", type=float, default=0.0, metavar="W",
                             help="add W x the least-squares adversarial loss of a conditional "
                                  "3D PatchGAN discriminator (source T1w + images) to the "
                                  "net's loss (pix2pix-style; 0: off)")
            sub.add_argument("--discriminator-learning-rate", type=float,
                             default=defaults.discriminator_learning_rate, metavar="LR",
                             help="with --adversarial: the discriminator's learning rate "
                                  "(decays in proportion to the net's)")
        sub.add_argument("--final-learning-rate", type=float,
                         default=defaults.final_learning_rate,
                         help="where the learning rate decays to at the last step")
        sub.add_argument("--workers", type=int, default=1, help="generator processes")
        sub.add_argument("--stop-after", type=int, default=None, metavar="STEP",
                         help="checkpoint and stop at this step (resume later)")
        sub.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                         help="checkpoint and stop after this many seconds (a job's wall-time "
                              "limit; resume later)")
        sub.add_argument("--no-evaluate", action="store_true",
                         help="skip the held-out evaluation written into the card")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "torch")
    recipe = Recipe(
        task=args.task, filters=tuple(int(f) for f in args.filters.split(",")), patch=args.patch,
        patch_steps=args.patch_steps, steps=args.steps, batch_size=args.batch_size,
        patches_per_head=args.patches_per_head, pool=args.pool,
        learning_rate=args.learning_rate, final_learning_rate=args.final_learning_rate,
        seed=args.seed, activation=args.activation,
        output_bias=args.output_bias,
        init_from=str(args.init_from) if args.init_from else None,
        init_output=args.init_output, init_input_channel=args.init_input_channel,
        patch_on_lesion=args.patch_on_lesion,
        lesion_branch_from=(str(args.lesion_branch_from)
                            if getattr(args, "lesion_branch_from", None) else None),
        loss=Recipe(**TASK_DEFAULTS[args.task]).loss,
        small_lesion_weight=getattr(args, "small_lesion_weight", 0.0),
        grid_spacing=getattr(args, "grid_spacing", None),
        blob_loss=getattr(args, "blob_loss", False),
        blob_flair_only=getattr(args, "blob_flair_only", False),
        blob_thin_flair_only=getattr(args, "blob_thin_flair_only", False),
        synthetic_flair=getattr(args, "synthetic_flair", 0.0),
        input_rates=(tuple(args.input_rates) if getattr(args, "input_rates", None)
                     else None),
        adversarial_weight=getattr(args, "adversarial", 0.0),
        residual=getattr(args, "residual", False),
        discriminator_learning_rate=getattr(args, "discriminator_learning_rate",
                                            Recipe().discriminator_learning_rate),
    )
    if recipe.adversarial_weight < 0:
        raise SystemExit("--adversarial W needs W >= 0")
    if recipe.adversarial_weight:
        recipe.loss += (f"; plus {recipe.adversarial_weight:g} x the least-squares adversarial "
                        "loss of a conditional 3D PatchGAN (source T1w + images)")
    if recipe.synthetic_flair:
        if not 0 < recipe.synthetic_flair <= 1 or not recipe.pool:
            raise SystemExit("--synthetic-flair P needs 0 < P <= 1 and --pool N")
        from ..models.registry import get_entry

        recipe.synthetic_flair_model = get_entry("contrast-synthesis").read_card().get("sha256")
    if recipe.blob_loss and recipe.small_lesion_weight > 0:
        raise SystemExit("--blob-loss and --small-lesion-weight cannot be combined")
    if recipe.input_rates is not None:
        try:
            checked_input_rates(recipe.input_rates)
        except ValueError as error:
            raise SystemExit(str(error)) from None
    if recipe.blob_flair_only and not recipe.blob_loss:
        raise SystemExit("--blob-flair-only needs --blob-loss")
    if recipe.blob_thin_flair_only and not recipe.blob_loss:
        raise SystemExit("--blob-thin-flair-only needs --blob-loss")
    if recipe.blob_loss:
        recipe.loss += "; plus the mean soft Dice of each lesion on its own (blob loss)"
        if recipe.blob_thin_flair_only:
            recipe.loss += ", scored only in patches with an acquired FLAIR without thick slices"
        elif recipe.blob_flair_only:
            recipe.loss += ", scored only in patches with an acquired FLAIR"
    if recipe.small_lesion_weight > 0:
        recipe.loss += (f"; small lesions' cross-entropy weighted by ({SMALL_LESION_REFERENCE} "
                        f"voxels / size)^0.5, at most {recipe.small_lesion_weight:g}")
    from .card import write_model
    from .train import train

    tic = time.time()
    try:
        final = train(recipe, args.labels, args.work_dir, workers=args.workers,
                      stop_after=args.stop_after, time_limit=args.time_limit)
    except (FileNotFoundError, ValueError) as error:
        print(f"bids-dl-train: error: {error}", file=sys.stderr)
        return 2
    if final is None:
        print("stopped early (--stop-after or --time-limit); run the same command again to "
              "resume")
        return 0
    out_dir = args.out_dir or args.work_dir
    card = write_model(final, out_dir, recipe, args.labels, args.work_dir,
                       evaluate=not args.no_evaluate, wall_seconds=time.time() - tic)
    print(f"wrote {out_dir}: sha256 {card['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
