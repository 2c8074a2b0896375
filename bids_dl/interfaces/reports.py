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


class _SideBySideInputSpec(BaseInterfaceInputSpec):
    source = File(exists=True, mandatory=True, desc="the source image (e.g. the T1w)")
    synthetic = File(exists=True, mandatory=True, desc="the image synthesised from it")
    acquired = File(exists=True, desc="an acquired image of the synthesised contrast")
    target = traits.Str("", usedefault=True, desc="the synthesised contrast (column labels)")
    title = traits.Str("", usedefault=True, desc="shown above the grid")


class SideBySide(SimpleInterface):
    """Source, synthetic and (when there is one) acquired image side by side (SVG)."""

    input_spec = _SideBySideInputSpec
    output_spec = _MaskOverlayOutputSpec

    def _run_interface(self, runtime):
        from nipype.interfaces.base import isdefined

        from ..reports.mosaic import plot_side_by_side

        images = [("source", self.inputs.source),
                  (f"synthetic {self.inputs.target}".strip(), self.inputs.synthetic)]
        if isdefined(self.inputs.acquired):
            images.append((f"acquired {self.inputs.target}".strip(), self.inputs.acquired))
        out = plot_side_by_side(images, Path(runtime.cwd) / "side_by_side.svg",
                                self.inputs.title)
        self._results["out_report"] = str(out)
        return runtime
