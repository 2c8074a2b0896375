"""``bids-dl-infer``: run one CNN task on one image, outside any BIDS dataset."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from .. import __version__
from ..utils.device import DEVICES

EXIT_INPUT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bids-dl-infer",
        description="Run a bids-dl model on a single NIfTI image (no BIDS dataset needed).",
    )
    parser.add_argument("--version", action="version", version=f"bids-dl {__version__}")
    tasks = parser.add_subparsers(dest="task", required=True, metavar="TASK")
    brain = tasks.add_parser(
        "brain-extraction",
        help="brain mask of a head image of any contrast",
        description="Brain extraction: writes OUT_PREFIX_mask.nii.gz (uint8), "
        "OUT_PREFIX_probseg.nii.gz and OUT_PREFIX_brain.nii.gz on the grid of IN.",
    )
    brain.add_argument("in_file", metavar="IN", type=Path, help="3D NIfTI image (.nii or .nii.gz)")
    brain.add_argument("out_prefix", metavar="OUT_PREFIX", help="prefix of the output files")
    brain.add_argument("--device", choices=DEVICES, default="auto",
                       help="where the CNN runs (default: a GPU when there is one)")
    brain.add_argument("--threshold", type=float, default=0.5,
                       help="probability above which a voxel is brain (default 0.5)")
    brain.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    lesions = tasks.add_parser(
        "lesion-segmentation",
        help="white-matter lesions from a FLAIR and/or a T1w",
        description="Lesion segmentation: writes OUT_PREFIX_mask.nii.gz (uint8), "
        "OUT_PREFIX_probseg.nii.gz and OUT_PREFIX_lesions.tsv (one row per lesion) on the "
        "grid of the FLAIR (of the T1w when alone). Give a FLAIR, a T1w or both (both: the "
        "T1w is rigidly registered to the FLAIR first).",
    )
    lesions.add_argument("--flair", type=Path, help="FLAIR image (.nii or .nii.gz)")
    lesions.add_argument("--t1w", type=Path, help="T1w image of the same session")
    lesions.add_argument("out_prefix", metavar="OUT_PREFIX", help="prefix of the output files")
    lesions.add_argument("--device", choices=DEVICES, default="auto",
                         help="where the CNNs run (default: a GPU when there is one)")
    lesions.add_argument("--threshold", type=float, default=None,
                         help="probability above which a voxel is lesion (default: the "
                         "threshold the model card calibrated for the inputs given, 0.5 without one)")
    lesions.add_argument("--synthetic-flair", action="store_true",
                         help="the FLAIR was synthesised from this T1w (bids-dl-infer "
                         "contrast-synthesis --to FLAIR): read as the model card says "
                         "(by default the mean of the model's readings of both and of the "
                         "T1w alone), at its own threshold")
    lesions.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    synthesis = tasks.add_parser(
        "contrast-synthesis",
        help="a synthetic FLAIR, T2w or pseudo-CT from a T1w",
        description="Contrast synthesis: writes OUT_PREFIX_<target>.nii.gz for each --to "
        "target on the grid of IN (FLAIR and T2w on the T1w's white-matter scale; CT in "
        "Hounsfield units). Synthetic images are not acquired ones: never use them "
        "for diagnosis.",
    )
    synthesis.add_argument("--to", action="append", required=True,
                           choices=("FLAIR", "T2w", "CT"), metavar="TARGET",
                           help="FLAIR, T2w or CT (repeat for several: --to FLAIR --to CT)")
    synthesis.add_argument("in_file", metavar="IN", type=Path, help="T1w image (.nii/.nii.gz)")
    synthesis.add_argument("out_prefix", metavar="OUT_PREFIX", help="prefix of the output files")
    synthesis.add_argument("--device", choices=DEVICES, default="auto",
                           help="where the CNNs run (default: a GPU when there is one)")
    synthesis.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    return parser


def check_writable(out_prefix: str) -> None:
    """Fail before any work (and before importing Keras) when the folder of ``out_prefix``
    cannot be written: a scratch folder is made and removed in its nearest existing parent
    (a permission check alone passes for root, who may still be refused, e.g. in /proc)."""
    folder = Path(out_prefix).absolute().parent
    existing = folder
    while not existing.exists():
        existing = existing.parent
    problem = None
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        problem = "is not writable"
    else:
        try:
            tempfile.TemporaryDirectory(dir=existing, prefix=".bids-dl-check-").cleanup()
        except OSError as error:
            problem = f"refuses new files: {error.strerror}"
    if problem:
        raise OSError(f"{folder}: cannot write output here ({existing} {problem})")


def run_brain_extraction(args: argparse.Namespace) -> int:
    check_writable(args.out_prefix)
    from ..models.brain_extraction import extract_brain
    result = extract_brain(args.in_file, device=args.device, threshold=args.threshold)
    written = result.write(args.out_prefix)
    if not args.quiet:
        for path in written:
            print(f"wrote {path}")
        print(f"brain volume: {result.volume_ml:.1f} ml (device: {result.device})")
    return 0


def run_lesion_segmentation(args: argparse.Namespace) -> int:
    check_writable(args.out_prefix)
    from ..models.lesion_segmentation import segment_lesions
    result = segment_lesions(args.flair, args.t1w, device=args.device,
                             threshold=args.threshold, synthetic_flair=args.synthetic_flair)
    written = result.write(args.out_prefix)
    for warning in result.warnings:
        print(f"bids-dl-infer: warning: {warning}", file=sys.stderr)
    if not args.quiet:
        for path in written:
            print(f"wrote {path}")
        measures = result.measures
        print(f"lesions: {measures['LesionCount']}, {measures['LesionVolumeMl']:.2f} ml "
              f"({100 * measures['LesionFractionOfBrain']:.2f} % of the brain; device: "
              f"{result.device})")
    return 0


def run_contrast_synthesis(args: argparse.Namespace) -> int:
    check_writable(args.out_prefix)
    from ..models.contrast_synthesis import synthesize
    targets = tuple(dict.fromkeys(args.to))
    result = synthesize(args.in_file, targets, device=args.device)
    written = result.write(args.out_prefix)
    if not args.quiet:
        for path in written:
            print(f"wrote {path}")
        print(f"white-matter scale of the source: {result.white_matter_scale:.4g} "
              f"(device: {result.device})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.task == "lesion-segmentation" and args.flair is None and args.t1w is None:
        parser.error("lesion-segmentation: give --flair, --t1w or both")
    if args.task == "lesion-segmentation" and args.synthetic_flair and not (args.flair
                                                                            and args.t1w):
        parser.error("lesion-segmentation: --synthetic-flair needs the --flair and its --t1w")
    from ..models.registry import ModelIntegrityError
    from ..utils.device import DeviceError
    from ..utils.io import InputImageError
    from ..utils.registration import RegistrationError

    try:
        return {"brain-extraction": run_brain_extraction,
                "lesion-segmentation": run_lesion_segmentation,
                "contrast-synthesis": run_contrast_synthesis}[args.task](args)
    except (InputImageError, DeviceError, ModelIntegrityError, RegistrationError) as error:
        print(f"bids-dl-infer: error: {error}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except OSError as error:
        print(f"bids-dl-infer: error: {error}", file=sys.stderr)
        return EXIT_INPUT_ERROR


if __name__ == "__main__":
    sys.exit(main())
