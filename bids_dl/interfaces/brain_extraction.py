"""``BrainExtraction``: the brain-extraction CNN as a Nipype interface."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)


class _BrainExtractionInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="3D NIfTI head image, any contrast")
    device = traits.Enum("auto", "cpu", "gpu", usedefault=True, desc="where the CNN runs")
    threshold = traits.Range(low=0.0, high=1.0, value=0.5, usedefault=True,
                             desc="probability above which a voxel is brain")
    num_threads = traits.Int(1, usedefault=True, desc="CPU threads for the CNN")
    model_id = traits.Str(desc="name and sha256 of the model (a new model reruns the node)")


class _BrainExtractionOutputSpec(TraitedSpec):
    out_mask = File(exists=True, desc="brain mask (uint8) on the input grid")
    out_probseg = File(exists=True, desc="brain probability (0-1) on the input grid")
    out_brain = File(exists=True, desc="input image masked by the brain mask")
    metadata = traits.Dict(desc="model, device, runtime (s) and measures, for sidecars")


class BrainExtraction(SimpleInterface):
    """Run :func:`bids_dl.models.brain_extraction.extract_brain` on ``in_file`` and write
    ``brain_mask.nii.gz``, ``brain_probseg.nii.gz`` and ``brain.nii.gz`` in the node folder."""

    input_spec = _BrainExtractionInputSpec
    output_spec = _BrainExtractionOutputSpec

    def _run_interface(self, runtime):
        from ..utils.device import configure_device

        tic = time.perf_counter()
        configure_device(self.inputs.device, num_threads=self.inputs.num_threads)
        from ..models.brain_extraction import extract_brain
        from ..utils.io import load_volume
        from ..utils.measures import brain_measures

        result = extract_brain(self.inputs.in_file, device=self.inputs.device,
                               threshold=self.inputs.threshold)
        prefix = Path(runtime.cwd) / "brain"
        mask_file, probseg_file, brain_file = result.write(prefix)
        data, image = load_volume(self.inputs.in_file)
        measures = brain_measures(data, np.asanyarray(result.mask.dataobj) > 0, image.affine)
        self._results.update(
            out_mask=str(mask_file), out_probseg=str(probseg_file), out_brain=str(brain_file),
            metadata={"Model": result.model, "Device": result.device,
                      "Threshold": self.inputs.threshold,
                      "RuntimeSeconds": round(time.perf_counter() - tic, 2),
                      "Measures": measures},
        )
        return runtime
