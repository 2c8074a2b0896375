"""``ContrastSynthesis``: the synthesis CNN as a Nipype interface."""

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


class _ContrastSynthesisInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="T1w image (the source)")
    target = traits.Enum("FLAIR", "T2w", "CT", mandatory=True, desc="contrast to synthesise")
    brain_mask = File(exists=True, desc="brain mask of the T1w, when the brain-extraction "
                                        "task made one")
    device = traits.Enum("auto", "cpu", "gpu", usedefault=True, desc="where the CNNs run")
    num_threads = traits.Int(1, usedefault=True, desc="CPU threads for the CNNs")
    model_id = traits.Str(desc="name and sha256 of the model (a new model reruns the node)")


class _ContrastSynthesisOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="the synthetic image on the T1w's grid")
    metadata = traits.Dict(desc="Synthetic, model, device, runtime (s), for the sidecar")


class ContrastSynthesis(SimpleInterface):
    """Run :func:`bids_dl.models.contrast_synthesis.synthesize` for one target and write
    ``synthetic_<target>.nii.gz`` in the node folder."""

    input_spec = _ContrastSynthesisInputSpec
    output_spec = _ContrastSynthesisOutputSpec

    def _run_interface(self, runtime):
        from ..utils.device import configure_device

        tic = time.perf_counter()
        configure_device(self.inputs.device, num_threads=self.inputs.num_threads)
        from ..models.contrast_synthesis import synthesize

        brain_mask = self.inputs.brain_mask if isdefined(self.inputs.brain_mask) else None
        target = self.inputs.target
        result = synthesize(self.inputs.in_file, (target,), device=self.inputs.device,
                            brain_mask=brain_mask)
        (out,) = result.write(Path(runtime.cwd) / "synthetic")
        units = ({"Units": "HU"} if target == "CT" else
                 {"IntensityScale": "white matter = the source T1w's white-matter intensity",
                  "SourceWhiteMatterIntensity": round(result.white_matter_scale, 4)})
        self._results.update(
            out_file=str(out),
            metadata={"Synthetic": True, "SynthesizedContrast": target, **units,
                      "Model": result.model, "Device": result.device,
                      "RuntimeSeconds": round(time.perf_counter() - tic, 2)},
        )
        return runtime
