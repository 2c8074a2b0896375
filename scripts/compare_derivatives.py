#!/usr/bin/env python3
"""Compare two bids-dl output folders (e.g. a run in the container and one outside it).

Same derivative files; masks identical voxel for voxel and affines equal; other images equal
within ``--atol``; sidecars and tables identical except the run's own facts (run time,
container). Prints one line per difference; exit 1 if any.

    python scripts/compare_derivatives.py OUT_A OUT_B
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

#: Keys that describe the run (its time, container, where it saw the input), not the result.
VOLATILE = {"RuntimeSeconds", "Container", "SourceDatasets", "DatasetLinks"}


def derivative_files(root: Path, participants: list[str] | None = None) -> set[str]:
    """Derivative files under ``root`` (relative paths); only those of ``participants``
    (labels) when given, else also the dataset description and the group table."""
    folders = [f"sub-{label}" for label in participants] if participants else ["sub-*"]
    found = {str(p.relative_to(root)) for folder in folders for p in root.glob(f"{folder}/**/*")
             if p.is_file() and p.name.endswith((".nii.gz", ".json", ".tsv"))}
    if not participants:
        found |= {name for name in ("dataset_description.json", "group/measures.tsv")
                  if (root / name).is_file()}
    return found


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def compare_file(a: Path, b: Path, atol: float) -> str | None:
    """A description of how ``a`` and ``b`` differ, or None."""
    if a.name.endswith(".nii.gz"):
        image_a, image_b = nib.load(str(a)), nib.load(str(b))
        if not np.allclose(image_a.affine, image_b.affine, atol=1e-6):
            return "affines differ"
        data_a, data_b = np.asanyarray(image_a.dataobj), np.asanyarray(image_b.dataobj)
        if data_a.shape != data_b.shape:
            return f"shapes differ: {data_a.shape} vs {data_b.shape}"
        if "_mask." in a.name or data_a.dtype.kind in "iub":
            differing = int((data_a != data_b).sum())
            return f"{differing} voxel(s) differ" if differing else None
        gap = float(np.abs(data_a.astype(np.float64) - data_b).max())
        return f"max difference {gap:.3g} > {atol}" if gap > atol else None
    if a.suffix == ".json":
        same = _strip(json.loads(a.read_text())) == _strip(json.loads(b.read_text()))
        return None if same else "sidecars differ"
    return None if a.read_text() == b.read_text() else "tables differ"


def compare(root_a: Path, root_b: Path, atol: float = 1e-4,
            participants: list[str] | None = None) -> list[str]:
    files_a = derivative_files(root_a, participants)
    files_b = derivative_files(root_b, participants)
    problems = [f"only in {root_a}: {name}" for name in sorted(files_a - files_b)]
    problems += [f"only in {root_b}: {name}" for name in sorted(files_b - files_a)]
    for name in sorted(files_a & files_b):
        difference = compare_file(root_a / name, root_b / name, atol)
        if difference:
            problems.append(f"{name}: {difference}")
    if not files_a:
        problems.append(f"{root_a}: no derivatives")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--atol", type=float, default=1e-4,
                        help="tolerance for non-mask images (default 1e-4)")
    parser.add_argument("--participants", nargs="+", metavar="LABEL",
                        help="compare only these participants' derivatives")
    args = parser.parse_args(argv)
    problems = compare(args.first, args.second, args.atol, args.participants)
    for problem in problems:
        print(problem)
    count = len(derivative_files(args.first, args.participants))
    print(f"{count} file(s) compared: {'identical' if not problems else f'{len(problems)} difference(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
