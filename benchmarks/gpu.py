"""The three models on a GPU: throughput, memory, and agreement with the TensorFlow CPU result.

Run once on the CPU machine to write the reference (the inputs and TensorFlow-CPU outputs),
then on the GPU machine under each backend to compare against it::

    python benchmarks/gpu.py --write-reference DIR
    KERAS_BACKEND=torch python benchmarks/gpu.py --reference DIR [--runs 10] [--json OUT]

Inputs: Colin27 (``ch2``) for brain extraction and T1w->FLAIR/T2w/CT synthesis; a 1 mm
FLAIR + T1w pair with 25 lesions (rendered from the demo head) for lesion segmentation, and
its FLAIR alone (the pair needs SimpleITK for the FLAIR-T1w registration, CPU code that a GPU
machine may lack; the task is then skipped). The
pair is not stored (60 MB): each machine renders it, and the reference keeps the sha256 of
its voxels to show both rendered the same images. Synthesised images are compared on every
second voxel along each axis (an eighth of the voxels keeps the reference small).
Per task: first call (model load and warm-up), warm seconds per volume (median of ``runs``
calls, whole in-process call: loading, resampling, prediction, writing nothing), volumes/s,
peak GPU memory of the backend's allocator, and the largest voxel difference and mask Dice
against the CPU reference. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SYNTHESIS_TARGETS = ("FLAIR", "T2w", "CT")
SUBSAMPLED = (slice(None, None, 2),) * 3  # synthesis outputs: every second voxel


def run_task(task: str, inputs: dict[str, Path], device: str) -> dict[str, np.ndarray]:
    """The outputs of ``task`` on ``inputs`` as arrays (native grid of the input)."""
    if task == "brain-extraction":
        from bids_dl.models.brain_extraction import extract_brain

        result = extract_brain(inputs["T1w"], device=device)
        return {"probseg": result.probseg.get_fdata(dtype=np.float32),
                "mask": np.asarray(result.mask.dataobj)}
    if task.startswith("lesion-segmentation"):
        from bids_dl.models.lesion_segmentation import segment_lesions

        result = segment_lesions(inputs["FLAIR"], inputs.get("T1w"), device=device)
        return {"probseg": result.probseg.get_fdata(dtype=np.float32),
                "mask": np.asarray(result.mask.dataobj)}
    from bids_dl.models.contrast_synthesis import synthesize

    result = synthesize(inputs["T1w"], SYNTHESIS_TARGETS, device=device)
    return {name: image.get_fdata(dtype=np.float32)[SUBSAMPLED]
            for name, image in result.images.items()}


def lesion_pair(folder: Path) -> str:
    """Render the lesion pair into ``folder`` (unless there); the sha256 of its voxels."""
    import hashlib

    import nibabel as nib

    from benchmarks.lesions import write_pair

    paths = task_inputs(folder)["lesion-segmentation"]
    if not all(path.is_file() for path in paths.values()):
        write_pair(folder)
    digest = hashlib.sha256()
    for name in ("FLAIR", "T1w"):
        digest.update(np.ascontiguousarray(nib.load(paths[name]).get_fdata()).tobytes())
    return digest.hexdigest()


def task_inputs(reference: Path) -> dict[str, dict[str, Path]]:
    return {"brain-extraction": {"T1w": reference / "ch2.nii.gz"},
            "lesion-segmentation": {"FLAIR": reference / "sub-01_FLAIR.nii.gz",
                                    "T1w": reference / "sub-01_T1w.nii.gz"},
            "lesion-segmentation-flair": {"FLAIR": reference / "sub-01_FLAIR.nii.gz"},
            "contrast-synthesis": {"T1w": reference / "ch2.nii.gz"}}


def model_checksums() -> dict[str, str]:
    """sha256 of each shipped model's weights (from its verified card)."""
    from bids_dl.models import registry

    return {name: registry.verify(entry)["sha256"] for name, entry in registry.REGISTRY.items()}


def write_reference(folder: Path, tasks: list[str] | None = None) -> None:
    """Inputs and the TensorFlow CPU outputs (float16, compressed) of ``tasks`` (default:
    all) into ``folder``; Colin27 only where a task reads it (the lesion tasks alone make a
    reference of 5 MB, which leaves the carry room for the SimpleITK wheel)."""
    import shutil

    os.environ["KERAS_BACKEND"] = "tensorflow"
    from bids_dl.synth.sources import colin27

    tasks = tasks or list(task_inputs(folder))
    folder.mkdir(parents=True, exist_ok=True)
    if any("T1w" in task_inputs(folder)[task] and not task.startswith("lesion")
           for task in tasks):
        shutil.copy(colin27()[0], folder / "ch2.nii.gz")
    (folder / "lesion_pair.sha256").write_text(lesion_pair(folder))
    (folder / "models.json").write_text(json.dumps(model_checksums(), indent=1))
    for task, inputs in task_inputs(folder).items():
        if task not in tasks:
            continue
        outputs = run_task(task, inputs, "cpu")
        np.savez_compressed(folder / f"{task}.npz",
                            **{k: v.astype(np.float16) for k, v in outputs.items()})
        print(f"wrote {folder / task}.npz", flush=True)
    for path in task_inputs(folder)["lesion-segmentation"].values():
        path.unlink()  # each machine renders its own (see lesion_pair)


def peak_gpu_megabytes(reset: bool = False) -> float | None:
    import keras

    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        if reset:
            torch.cuda.reset_peak_memory_stats()
        return torch.cuda.max_memory_allocated() / 2**20
    if backend == "jax":
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        return stats.get("peak_bytes_in_use", 0) / 2**20
    if backend == "tensorflow":
        import tensorflow as tf

        if reset:
            tf.config.experimental.reset_memory_stats("GPU:0")
        return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    return None


def compare(outputs: dict, reference: dict) -> dict:
    """Largest absolute difference per output and the mask Dice against the reference."""
    from bids_dl.training.evaluate import dice

    row = {}
    for name, value in outputs.items():
        expected = reference[name].astype(np.float32)
        if name == "mask":
            row["mask_dice"] = round(dice(value, expected), 5)
        else:
            scale = float(np.ptp(expected)) or 1.0
            row[f"{name}_max_abs_diff"] = float(np.abs(value - expected).max())
            row[f"{name}_max_rel_diff"] = float(np.abs(value - expected).max() / scale)
    return row


def benchmark(reference: Path, runs: int, tasks: list[str], device: str = "gpu") -> list[dict]:
    import keras

    rows = []
    if json.loads((reference / "models.json").read_text()) != model_checksums():
        print("WARNING: the reference was made with other model weights; make it again "
              "(--write-reference) before reading the agreement columns", flush=True)
    try:
        import SimpleITK  # noqa: F401
    except ImportError:
        if "lesion-segmentation" in tasks:
            print("SimpleITK not installed: lesion-segmentation (FLAIR + T1w) skipped",
                  flush=True)
            tasks = [task for task in tasks if task != "lesion-segmentation"]
    if any(task.startswith("lesion-segmentation") for task in tasks):
        same = lesion_pair(reference) == (reference / "lesion_pair.sha256").read_text()
        print(f"lesion pair rendered {'identical to' if same else 'DIFFERENT from'} the "
              "reference machine's", flush=True)
    for task in tasks:
        inputs = task_inputs(reference)[task]
        tic = time.perf_counter()
        outputs = run_task(task, inputs, device)
        first = time.perf_counter() - tic
        if device == "gpu":
            peak_gpu_megabytes(reset=True)
        seconds = []
        for _ in range(runs):
            tic = time.perf_counter()
            run_task(task, inputs, device)
            seconds.append(time.perf_counter() - tic)
        with np.load(reference / f"{task}.npz") as stored:
            agreement = compare(outputs, dict(stored))
        backend = keras.backend.backend()
        if device == "gpu" and os.environ.get("NVIDIA_TF32_OVERRIDE") == "0":
            backend += " (TF32 off)"
        rows.append({"task": task, "backend": backend, "first_call_s": first,
                     "warm_s": statistics.median(seconds), "volumes_per_s": runs / sum(seconds),
                     "device": device,
                     "peak_gpu_mb": peak_gpu_megabytes() if device == "gpu" else None,
                     **agreement})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def print_table(rows: list[dict]) -> None:
    print("\n| task | backend, device | first call s | warm s/volume | volumes/s "
          "| peak GPU MB | mask Dice vs TF CPU | largest difference vs TF CPU |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        diffs = {k: v for k, v in row.items() if k.endswith("_max_abs_diff")}
        largest = max(diffs, key=diffs.get)
        dice_text = f"{row['mask_dice']:.4f}" if "mask_dice" in row else "-"
        memory = f"{row['peak_gpu_mb']:.0f}" if row["peak_gpu_mb"] is not None else "-"
        print(f"| {row['task']} | {row['backend']}, {row['device']} | {row['first_call_s']:.1f} "
              f"| {row['warm_s']:.3f} | {row['volumes_per_s']:.2f} | {memory} "
              f"| {dice_text} | {largest.removesuffix('_max_abs_diff')} "
              f"{diffs[largest]:.3g} ({row[largest.replace('abs', 'rel')]:.2%} of range) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write-reference", type=Path, metavar="DIR")
    parser.add_argument("--reference", type=Path, metavar="DIR")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--tasks", default="brain-extraction,lesion-segmentation,"
                                           "lesion-segmentation-flair,contrast-synthesis")
    parser.add_argument("--device", default="gpu", choices=("gpu", "cpu"),
                        help="cpu: a dry run of the comparison without a GPU")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    if args.write_reference:
        write_reference(args.write_reference, args.tasks.split(","))
        return
    if not args.reference:
        parser.error("give --reference DIR (made with --write-reference on a CPU machine)")
    rows = benchmark(args.reference, args.runs, args.tasks.split(","), args.device)
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
