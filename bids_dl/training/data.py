"""Training batches from the synthetic generator, made in worker processes."""

from __future__ import annotations

import json
import multiprocessing
from collections import deque
from pathlib import Path

import nibabel as nib
import numpy as np

from ..synth.generator import GeneratorConfig, SyntheticHeads

_HEADS: SyntheticHeads | None = None


def load_label_maps(folder: Path, split: str = "train") -> tuple[list[np.ndarray], list[str]]:
    """Label maps of ``split`` listed in ``folder/manifest.json`` (from bids-dl-build-labels)."""
    manifest_path = Path(folder) / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path}: not found; run bids-dl-build-labels {folder}")
    manifest = json.loads(manifest_path.read_text())
    names = sorted(n for n, entry in manifest["maps"].items() if entry["split"] == split)
    if not names:
        raise FileNotFoundError(f"{manifest_path}: no label maps of split {split!r}")
    maps = [np.asarray(nib.load(str(Path(folder) / n)).dataobj, dtype=np.uint8) for n in names]
    return maps, names


def _init_worker(heads: SyntheticHeads) -> None:
    global _HEADS
    _HEADS = heads


#: Lesion size (voxels of the 1.5 mm grid, ~1 ml) at and above which a lesion's voxels weigh 1
#: in the small-lesion weighting of :func:`small_lesion_weights`
SMALL_LESION_REFERENCE = 300


def small_lesion_weights(lesions: np.ndarray, cap: float) -> np.ndarray:
    """Voxel weights ``(x, y, z)`` for a binary lesion mask ``(x, y, z)``: 1 outside lesions
    and in lesions of >= :data:`SMALL_LESION_REFERENCE` voxels, ``(reference / voxels)^0.5``
    (at most ``cap``) in smaller ones (26-connected components of the patch), so that a
    10 mm³ lesion's voxels pull on the cross-entropy harder than a confluent patch's."""
    from scipy import ndimage

    weights = np.ones(lesions.shape, np.float32)
    components, count = ndimage.label(lesions > 0, structure=np.ones((3, 3, 3)))
    if count:
        sizes = np.bincount(components.ravel())[1:].astype(np.float32)
        per_component = np.clip(np.sqrt(SMALL_LESION_REFERENCE / sizes), 1.0, cap)
        inside = components > 0
        weights[inside] = per_component[components[inside] - 1]
    return weights


def lesion_instances(lesions: np.ndarray, max_blobs: int, radius: float) -> np.ndarray:
    """Lesion instances of a binary lesion mask ``(x, y, z)``: float32 ``(2, x, y, z)``, the
    ids of the patch's 26-connected lesions (1..``max_blobs``, smallest first; 0 outside
    lesions, ``max_blobs + 1`` for any others) and each lesion's neighbourhood (every voxel
    within ``radius`` voxels of a lesion takes the id of its nearest lesion; 0 farther),
    where the blob loss scores that lesion."""
    from scipy import ndimage

    components, count = ndimage.label(lesions > 0, structure=np.ones((3, 3, 3)))
    ids = np.zeros(count + 1, np.float32)
    if not count:
        return np.zeros((2, *lesions.shape), np.float32)
    order = np.argsort(np.bincount(components.ravel())[1:], kind="stable")
    ids[order + 1] = np.minimum(np.arange(1, count + 1), max_blobs + 1)
    distance, nearest = ndimage.distance_transform_edt(components == 0, return_indices=True)
    region = ids[components[tuple(nearest)]]
    region[distance > radius] = 0
    return np.stack([ids[components], region])


def has_acquired_flair(sample) -> bool:
    """Whether a lesion training sample's FLAIR channel holds an acquired (rendered) FLAIR:
    present and not the synthesis model's FLAIR of its T1w."""
    present = getattr(sample, "present", (True,))
    return bool(present[0]) and not getattr(sample, "flair_is_synthetic", False)


def has_thin_flair(sample) -> bool:
    """Whether a lesion training sample's FLAIR is acquired (:func:`has_acquired_flair`) and
    without thick slices: the input where lesions of a few voxels show."""
    return has_acquired_flair(sample) and not bool(getattr(sample, "flair_thick", False))


def make_batch(args: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Batch ``(seed, step, batch_size, patches_per_head[, small_lesion_weight[, blob_loss[,
    blob_flair_only[, blob_thin_flair_only]]]])``
    -> image
    ``(batch, channels, x, y, z)`` and masks ``(batch, targets, x, y, z)`` arrays
    (channels-first) as float32; a pure function of its arguments. Generators that can cut
    several patches from one rendered head (``samples``) do so ``patches_per_head`` at a time.
    A ``small_lesion_weight`` > 0 appends one more mask channel: the voxel weights of
    :func:`small_lesion_weights` for the first target (lesions), which the loss reads; a true
    ``blob_loss`` appends the lesions' instance ids and neighbourhoods
    (:func:`lesion_instances`) for
    :func:`~bids_dl.training.losses.blob_dice_bce_loss`; with ``blob_flair_only`` they are
    zeros (no lesion scored on its own) in patches without an acquired FLAIR (T1w alone, or
    the synthetic FLAIR), whose small lesions the image cannot show; with
    ``blob_thin_flair_only`` also in patches whose FLAIR has thick slices
    (:func:`has_thin_flair`)."""
    seed, step, batch_size, per_head = args[:4]
    small_lesion_weight = args[4] if len(args) > 4 else 0.0
    blob_loss = bool(args[5]) if len(args) > 5 else False
    blob_flair_only = bool(args[6]) if len(args) > 6 else False
    blob_thin_flair_only = bool(args[7]) if len(args) > 7 else False
    samples = []
    if per_head > 1 and hasattr(_HEADS, "samples"):
        head = 0
        while len(samples) < batch_size:
            samples += _HEADS.samples((seed, step, head), per_head)
            head += 1
        samples = samples[:batch_size]
    else:
        samples = [_HEADS.sample((seed, step, i)) for i in range(batch_size)]
    images = np.stack([s.image if s.image.ndim == 4 else s.image[None] for s in samples])
    masks = np.stack([s.mask if s.mask.ndim == 4 else s.mask[None]
                      for s in samples]).astype(np.float32)
    if small_lesion_weight > 0:
        weights = np.stack([small_lesion_weights(m[0], small_lesion_weight) for m in masks])
        masks = np.concatenate([masks, weights[:, None]], axis=1)
    if blob_loss:
        from .losses import BLOB_RADIUS, MAX_BLOBS

        instances = np.stack([lesion_instances(m[0], MAX_BLOBS, BLOB_RADIUS) for m in masks])
        if blob_flair_only or blob_thin_flair_only:
            scored = has_thin_flair if blob_thin_flair_only else has_acquired_flair
            for sample, blobs in zip(samples, instances):
                if not scored(sample):
                    blobs[:] = 0
        masks = np.concatenate([masks, instances], axis=1)
    return images, masks


class BatchStream:
    """Iterate batches for steps ``start..stop-1`` from ``workers`` forked processes, at most
    ``prefetch`` batches ahead (so the generator does not steal CPU from training)."""

    def __init__(self, heads: SyntheticHeads, seed: int, start: int, stop: int,
                 batch_size: int = 1, workers: int = 1, prefetch: int = 3,
                 patches_per_head: int = 1, small_lesion_weight: float = 0.0,
                 blob_loss: bool = False, blob_flair_only: bool = False,
                 blob_thin_flair_only: bool = False):
        self.heads, self.seed, self.patches_per_head = heads, seed, patches_per_head
        self.small_lesion_weight, self.blob_loss = small_lesion_weight, blob_loss
        self.blob_flair_only, self.blob_thin_flair_only = blob_flair_only, blob_thin_flair_only
        self.start, self.stop, self.batch_size, self.workers = start, stop, batch_size, workers
        self.prefetch = max(prefetch, workers)

    def __iter__(self):
        jobs = [(self.seed, step, self.batch_size, self.patches_per_head,
                 self.small_lesion_weight, self.blob_loss, self.blob_flair_only,
                 self.blob_thin_flair_only)
                for step in range(self.start, self.stop)]
        if self.workers <= 0:
            _init_worker(self.heads)
            yield from map(make_batch, jobs)
            return
        context = multiprocessing.get_context("fork")
        with context.Pool(self.workers, _init_worker, (self.heads,)) as pool:
            pending = deque(pool.apply_async(make_batch, (job,)) for job in jobs[:self.prefetch])
            for job in jobs[self.prefetch:] + [None] * len(pending):
                batch = pending.popleft().get()
                if job is not None:
                    pending.append(pool.apply_async(make_batch, (job,)))
                yield batch


def patch_config(patch: int | None) -> GeneratorConfig:
    """Generator settings for cubic training patches of ``patch`` voxels (None: whole grid)."""
    if not patch:
        return GeneratorConfig()
    return GeneratorConfig(out_shape=(patch, patch, patch), max_shift=35.0)
