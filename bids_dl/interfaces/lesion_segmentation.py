"""``LesionSegmentation``: the lesion CNN as a Nipype interface."""

from __future__ import annotations

import time
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)


class _LesionSegmentationInputSpec(BaseInterfaceInputSpec):
    flair = File(exists=True, desc="FLAIR image (the reference grid when given)")
    t1w = File(exists=True, desc="T1w image of the same session")
    brain_mask = File(exists=True, desc="brain mask of the reference image (FLAIR, else T1w), "
                                        "when the brain-extraction task made one")
    device = traits.Enum("auto", "cpu", "gpu", usedefault=True, desc="where the CNNs run")
    threshold = traits.Range(low=0.0, high=1.0, desc="probability above which a voxel is "
                             "lesion (default: the model card's threshold calibrated for the inputs given)")
    num_threads = traits.Int(1, usedefault=True, desc="CPU threads for the CNNs")
    model_id = traits.Str(desc="name and sha256 of the model (a new model reruns the node)")
    synthetic = traits.List(traits.Str, desc="inputs that are synthetic (e.g. ['FLAIR'])")


class _LesionSegmentationOutputSpec(TraitedSpec):
    reference = File(exists=True, desc="the image whose grid the outputs are on")
    out_mask = File(exists=True, desc="lesion mask (uint8) on the reference grid")
    out_probseg = File(exists=True, desc="lesion probability (0-1) on the reference grid")
    out_table = File(exists=True, desc="one row per lesion (TSV)")
    metadata = traits.Dict(desc="model, device, runtime (s), inputs, measures, for sidecars")


class LesionSegmentation(SimpleInterface):
    """Run :func:`bids_dl.models.lesion_segmentation.segment_lesions` on a FLAIR and/or a
    T1w and write ``lesion_mask.nii.gz``, ``lesion_probseg.nii.gz`` and ``lesion_morph.tsv``
    in the node folder."""

    input_spec = _LesionSegmentationInputSpec
    output_spec = _LesionSegmentationOutputSpec

    def _run_interface(self, runtime):
        from ..utils.device import configure_device

        tic = time.perf_counter()
        configure_device(self.inputs.device, num_threads=self.inputs.num_threads)
        from ..models.lesion_segmentation import segment_lesions

        flair = self.inputs.flair if isdefined(self.inputs.flair) else None
        t1w = self.inputs.t1w if isdefined(self.inputs.t1w) else None
        brain_mask = self.inputs.brain_mask if isdefined(self.inputs.brain_mask) else None
        threshold = self.inputs.threshold if isdefined(self.inputs.threshold) else None
        synthetic = list(self.inputs.synthetic) if isdefined(self.inputs.synthetic) else []
        result = segment_lesions(flair, t1w, device=self.inputs.device,
                                 threshold=threshold, brain_mask=brain_mask,
                                 synthetic_flair="FLAIR" in synthetic)
        mask, probseg, table = result.write(Path(runtime.cwd) / "lesion")
        self._results.update(
            reference=flair or t1w, out_mask=str(mask), out_probseg=str(probseg),
            out_table=str(table),
            metadata={"Model": result.model, "Device": result.device,
                      "Threshold": result.threshold,
                      **({"MinimumPeakProbability": result.min_peak}
                         if result.min_peak else {}),
                      "Inputs": sorted(result.inputs), "Registration": result.registration,
                      **({"SyntheticInputs": synthetic} if synthetic else {}),
                      **({"ProbabilityReading": result.reading} if result.reading else {}),
                      "Warnings": result.warnings,
                      "RuntimeSeconds": round(time.perf_counter() - tic, 2),
                      "Measures": result.measures},
        )
        return runtime
