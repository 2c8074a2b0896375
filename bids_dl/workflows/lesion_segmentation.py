"""``init_lesion_segmentation_wf``: white-matter lesions of one session (FLAIR and/or T1w)."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..interfaces.lesion_segmentation import LesionSegmentation
from ..interfaces.reports import MaskOverlay

# peak memory of one lesion process (registration, brain mask, 1.5 mm lesion grid)
LESION_SEGMENTATION_MEM_GB = 2.5


def init_lesion_segmentation_wf(name: str = "lesion_segmentation_wf", device: str = "auto",
                                omp_nthreads: int = 1, model_id: str = "", title: str = "",
                                roles: tuple[str, ...] = ("flair", "t1w"),
                                synthetic: tuple[str, ...] = ()) -> pe.Workflow:
    """Lesion mask, probability and table of one session.

    Inputs: ``inputnode.flair`` and/or ``inputnode.t1w`` (3D NIfTI; ``roles`` says which are
    given); optionally ``inputnode.brain_mask``, the reference image's brain mask (else the
    brain-extraction model makes one). ``synthetic``: roles whose image is synthetic (e.g.
    a FLAIR made from the T1w), named so in the sidecars. Outputs (``outputnode``): ``out_mask``,
    ``out_probseg`` (on the FLAIR's grid, or the T1w's when alone), ``out_table`` (TSV),
    ``out_report`` (SVG), ``metadata``.
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=[*roles, "brain_mask"]), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(
        fields=["out_mask", "out_probseg", "out_table", "out_report", "metadata"]),
        name="outputnode")
    segment = pe.Node(LesionSegmentation(device=device, num_threads=omp_nthreads,
                                         model_id=model_id,
                                         synthetic=[{"flair": "FLAIR", "t1w": "T1w"}[role]
                                                    for role in synthetic]),
                      name="lesion_segmentation", n_procs=omp_nthreads,
                      mem_gb=LESION_SEGMENTATION_MEM_GB)
    report = pe.Node(MaskOverlay(title=title), name="lesion_overlay", mem_gb=0.5)
    workflow.connect([
        (inputnode, segment, [(role, role) for role in (*roles, "brain_mask")]),
        (segment, report, [("reference", "in_file"), ("out_mask", "mask_file")]),
        (segment, outputnode, [("out_mask", "out_mask"), ("out_probseg", "out_probseg"),
                               ("out_table", "out_table"), ("metadata", "metadata")]),
        (report, outputnode, [("out_report", "out_report")]),
    ])
    return workflow
