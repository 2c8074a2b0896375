"""``MaskOverlay``: the reportlet of a mask (contour mosaic, SVG) as a Nipype interface."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)


class _MaskOverlayInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="the image")
    mask_file = File(exists=True, mandatory=True, desc="a mask on the image's grid")
    title = traits.Str("", usedefault=True, desc="shown above the mosaic")


class _MaskOverlayOutputSpec(TraitedSpec):
    out_report = File(exists=True, desc="SVG mosaic")


class MaskOverlay(SimpleInterface):
    """Sagittal, coronal and axial slices of ``in_file`` with the contour of ``mask_file``."""

    input_spec = _MaskOverlayInputSpec
    output_spec = _MaskOverlayOutputSpec

    def _run_interface(self, runtime):
        from ..reports.mosaic import plot_mask_overlay

        out = plot_mask_overlay(self.inputs.in_file, self.inputs.mask_file,
                                Path(runtime.cwd) / "mask_overlay.svg", self.inputs.title)
        self._results["out_report"] = str(out)
        return runtime
