"""The methods paragraph of the reports (citable text of what was done, like fMRIPrep's)."""

from __future__ import annotations

from importlib import metadata

_MIXTURE = ("a 3D U-Net that predicts each voxel's mixture of tissue classes, rendered into "
            "each target by a fixed layer holding every tissue's signal in the reference "
            "acquisition (3 T FLAIR TR 9000 ms, TE 110 ms, TI at the CSF null; T2w TR 5000 ms, "
            "TE 100 ms; reference CT numbers), ")


_LESION_BRANCH = ("with lesions rendered where a frozen copy of the lesion model (its T1w "
                  "path) finds them inside brain parenchyma, ")


def _steps(card: dict) -> int:
    """Training steps behind a model: its whole lineage's where the card has them."""
    return int(card.get("steps_with_lineage") or card.get("steps") or 0)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def methods_text(cards: dict[str, dict], suffixes: list[str]) -> str:
    """One paragraph per task that ran, from the model cards (task name -> card) and the
    contrasts processed (e.g. ``["T1w", "FLAIR"]``)."""
    from .. import __version__

    paragraphs = [
        f"Results included in this report were generated with bids-dl {__version__}, a "
        f"BIDS-App built on Nipype {_version('nipype')} (Gorgolewski et al., 2011) and "
        f"PyBIDS {_version('pybids')} (Yarkoni et al., 2019), running convolutional neural "
        f"networks with Keras {_version('keras')}. No data left the machine and nothing was "
        "downloaded during processing."
    ]
    card = cards.get("brain-extraction")
    if card:
        recipe = card.get("recipe", {})
        contrasts = ", ".join(sorted(set(suffixes))) or "anatomical"
        paragraphs.append(
            f"Each {contrasts} image was brain-extracted with the bids-dl brain-extraction "
            f"model (version {card.get('version')}, sha256 {str(card.get('sha256'))[:12]}), a "
            f"3D U-Net with group normalisation (filters {recipe.get('filters')}) trained for "
            f"{_steps(card):,} steps only on synthetic head images generated from "
            "anatomical label maps with random contrasts, deformations, bias fields, "
            "resolutions and noise (the strategy of SynthStrip; Hoopes et al., 2022), so that "
            "it applies to any MR contrast. The image was reoriented to RAS, resampled to a "
            "2 mm grid of 96 x 112 x 96 voxels centred on the head, normalised to its "
            "0.5-99.5th intensity percentiles and segmented; the brain probability was "
            "resampled onto the native grid, thresholded at 0.5, and the largest connected "
            "component kept with holes filled. The mask covers the intracranial brain (brain "
            "tissue, ventricles and sulcal CSF), as HD-BET, deepbet and SynthStrip define it."
        )
    card = cards.get("lesion-segmentation")
    if card:
        from ..models.lesion_segmentation import SYNTHETIC_FLAIR_MODEL

        paragraphs.append(
            "White-matter lesions were segmented per session with the bids-dl "
            f"lesion-segmentation model (version {card.get('version')}, sha256 "
            f"{str(card.get('sha256'))[:12]}), a 3D U-Net with two input channels (FLAIR and "
            f"T1w; a missing contrast is given as zeros, as in training) trained for "
            f"{_steps(card):,} steps only on synthetic heads with simulated periventricular,"
            " deep, confluent, juxtacortical and infratentorial lesions. When both contrasts "
            "were available, the T1w was first aligned to the FLAIR by a rigid registration "
            "(SimpleITK, Mattes mutual information). The images were resampled to a 1.5 mm "
            "grid centred on the brain (brain mask from the brain-extraction model), "
            "normalised inside the brain, and segmented (the mean of the outputs for the images "
            "and for their left-right mirror images); lesion probabilities outside the "
            "dilated brain mask were set to 0, resampled onto the FLAIR's grid (the T1w's when "
            f"alone), thresholded at {_lesion_thresholds(card)}, and lesions smaller than "
            f"10 mm3{_lesion_peaks(card)} were removed. Each "
            "lesion was classed as infratentorial (the lesion and its surroundings within "
            "5 mm mostly in the infratentorial brain), periventricular (within 3 mm of the "
            "ventricles), juxtacortical (within 1.5 mm of the cortex) or deep, from the "
            "model's own ventricle, cortex and infratentorial outputs."
            + (_synthetic_flair_reading(card, cards.get(SYNTHETIC_FLAIR_MODEL))
               if "contrast-synthesis" in cards else "")
        )
    card = cards.get("contrast-synthesis")
    if card:
        mixture = "tissue classes" in str(card.get("architecture"))
        paragraphs.append(
            "Synthetic images (FLAIR, T2w and/or a pseudo-CT) were generated from each "
            "session's T1w with the bids-dl contrast-synthesis model (version "
            f"{card.get('version')}, sha256 {str(card.get('sha256'))[:12]}), "
            + (_MIXTURE if mixture else "a 3D U-Net ")
            + (_LESION_BRANCH if "lesion branch" in str(card.get("architecture")) else "")
            + ("and a learned additive correction of the rendered images, "
               if "additive correction" in str(card.get("architecture")) else "")
            + f"trained for {_steps(card):,} steps with an L1 + SSIM loss"
            + (" (plus the cross-entropy of the tissue mixture)" if mixture else "")
            + (" and an adversarial term (a conditional 3D PatchGAN discriminator)"
               if (card.get("recipe") or {}).get("adversarial_weight") else "")
            + " on pairs rendered from "
            "synthetic heads through MR signal equations (MPRAGE/SPGR, spin echo, inversion "
            "recovery) with literature tissue T1, T2 and proton density at 1.5 and 3 T, and "
            "per-tissue Hounsfield units. The T1w was resampled to a 1.5 mm grid centred on the "
            "brain, normalised inside the brain, and the outputs resampled onto the T1w's grid "
            "(MR outputs on the T1w's white-matter scale, CT in HU). Synthetic images are "
            "marked as such (desc-synthetic, \"Synthetic\": true) and are not acquired data."
        )
    paragraphs.append(
        "References: Gorgolewski K. et al. (2011) Nipype. Front. Neuroinform. 5:13. "
        "Yarkoni T. et al. (2019) PyBIDS. JOSS 4(40):1294. Hoopes A. et al. (2022) SynthStrip. "
        "NeuroImage 260:119474.")
    return "\n\n".join(paragraphs)


def _synthetic_flair_reading(card: dict, reader_card: dict | None = None) -> str:
    """How lesions were read from a FLAIR synthesised from the T1w (--synthesize-missing):
    by the lesion model (``card``) or by the separate model it names (``reader_card``)."""
    from ..models.lesion_segmentation import (
        SYNTHETIC_FLAIR_SET,
        card_synthetic_reading,
        card_threshold,
    )

    reader = reader_card or card
    model = ("" if reader_card is None else
             " by a separate lesion model for this case (version "
             f"{reader_card.get('version')}, sha256 {str(reader_card.get('sha256'))[:12]}, "
             f"{_steps(reader_card):,} training steps; the same architecture and inference "
             "path)")
    if card_synthetic_reading(reader) == "joint":
        how = ("the model's output for the synthetic FLAIR + T1w (the model was trained with "
               "synthetic FLAIRs among its inputs)")
    else:
        how = ("the mean of the model's outputs for the synthetic FLAIR + T1w and for the "
               "T1w alone")
    return (" Where a session had no FLAIR and one was synthesised from its T1w, lesions were "
            f"read{model}: the lesion probability was {how}, thresholded at "
            f"{card_threshold(reader, SYNTHETIC_FLAIR_SET):.2f}.")


def _lesion_peaks(card: dict) -> str:
    """The card's lesion-wise confidence filter in words ('' when it has none)."""
    from ..models.lesion_segmentation import INPUT_SETS, card_min_peak

    values = {inputs: card_min_peak(card, inputs) for inputs in INPUT_SETS}
    if not any(values.values()):
        return ""
    words = {"FLAIR+T1w": "FLAIR + T1w", "FLAIR": "FLAIR alone", "T1w": "T1w alone"}
    listed = ", ".join(f"{value:.2f} ({words[inputs]})" for inputs, value in values.items())
    return f" or whose peak probability was below {listed}"


def _lesion_thresholds(card: dict) -> str:
    """The card's lesion thresholds in words: one value, or one per input combination."""
    from ..models.lesion_segmentation import INPUT_SETS, card_threshold

    values = {inputs: card_threshold(card, inputs) for inputs in INPUT_SETS}
    if len(set(values.values())) == 1:
        return f"{values['FLAIR+T1w']:.2f}"
    words = {"FLAIR+T1w": "FLAIR + T1w", "FLAIR": "FLAIR alone", "T1w": "T1w alone"}
    listed = ", ".join(f"{value:.2f} ({words[inputs]})" for inputs, value in values.items())
    return f"the probability calibrated on validation heads for the inputs used: {listed}"
