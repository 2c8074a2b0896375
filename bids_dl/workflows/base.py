"""``init_bids_dl_wf``: the participant-level workflow, one sub-workflow per participant."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..interfaces.derivatives import DerivativesSink
from ..utils.bids import AnatImage
from .tasks import Task, Unit


def bids_uri(image: AnatImage, dataset: str = "raw") -> str:
    """``bids:<dataset>:<path>``: how sidecars name their sources (BIDS URIs)."""
    return f"bids:{dataset}:{image.relpath}"


def init_task_derivatives(task: Task, unit: Unit, task_wf: pe.Workflow,
                          output_dir: Path, workflow: pe.Workflow, key: str) -> None:
    """Connect ``task_wf``'s outputs to a :class:`DerivativesSink` that stores them under
    their BIDS-Derivatives names in ``output_dir`` (named after ``unit.reference``)."""
    outputs, image = task.outputs, unit.reference
    merge = pe.Node(niu.Merge(len(outputs)), name=f"merge_{key}", run_without_submitting=True)
    sources = [bids_uri(source) for _, source in unit.inputs]
    sink = pe.Node(DerivativesSink(
        out_dir=str(output_dir),
        relpaths=[output.relpath(image) for output in outputs],
        sidecars=[None if output.sidecar is None else {**output.sidecar, "Sources": sources}
                  for output in outputs],
        with_measures=[output.measures for output in outputs],
    ), name=f"ds_{key}", run_without_submitting=True)
    workflow.connect([(task_wf, merge, [(f"outputnode.{output.field}", f"in{index + 1}")
                                        for index, output in enumerate(outputs)]),
                      (merge, sink, [("out", "in_files")]),
                      (task_wf, sink, [("outputnode.metadata", "metadata")])])


def init_single_subject_wf(subject: str, images: list[AnatImage], tasks: list[Task],
                           output_dir: Path, device: str = "auto", omp_nthreads: int = 1,
                           model_ids: dict[str, str] | None = None) -> pe.Workflow:
    """Every task on every image of one participant; derivatives go to ``output_dir``."""
    workflow = pe.Workflow(name=f"sub_{subject}_wf")
    brain_masks = {}  # image path -> the brain-extraction workflow that masks it
    needs_mask = []  # (workflow, reference image path)
    synthetic = {}  # (T1w path, contrast) -> the synthesis workflow that makes it
    needs_synthetic = []  # (workflow, inputnode role, reference image path)
    for task in tasks:
        for unit in task.select(images):
            key = f"{task.name.replace('-', '_')}_{unit.key}"
            extra = {"synthetic": unit.derived} if unit.derived else {}
            task_wf = task.init_wf(name=f"{key}_wf", device=device, omp_nthreads=omp_nthreads,
                                   model_id=(model_ids or {}).get(task.model, ""),
                                   title=" + ".join(Path(i.relpath).name for _, i in unit.inputs),
                                   roles=unit.roles, **extra)
            for role, source in unit.inputs + unit.shown:
                setattr(task_wf.inputs.inputnode, role, source.path)
            init_task_derivatives(task, unit, task_wf, output_dir, workflow, key)
            if task.name == "brain-extraction":
                brain_masks[unit.reference.path] = task_wf
            else:  # lesions, synthesis: reuse the reference's brain mask when there is one
                needs_mask.append((task_wf, unit.reference.path))
            if task.name == "contrast-synthesis":
                synthetic[(unit.reference.path, task.outputs[0].suffix)] = task_wf
            for role in unit.derived:  # e.g. a synthetic FLAIR of the reference T1w
                needs_synthetic.append((task_wf, role, unit.reference.path))
    for task_wf, reference in needs_mask:
        if reference in brain_masks:
            workflow.connect(brain_masks[reference], "outputnode.out_mask",
                             task_wf, "inputnode.brain_mask")
    for task_wf, role, reference in needs_synthetic:
        source = synthetic[(reference, {"flair": "FLAIR", "t2w": "T2w"}[role])]
        workflow.connect(source, "outputnode.out_file", task_wf, f"inputnode.{role}")
    return workflow


def init_bids_dl_wf(images: dict[str, list[AnatImage]], tasks: list[Task], output_dir: Path,
                    work_dir: Path, device: str = "auto", omp_nthreads: int = 1,
                    model_ids: dict[str, str] | None = None) -> pe.Workflow:
    """The whole participant-level run: ``images`` maps participant label -> images."""
    workflow = pe.Workflow(name="bids_dl_wf", base_dir=str(work_dir))
    for subject, subject_images in images.items():
        workflow.add_nodes([init_single_subject_wf(subject, subject_images, tasks, output_dir,
                                                   device, omp_nthreads, model_ids)])
    return workflow
