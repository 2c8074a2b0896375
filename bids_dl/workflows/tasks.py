"""The CNN tasks a participant-level run can do: each is a model (registry name), which
images it takes (:class:`Unit`), a workflow factory and the derivatives its ``outputnode``
fields become. Adding a task is one entry of :data:`TASKS`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

from ..utils.bids import KEPT_ENTITIES, AnatImage, derivative_folder, derivative_name
from .brain_extraction import init_brain_extraction_wf
from .contrast_synthesis import init_contrast_synthesis_wf
from .lesion_segmentation import init_lesion_segmentation_wf


@dataclass(frozen=True)
class Unit:
    """One run of a task: a Nipype-safe ``key``, the ``reference`` image (whose grid and
    entities the outputs take) and the inputs by role (``inputnode`` field -> image)."""

    key: str
    reference: AnatImage
    inputs: tuple[tuple[str, AnatImage], ...]
    #: images the workflow shows but does not compute from (not in the sidecar's Sources)
    shown: tuple[tuple[str, AnatImage], ...] = ()
    #: roles filled by another task's output in the same run (e.g. a synthetic FLAIR)
    derived: tuple[str, ...] = ()

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(role for role, _ in self.inputs + self.shown) + self.derived


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


def _sessions(images: list[AnatImage]) -> list[list[AnatImage]]:
    sessions: dict[str | None, list[AnatImage]] = {}
    for image in images:
        sessions.setdefault(image.entity("session"), []).append(image)
    return list(sessions.values())


def lesion_units(images: list[AnatImage], synthetic_flair: bool = False) -> list[Unit]:
    """Per session: each FLAIR with the session's T1w (the one with the same run, else the
    first), or the first T1w alone when the session has no FLAIR (with ``synthetic_flair``:
    with the FLAIR synthesised from that T1w instead)."""
    units = []
    for session_images in _sessions(images):
        flairs = [i for i in session_images if i.suffix == "FLAIR"]
        t1ws = [i for i in session_images if i.suffix == "T1w"]
        for flair in flairs:
            same_run = [t for t in t1ws if t.entity("run") == flair.entity("run")]
            t1w = (same_run or t1ws or [None])[0]
            inputs = (("flair", flair),) + ((("t1w", t1w),) if t1w else ())
            units.append(Unit(image_key(flair), flair, inputs))
        if not flairs and t1ws:
            units.append(Unit(image_key(t1ws[0]), t1ws[0], (("t1w", t1ws[0]),),
                              derived=("flair",) if synthetic_flair else ()))
    return units


def synthesis_units(target: str, only_missing: bool) -> Callable[[list[AnatImage]], list[Unit]]:
    """Per session with a T1w: ``target`` synthesised from its first T1w (with
    ``only_missing``: only in sessions without an acquired image of ``target``); an acquired
    one, when there is, is shown beside it in the report."""
    def select(images: list[AnatImage]) -> list[Unit]:
        units = []
        for session_images in _sessions(images):
            t1ws = [i for i in session_images if i.suffix == "T1w"]
            acquired = [i for i in session_images if i.suffix == target]
            if not t1ws or (only_missing and acquired):
                continue
            shown = (("acquired", acquired[0]),) if acquired else ()
            units.append(Unit(f"{image_key(t1ws[0])}_to_{target}", t1ws[0],
                              (("in_file", t1ws[0]),), shown))
        return units
    return select


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


def synthesis_task(target: str, only_missing: bool = False) -> Task:
    """Contrast synthesis of one ``target`` (FLAIR, T2w or CT) from each session's T1w."""
    return Task(
        name="contrast-synthesis",
        model="contrast-synthesis",
        select=synthesis_units(target, only_missing),
        init_wf=partial(init_contrast_synthesis_wf, target=target),
        outputs=(
            Output("out_file", "synthetic", target, sidecar={"Type": "Synthetic"}),
            Output("out_report", f"synthetic{target}", None, figure=True),
        ),
        description=f"synthetic {target} from each session's T1w" + (
            f" (sessions without an acquired {target})" if only_missing else ""),
    )


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
    "contrast-synthesis": synthesis_task("FLAIR", only_missing=True),
}
#: Lesion segmentation that uses a FLAIR synthesised from the T1w where a session has none.
LESION_WITH_SYNTHETIC_FLAIR = replace(
    TASKS["lesion-segmentation"], select=partial(lesion_units, synthetic_flair=True),
    description=TASKS["lesion-segmentation"].description + "; a synthetic FLAIR where a "
                "session has none")


def run_tasks(names: list[str], synthesize: list[str] | None = None,
              synthesize_missing: bool = False) -> list[Task]:
    """The tasks of one run: ``names`` (CLI task names), with contrast synthesis expanded to
    one task per target (``synthesize``; default FLAIR, only where there is none) and, with
    ``synthesize_missing``, a synthetic FLAIR for lesion segmentation where there is none."""
    tasks: list[Task] = []
    for name in names:
        if name == "contrast-synthesis":
            targets = list(dict.fromkeys(synthesize or ["FLAIR"]))
            tasks += [synthesis_task(target, only_missing=synthesize is None)
                      for target in targets]
        elif name == "lesion-segmentation" and synthesize_missing:
            tasks.append(LESION_WITH_SYNTHETIC_FLAIR)
        else:
            tasks.append(TASKS[name])
    if synthesize_missing and "lesion-segmentation" in names and not any(
            task.name == "contrast-synthesis" and task.outputs[0].suffix == "FLAIR"
            for task in tasks):
        tasks.insert(0, synthesis_task("FLAIR", only_missing=True))
    return tasks


def default_task_names() -> list[str]:
    """Tasks a run does when ``--tasks`` is not given: every task whose model is installed,
    except models whose card marks them ``experimental`` (those run only when named)."""
    from ..models.registry import available, get_entry

    return [name for name, task in TASKS.items() if available(task.model)
            and not get_entry(task.model).read_card().get("experimental", False)]
