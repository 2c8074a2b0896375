"""The CNN tasks a participant-level run can do: each is a model (registry name), a workflow
factory and the derivatives its ``outputnode`` fields become. Adding a task is one entry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..utils.bids import AnatImage, derivative_folder, derivative_name
from .brain_extraction import init_brain_extraction_wf


@dataclass(frozen=True)
class Output:
    """An ``outputnode`` field stored as a derivative: name pieces (``suffix`` ``None`` means
    the source image's suffix), a static sidecar (``None``: no sidecar), whether the
    sidecar carries the task's measures, and whether it is a report figure."""

    field: str
    desc: str | None
    suffix: str | None
    label: str | None = None
    sidecar: dict | None = None
    measures: bool = False
    figure: bool = False

    def relpath(self, image: AnatImage) -> str:
        extra = {} if image.suffix == "T1w" or self.suffix is None else {"mod": image.suffix}
        if self.label:
            extra["label"] = self.label
        if self.figure:
            name = derivative_name(image, self.desc, image.suffix, ".svg", extra)
            return f"sub-{image.subject}/figures/{name}"
        name = derivative_name(image, self.desc, self.suffix or image.suffix, ".nii.gz", extra)
        return f"{derivative_folder(image)}/{name}"


@dataclass(frozen=True)
class Task:
    """One CNN task: CLI name, registry model, contrasts it applies to, its workflow factory
    (``name, device, omp_nthreads, model_id, title`` -> workflow with ``inputnode.in_file``)
    and its outputs."""

    name: str
    model: str
    applies_to: tuple[str, ...]
    init_wf: Callable
    outputs: tuple[Output, ...]
    description: str


TASKS: dict[str, Task] = {
    "brain-extraction": Task(
        name="brain-extraction",
        model="brain-extraction",
        applies_to=("T1w", "T2w", "FLAIR"),
        init_wf=init_brain_extraction_wf,
        outputs=(
            Output("out_mask", "brain", "mask", sidecar={"Type": "Brain"}, measures=True),
            Output("out_probseg", None, "probseg", label="brain", sidecar={}),
            Output("out_brain", "brain", None, sidecar={"SkullStripped": True}),
            Output("out_report", "brain", None, figure=True),
        ),
        description="brain mask, brain probability and skull-stripped image",
    ),
}
