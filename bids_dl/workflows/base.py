"""``init_bids_dl_wf``: the participant-level workflow, one sub-workflow per participant."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..interfaces.derivatives import DerivativesSink
from ..utils.bids import KEPT_ENTITIES, AnatImage
from .tasks import Task


def image_key(image: AnatImage) -> str:
    """A Nipype-safe name for one image within its participant: e.g. ``ses_1_run_2_T1w``."""
    parts = [f"{KEPT_ENTITIES[name]}_{value}" for name, value in image.entities
             if name != "subject"]
    return "_".join([*parts, image.suffix])


def bids_uri(image: AnatImage, dataset: str = "raw") -> str:
    """``bids:<dataset>:<path>``: how sidecars name their sources (BIDS URIs)."""
    return f"bids:{dataset}:{image.relpath}"


def init_task_derivatives(task: Task, image: AnatImage, task_wf: pe.Workflow,
                          output_dir: Path, workflow: pe.Workflow, key: str) -> None:
    """Connect ``task_wf``'s outputs to a :class:`DerivativesSink` that stores them under
    their BIDS-Derivatives names in ``output_dir``."""
    outputs = task.outputs
    merge = pe.Node(niu.Merge(len(outputs)), name=f"merge_{key}", run_without_submitting=True)
    sources = [bids_uri(image)]
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
    for image in images:
        for task in tasks:
            if image.suffix not in task.applies_to:
                continue
            key = f"{task.name.replace('-', '_')}_{image_key(image)}"
            task_wf = task.init_wf(name=f"{key}_wf", device=device, omp_nthreads=omp_nthreads,
                                   model_id=(model_ids or {}).get(task.model, ""),
                                   title=Path(image.relpath).name)
            task_wf.inputs.inputnode.in_file = image.path
            init_task_derivatives(task, image, task_wf, output_dir, workflow, key)
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
