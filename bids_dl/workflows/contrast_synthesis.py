"""``init_contrast_synthesis_wf``: one synthetic contrast (FLAIR, T2w or CT) from a T1w."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..interfaces.contrast_synthesis import ContrastSynthesis
from ..interfaces.reports import SideBySide

# peak memory of one synthesis process (brain mask, 1.5 mm grid, tiles)
CONTRAST_SYNTHESIS_MEM_GB = 2.0


def init_contrast_synthesis_wf(name: str = "contrast_synthesis_wf", device: str = "auto",
                               omp_nthreads: int = 1, model_id: str = "", title: str = "",
                               roles: tuple[str, ...] = ("in_file",), target: str = "FLAIR",
                               ) -> pe.Workflow:
    """A synthetic ``target`` image from a T1w.

    Inputs: ``inputnode.in_file`` (the T1w), optionally ``inputnode.acquired`` (an acquired
    image of the target contrast, for the report) and ``inputnode.brain_mask`` (the T1w's,
    else the brain-extraction model makes one). Outputs (``outputnode``): ``out_file`` (on
    the T1w's grid), ``out_report`` (SVG: source, synthetic, acquired), ``metadata``.
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=[*roles, "brain_mask"]),
                        name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["out_file", "out_report", "metadata"]),
                         name="outputnode")
    synthesize = pe.Node(ContrastSynthesis(target=target, device=device,
                                           num_threads=omp_nthreads, model_id=model_id),
                         name="contrast_synthesis", n_procs=omp_nthreads,
                         mem_gb=CONTRAST_SYNTHESIS_MEM_GB)
    report = pe.Node(SideBySide(target=target, title=title), name="side_by_side", mem_gb=0.5)
    workflow.connect([
        (inputnode, synthesize, [("in_file", "in_file"), ("brain_mask", "brain_mask")]),
        (inputnode, report, [("in_file", "source")]),
        (synthesize, report, [("out_file", "synthetic")]),
        (synthesize, outputnode, [("out_file", "out_file"), ("metadata", "metadata")]),
        (report, outputnode, [("out_report", "out_report")]),
    ])
    if "acquired" in roles:
        workflow.connect(inputnode, "acquired", report, "acquired")
    return workflow
