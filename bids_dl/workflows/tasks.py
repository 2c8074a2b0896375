"""The CNN tasks a participant-level run can do: each is a model (registry name), which
images it takes (:class:`Unit`), a workflow factory and the derivatives its ``outputnode``
fields become. Adding a task is one entry of :data:`TASKS`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..utils.bids import KEPT_ENTITIES, AnatImage, derivative_folder, derivative_name
from .brain_extraction import init_brain_extraction_wf
from .lesion_segmentation import init_lesion_segmentation_wf


@dataclass(frozen=True)
class Unit:
    """One run of a task: a Nipype-safe ``key``, the ``reference`` image (whose grid and
    entities the outputs take) and the inputs by role (``inputnode`` field -> image)."""

    key: str
    reference: AnatImage
    inputs: tuple[tuple[str, AnatImage], ...]


def image_key(image: AnatImage) -> str:
    """A Nipype-safe name for one image within its participant: e.g. ``ses_1_run_2_T1w``."""
    parts = [f"{KEPT_ENTITIES[name]}_{value}" for name, value in image.entities
             if name != "subject"]
    return "_".join([*parts, image.suffix])


def each_image(suffixes: tuple[str, ...]) -> Callable[[list[AnatImage]], list[Unit]]:
    """Units of one image each, for every image of ``suffixes``."""
    def select(images: list[AnatImage]) -> list[Unit]:
        return [Unit(image_key(image), image, (("in_file", image),)) for image in images
                if image.suffix in suffixes]
    return select


def lesion_units(images: list[AnatImage]) -> list[Unit]:
    """Per session: each FLAIR with the session's T1w (the one with the same run, else the
    first), or the first T1w alone when the session has no FLAIR."""
    sessions: dict[str | None, list[AnatImage]] = {}
    for image in images:
        sessions.setdefault(image.entity("session"), []).append(image)
    units = []
    for session_images in sessions.values():
        flairs = [i for i in session_images if i.suffix == "FLAIR"]
        t1ws = [i for i in session_images if i.suffix == "T1w"]
        for flair in flairs:
            same_run = [t for t in t1ws if t.entity("run") == flair.entity("run")]
            t1w = (same_run or t1ws or [None])[0]
            inputs = (("flair", flair),) + ((("t1w", t1w),) if t1w else ())
            units.append(Unit(image_key(flair), flair, inputs))
        if not flairs and t1ws:
            units.append(Unit(image_key(t1ws[0]), t1ws[0], (("t1w", t1ws[0]),)))
    return units


@dataclass(frozen=True)
class Output:
    """An ``outputnode`` field stored as a derivative: name pieces (``suffix`` ``None`` means
    the reference image's suffix), a static sidecar (``None``: no sidecar), whether the
    sidecar carries the task's measures, whether it is a report figure, and whether the name
    always says which contrast's grid it is on (``mod-<suffix>``; otherwise only for
    non-T1w references)."""

    field: str
    desc: str | None
    suffix: str | None
    label: str | None = None
    sidecar: dict | None = None
    measures: bool = False
    figure: bool = False
    extension: str = ".nii.gz"
    always_mod: bool = False

    def relpath(self, image: AnatImage) -> str:
        named_suffix = self.suffix is not None and not self.figure
        extra = ({"mod": image.suffix} if named_suffix and
                 (self.always_mod or image.suffix != "T1w") else {})
        if self.label:
            extra["label"] = self.label
        if self.figure:
            name = derivative_name(image, self.desc, image.suffix, ".svg", extra)
            return f"sub-{image.subject}/figures/{name}"
        name = derivative_name(image, self.desc, self.suffix or image.suffix, self.extension,
                               extra)
        return f"{derivative_folder(image)}/{name}"


@dataclass(frozen=True)
class Task:
    """One CNN task: CLI name, registry model, how it picks its inputs (``select``), its
    workflow factory (``name, device, omp_nthreads, model_id, title, roles`` -> workflow
    with those ``inputnode`` fields) and its outputs."""

    name: str
    model: str
    select: Callable[[list[AnatImage]], list[Unit]]
    init_wf: Callable
    outputs: tuple[Output, ...]
    description: str


TASKS: dict[str, Task] = {
    "brain-extraction": Task(
        name="brain-extraction",
        model="brain-extraction",
        select=each_image(("T1w", "T2w", "FLAIR")),
        init_wf=init_brain_extraction_wf,
        outputs=(
            Output("out_mask", "brain", "mask", sidecar={"Type": "Brain"}, measures=True),
            Output("out_probseg", None, "probseg", label="brain", sidecar={}),
            Output("out_brain", "brain", None, sidecar={"SkullStripped": True}),
            Output("out_report", "brain", None, figure=True),
        ),
        description="brain mask, brain probability and skull-stripped image of every image",
    ),
    "lesion-segmentation": Task(
        name="lesion-segmentation",
        model="lesion-segmentation",
        select=lesion_units,
        init_wf=init_lesion_segmentation_wf,
        outputs=(
            Output("out_mask", "lesion", "mask", sidecar={"Type": "Lesion"}, measures=True,
                   always_mod=True),
            Output("out_probseg", None, "probseg", label="lesion", sidecar={},
                   always_mod=True),
            Output("out_table", "lesion", "morph", extension=".tsv", sidecar={},
                   always_mod=True),
            Output("out_report", "lesion", None, figure=True),
        ),
        description="white-matter lesion mask, probability and per-lesion table per session "
                    "(FLAIR + T1w, FLAIR alone or T1w alone)",
    ),
}


def default_task_names() -> list[str]:
    """Tasks a run does when ``--tasks`` is not given: every task whose model is installed,
    except models whose card marks them ``experimental`` (those run only when named)."""
    from ..models.registry import available, get_entry

    return [name for name, task in TASKS.items() if available(task.model)
            and not get_entry(task.model).read_card().get("experimental", False)]
