"""Group level: ``group/measures.tsv`` and ``group/report.html`` from the derivatives.

Outliers are flagged per measure, task, contrast and input combination (``inputs``: e.g.
lesions from FLAIR + T1w, T1w alone or a synthetic FLAIR + T1w, which are not comparable) by
a robust z-score, ``(x - median) / (1.4826 * MAD)``, beyond :data:`OUTLIER_Z`. Participants whose latest
participant-level run failed (``OUTPUT_DIR/logs/run_*.json``, written by every run, also by
each job of a cluster array) are listed with their errors.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .derivatives import ENTITY_COLUMNS, MeasuredImage, find_measured, inputs_label

OUTLIER_Z = 3.5
MAD_TO_SD = 1.4826
MIN_VALUES = 5  # fewer values per measure and contrast: no outlier flags


@dataclass
class GroupResult:
    table: Path
    report: Path
    n_images: int
    n_outliers: int
    failed: dict[str, list[str]]


def failed_participants(output_dir: Path, participants: list[str] | None = None,
                        ) -> dict[str, list[str]]:
    """Participant label -> error messages, for participants whose latest participant-level
    run (by the time its summary was written) failed or skipped them."""
    latest: dict[str, tuple[float, list[str]]] = {}
    for path in (output_dir / "logs").glob("run_*.json"):
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        written = path.stat().st_mtime
        failed, skipped = summary.get("failed", {}), summary.get("skipped", {})
        for subject in list(summary.get("participants", [])) + list(skipped):
            messages = failed.get(subject) or ([skipped[subject]] if subject in skipped else [])
            if subject not in latest or written >= latest[subject][0]:
                latest[subject] = (written, list(messages))
    return {subject: messages for subject, (_, messages) in sorted(latest.items())
            if messages and (participants is None or subject in participants)}


def robust_z(values: np.ndarray) -> np.ndarray:
    """Robust z-scores of ``values`` (NaN where the MAD is zero or with fewer than
    :data:`MIN_VALUES` finite values)."""
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    if finite.size < MIN_VALUES:
        return np.full(values.shape, np.nan)
    median = np.median(finite)
    mad = np.median(np.abs(finite - median)) * MAD_TO_SD
    if mad == 0:
        return np.full(values.shape, np.nan)
    return (values - median) / mad


def measures_table(images: list[MeasuredImage]) -> tuple[list[str], list[dict]]:
    """Columns and rows (one per image: entities, contrast, task, input combination, file,
    measures)."""
    measure_names = sorted({name for image in images for name in image.sidecar["Measures"]})
    columns = [*ENTITY_COLUMNS.values(), "suffix", "task", "inputs", "file", *measure_names]
    rows = []
    for image in images:
        row = {column: "n/a" for column in columns}
        for key, column in ENTITY_COLUMNS.items():
            if key in image.entities:
                value = image.entities[key]
                row[column] = f"{key}-{value}" if key in ("sub", "ses") else value
        row["suffix"] = image.suffix
        row["task"] = image.sidecar.get("Model", {}).get("name", "n/a")
        row["inputs"] = inputs_label(image.sidecar)
        row["file"] = image.path.name.replace(".json", ".nii.gz")
        row.update(image.sidecar["Measures"])
        rows.append(row)
    return columns, rows


def _group_key(row: dict) -> tuple[str, str, str]:
    """Rows compared with each other: same task, contrast and input combination."""
    return row["task"], row["suffix"], row["inputs"]


def _group_name(key: tuple[str, str, str]) -> str:
    task, suffix, inputs = key
    return f"{task}: {suffix}" + (f" ({inputs})" if inputs != "n/a" else "")


def _strip_plot(measure: str, rows: list[dict], z: np.ndarray) -> str:
    """An inline SVG strip plot of one measure per task, contrast and input combination,
    outliers in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({_group_key(row) for row in rows if isinstance(row[measure], (int, float))})
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.45 * len(groups)))
    rng = np.random.default_rng(0)
    for position, group in enumerate(groups):
        chosen = [i for i, row in enumerate(rows) if _group_key(row) == group
                  and isinstance(row[measure], (int, float))]
        values = np.array([rows[i][measure] for i in chosen], dtype=float)
        flagged = np.array([abs(z[i]) > OUTLIER_Z for i in chosen], dtype=bool)
        jitter = position + rng.uniform(-0.15, 0.15, len(chosen))
        ax.scatter(values[~flagged], jitter[~flagged], s=10, color="#3a6ea5", alpha=0.7)
        ax.scatter(values[flagged], jitter[flagged], s=18, color="#c00000")
    ax.set_yticks(range(len(groups)), [_group_name(group) for group in groups])
    ax.set_xlabel(measure)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def write_group(output_dir: Path, participants: list[str] | None = None) -> GroupResult:
    """Gather every measured image under ``output_dir`` into ``group/measures.tsv`` and
    ``group/report.html``. Raises ``FileNotFoundError`` when there is nothing to gather."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    from .. import __version__
    from ..utils.io import atomic_path

    images = find_measured(output_dir, participants)
    failed = failed_participants(output_dir, participants)
    if not images:
        raise FileNotFoundError(f"{output_dir}: no bids-dl derivatives with measures found; "
                                "run the participant level first")
    columns, rows = measures_table(images)
    measure_names = columns[columns.index("file") + 1:]
    outliers, plots, summary = [], [], []
    for measure in measure_names:
        z = np.full(len(rows), np.nan)
        for group in sorted({_group_key(row) for row in rows}):
            task, suffix, inputs = group
            chosen = [i for i, row in enumerate(rows) if _group_key(row) == group]
            values = np.array([rows[i][measure] if isinstance(rows[i][measure], (int, float))
                               else np.nan for i in chosen], dtype=float)
            z[chosen] = robust_z(values)
            finite = values[np.isfinite(values)]
            if finite.size:
                median = float(np.median(finite))
                summary.append({"measure": measure, "task": task, "suffix": suffix,
                                "inputs": inputs, "n": int(finite.size),
                                "median": round(median, 4),
                                "mad": round(float(np.median(np.abs(finite - median))), 4),
                                "min": round(float(finite.min()), 4),
                                "max": round(float(finite.max()), 4)})
        for i in np.flatnonzero(np.abs(np.nan_to_num(z)) > OUTLIER_Z):
            outliers.append({"image": rows[i]["file"], "measure": measure,
                             "value": rows[i][measure], "z": round(float(z[i]), 2),
                             "participant": rows[i]["participant_id"][4:]})
        plots.append(_strip_plot(measure, rows, z))
    group_dir = output_dir / "group"
    group_dir.mkdir(parents=True, exist_ok=True)
    table = group_dir / "measures.tsv"
    with atomic_path(table) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    environment = Environment(loader=PackageLoader("bids_dl.reports", "templates"),
                              autoescape=select_autoescape(["html"]))
    html = environment.get_template("group.html").render(
        version=__version__, date=datetime.datetime.now().isoformat(timespec="seconds"),
        n_images=len(rows), n_participants=len({row["participant_id"] for row in rows}),
        plots=plots, outliers=outliers, summary=summary, threshold=OUTLIER_Z, failed=failed)
    report = group_dir / "report.html"
    with atomic_path(report) as tmp:
        Path(tmp).write_text(html)
    return GroupResult(table, report, len(rows), len(outliers), failed)
