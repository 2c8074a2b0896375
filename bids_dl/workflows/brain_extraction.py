"""``init_brain_extraction_wf``: brain extraction of one anatomical image."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..interfaces.brain_extraction import BrainExtraction
from ..interfaces.reports import MaskOverlay

# peak memory of one brain-extraction process (TensorFlow, 2 mm grid, 1 mm head image)
BRAIN_EXTRACTION_MEM_GB = 1.5


def init_brain_extraction_wf(name: str = "brain_extraction_wf", device: str = "auto",
                             omp_nthreads: int = 1, model_id: str = "",
                             title: str = "", roles: tuple[str, ...] = ("in_file",),
                             ) -> pe.Workflow:
    """Brain mask, probability and masked image of one head image (any contrast).

    Inputs: ``inputnode.in_file`` (3D NIfTI). Outputs (``outputnode``): ``out_mask``,
    ``out_probseg``, ``out_brain`` (all on the input grid), ``out_report`` (SVG mosaic),
    ``metadata`` (model, device, runtime, measures). ``roles`` is always ``("in_file",)``
    (the signature every task's workflow factory shares).
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["in_file"]), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(
        fields=["out_mask", "out_probseg", "out_brain", "out_report", "metadata"]),
        name="outputnode")
    extract = pe.Node(BrainExtraction(device=device, num_threads=omp_nthreads,
                                      model_id=model_id),
                      name="brain_extraction", n_procs=omp_nthreads,
                      mem_gb=BRAIN_EXTRACTION_MEM_GB)
    report = pe.Node(MaskOverlay(title=title), name="mask_overlay", mem_gb=0.5)
    workflow.connect([
        (inputnode, extract, [("in_file", "in_file")]),
        (inputnode, report, [("in_file", "in_file")]),
        (extract, report, [("out_mask", "mask_file")]),
        (extract, outputnode, [("out_mask", "out_mask"), ("out_probseg", "out_probseg"),
                               ("out_brain", "out_brain"), ("metadata", "metadata")]),
        (report, outputnode, [("out_report", "out_report")]),
    ])
    return workflow
