"""Per-participant HTML report (``OUTPUT_DIR/sub-XX.html``), written from the derivatives."""

from __future__ import annotations

import csv
import datetime
from pathlib import Path

from .derivatives import find_measured, inputs_label

MAX_TABLE_ROWS = 30  # lesions listed in the report (all are in the TSV)


def _environment():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("bids_dl.reports", "templates"),
        autoescape=jinja2.select_autoescape(["html"]))


def synthetic_images(output_dir: Path, subject: str) -> list[dict]:
    """The participant's synthetic images (``desc-synthetic`` sidecars) for the report."""
    import json

    found = []
    for sidecar in sorted((output_dir / f"sub-{subject}").rglob("*_desc-synthetic_*.json")):
        meta = json.loads(sidecar.read_text())
        contrast = meta.get("SynthesizedContrast", sidecar.stem.rsplit("_", 1)[-1])
        entities = sidecar.name.split("_desc-synthetic_")[0]
        figure = output_dir / f"sub-{subject}" / "figures" / (
            f"{entities}_desc-synthetic{contrast}_T1w.svg")
        found.append({
            "contrast": contrast, "source": ", ".join(meta.get("Sources", [])),
            "file": sidecar.relative_to(output_dir).as_posix().replace(".json", ".nii.gz"),
            "model": meta.get("Model", {}), "device": meta.get("Device", "?"),
            "runtime": meta.get("RuntimeSeconds", "?"),
            "figure": figure.relative_to(output_dir).as_posix() if figure.is_file() else None})
    return found


def write_participant_report(output_dir: Path, subject: str, methods: str,
                             failures: list[dict] | None = None, dataset: str = "") -> Path:
    """Write ``sub-<subject>.html``: per image the overlay mosaic, measures, model, device and
    runtime (from the sidecars), failures (``node``, ``message``, ``crashfile``), methods."""
    from .. import __version__
    from ..utils.io import atomic_path

    images = []
    for measured in find_measured(output_dir, [subject]):
        figure = measured.figure(output_dir)
        meta = measured.sidecar
        table = measured.path.with_name(measured.path.name.replace("_mask.json", "_morph.tsv"))
        rows = []
        if table.is_file():
            with open(table, newline="") as handle:
                rows = list(csv.DictReader(handle, delimiter="\t"))
        images.append({
            "source": measured.source,
            "mask": measured.path.relative_to(output_dir).as_posix().replace(".json", ".nii.gz"),
            "measures": meta["Measures"], "model": meta.get("Model", {}),
            "device": meta.get("Device", "?"), "runtime": meta.get("RuntimeSeconds", "?"),
            "figure": figure.relative_to(output_dir).as_posix() if figure else None,
            "task": meta.get("Model", {}).get("name", ""),
            "inputs": inputs_label(meta, " + ") if meta.get("Inputs") else None,
            "reading": meta.get("ProbabilityReading"),
            "warnings": meta.get("Warnings") or [], "table": rows[:MAX_TABLE_ROWS],
            "table_rows": len(rows),
            "table_file": table.relative_to(output_dir).as_posix() if rows else None,
        })
    html = _environment().get_template("participant.html").render(
        subject=subject, version=__version__, dataset=dataset, images=images,
        synthetic=synthetic_images(output_dir, subject),
        failures=failures or [], methods=methods,
        date=datetime.datetime.now().isoformat(timespec="seconds"))
    target = output_dir / f"sub-{subject}.html"
    with atomic_path(target) as tmp:
        Path(tmp).write_text(html)
    return target
