"""``bids-dl-build-labels``: build the synthetic heads' label maps from open data.

Writes ``OUT_DIR/<anatomy>_head-<NN>.nii.gz`` (uint8, 1 mm head grid) and ``manifest.json``
(anatomy, head seed, split, whether the cortex was redrawn). The same arguments always give
the same files. Odd-numbered heads of the training anatomies get a folded cortex
(:func:`~bids_dl.synth.labels.redraw_cortex`), even ones keep the template's, so training
sees both; every held-out ``jhu189`` head gets its own cortex drawn over jhu189's gyri.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from ..utils.io import atomic_path
from . import labels as label_defs
from .head import add_head

DEFAULT_HEADS = 4


def build(out_dir: Path, heads: int = DEFAULT_HEADS, anatomies=None, seed: int = 0) -> dict:
    """Build ``heads`` label maps per anatomy into ``out_dir``; returns the manifest."""
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"maps": {}}
    names = anatomies or list(label_defs.BUILDERS)
    for index, name in enumerate(names):
        anatomy = gyri = None
        for head in range(heads):
            file_name = f"{name}_head-{head:02d}.nii.gz"
            version = label_defs.ANATOMY_VERSIONS[name]
            entry = manifest["maps"].get(file_name, {})
            if (out_dir / file_name).exists() and entry.get("version", 1) == version:
                continue
            start = time.time()
            head_seed = [seed, list(label_defs.BUILDERS).index(name), head]
            anatomy = label_defs.BUILDERS[name]() if anatomy is None else anatomy
            folded = label_defs.cortex_redrawn(name, head)
            brain = anatomy
            if folded:
                gyri = label_defs.gyral_territories(name, anatomy) if gyri is None else gyri
                brain = label_defs.redraw_cortex(anatomy, gyri,
                                                 np.random.default_rng([*head_seed, 1]))
            labels = add_head(brain, np.random.default_rng(head_seed))
            image = nib.Nifti1Image(labels, label_defs.HEAD_AFFINE)
            image.header.set_xyzt_units("mm")
            with atomic_path(out_dir / file_name) as tmp:
                nib.save(image, tmp)
            manifest["maps"][file_name] = {
                "anatomy": name,
                "head_seed": head_seed,
                "split": label_defs.ANATOMIES[name],
                "version": version,
                "folded_cortex": folded,
            }
            print(f"[{index + 1}/{len(names)}] {file_name} ({time.time() - start:.1f} s)", flush=True)
    manifest["labels"] = label_defs.LABELS
    manifest["brain_labels"] = list(label_defs.BRAIN_LABELS)
    with atomic_path(manifest_path) as tmp:
        Path(tmp).write_text(json.dumps(manifest, indent=2))
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bids-dl-build-labels", description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--heads", type=int, default=DEFAULT_HEADS, help="label maps per anatomy")
    parser.add_argument("--anatomies", nargs="+", choices=list(label_defs.BUILDERS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        build(args.out_dir, args.heads, args.anatomies, args.seed)
    except FileNotFoundError as error:
        print(f"bids-dl-build-labels: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
