"""Synthetic FLAIRs for pooled lesion training: the input ``--synthesize-missing`` gives the
lesion model.

The pipeline segments a T1w-only participant on the synthesis model's FLAIR of the T1w
(:mod:`bids_dl.models.contrast_synthesis`) with that T1w. A lesion model trained only on
rendered FLAIRs meets a different image there: its lesions fainter (contrast ~1.2 x white
matter), its textures smoother. Here each pooled lesion head (whole 1.5 mm grid, both
contrasts) gets the synthesis model's FLAIR of its own T1w, normalised inside the brain as the
FLAIR channel is, stored beside the head (``synthetic_flair`` of the pool's ``.npz``); the
pool's patches then read it at ``LesionConfig.p_synthetic_flair``.

Run in the training process by ``bids-dl-train lesion-segmentation --synthetic-flair P``, or
beforehand on a rendered pool folder (any backend; TensorFlow is ~2.5x faster than PyTorch on
CPU here: ~2.6 s per head)::

    python -m bids_dl.training.synthetic_inputs WORK_DIR/pool
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ..models.grid import LESION_SPACING, normalise_in_mask
from ..utils.io import atomic_path

FIELD = "synthetic_flair"


def synthetic_flair(model, t1w: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """The FLAIR that ``model`` (a contrast-synthesis model, outputs FLAIR, T2w, CT) makes of
    ``t1w`` (``(x, y, z)``, the 1.5 mm lesion grid, normalised inside ``brain``), as the
    lesion model's FLAIR channel: float32 ``(x, y, z)`` normalised inside ``brain``. The
    synthesis runs on 64³ tiles over the whole grid, as :func:`synthesize` does."""
    from ..models.contrast_synthesis import TARGETS, TILE
    from ..models.engine import GridSpec, InferenceEngine

    engine = InferenceEngine(model, GridSpec(tuple(t1w.shape), LESION_SPACING))
    outputs = engine.predict_tiled(np.asarray(t1w, np.float32)[..., None], TILE)
    flair = np.clip(outputs[..., TARGETS.index("FLAIR")], 0, None)
    return normalise_in_mask(flair, brain)


def add_synthetic_flairs(folder: Path, model=None) -> int:
    """Add ``synthetic_flair`` to every pooled lesion head (``sample-*.npz`` in ``folder``)
    that has both contrasts and none yet (stored float16, atomically); ``model``: a
    synthesis model instead of the shipped one. Returns the heads changed."""
    paths = sorted(Path(folder).glob("sample-*.npz"))
    todo = []
    for path in paths:
        with np.load(path) as data:
            if FIELD not in data.files and bool(np.all(data["present"])):
                todo.append(path)
    if not todo:
        return 0
    if model is None:
        from ..models.registry import load_model

        model, _ = load_model("contrast-synthesis")
    tic = time.time()
    for path in todo:
        with np.load(path) as data:
            arrays = {name: data[name] for name in data.files}
        t1w = arrays["image"][1].astype(np.float32)
        arrays[FIELD] = synthetic_flair(model, t1w, arrays["brain"] > 0).astype(np.float16)
        with atomic_path(path) as tmp:
            np.savez(tmp, **arrays)
    print(f"synthetic FLAIRs for {len(todo)} pool heads in {time.time() - tic:.0f} s",
          flush=True)
    return len(todo)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bids_dl.training.synthetic_inputs",
        description="Add the shipped synthesis model's FLAIR of each head's T1w to a "
                    "rendered lesion pool (WORK_DIR/pool of bids-dl-train).")
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if not any(args.folder.glob("sample-*.npz")):
        raise SystemExit(f"{args.folder}: no pooled heads (sample-*.npz)")
    add_synthetic_flairs(args.folder)


if __name__ == "__main__":
    main()
