"""A pool of pre-rendered samples to cut training patches from (training on few CPU cores).

Rendering a whole head costs about 1.6 s on one core, a training step on a 64³ patch well
under that; so on a CPU the generator, not the network, sets the pace. A pool renders
``size`` whole-grid samples once (cached in a folder as ``.npz``; a resumed run reuses them)
and every training sample is then a random patch of a random pool entry, mirrored left-right
at random: many different patches per render. The pool is a pure function of ``seed``, and
every patch of ``(seed, step, index)``.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import numpy as np

from ..synth.lesion_generator import LesionSample, crop_patch
from ..utils.io import atomic_path

POOL_SEED = 1_000_000  # pool entries use seeds (seed, POOL_SEED + i): never a training step's


def _render(args) -> None:
    heads, seed, index, path = args
    (sample,) = heads.samples((seed, POOL_SEED + index), 1)
    with atomic_path(path) as tmp:
        np.savez(tmp, image=sample.image.astype(np.float16), mask=sample.mask,
                 brain=sample.brain, present=np.array(sample.present), affine=sample.affine)


class PatchPool:
    """Patches of ``patch`` voxels cut from ``size`` whole-grid samples of ``heads`` (a
    :class:`~bids_dl.synth.lesion_generator.LesionHeads` without patches), kept in
    ``folder``; a patch is centred on a lesion with probability ``p_on_lesion``."""

    def __init__(self, heads, folder: Path, size: int, seed: int, patch: int,
                 p_on_lesion: float = 0.7, workers: int = 1):
        self.folder, self.size, self.patch, self.p_on_lesion = Path(folder), size, patch, (
            p_on_lesion)
        self.folder.mkdir(parents=True, exist_ok=True)
        missing = [i for i in range(size) if not self.path(i).is_file()]
        if missing:
            tic = time.time()
            jobs = [(heads, seed, i, self.path(i)) for i in missing]
            if workers <= 1:
                for job in jobs:
                    _render(job)
            else:
                with multiprocessing.get_context("fork").Pool(workers) as pool:
                    pool.map(_render, jobs, chunksize=1)
            print(f"rendered {len(missing)} pool samples in {time.time() - tic:.0f} s",
                  flush=True)
        self._cache: dict[int, LesionSample] = {}

    def path(self, index: int) -> Path:
        return self.folder / f"sample-{index:05d}.npz"

    def entry(self, index: int) -> LesionSample:
        if index not in self._cache:
            with np.load(self.path(index)) as data:
                self._cache[index] = LesionSample(  # float16 in memory: 240 heads ~3.5 GB
                    data["image"], data["mask"], data["brain"],
                    tuple(bool(v) for v in data["present"]), data["affine"])
        return self._cache[index]

    def sample(self, seed) -> LesionSample:
        """One patch: a pure function of ``seed``."""
        rng = np.random.default_rng(seed)
        whole = self.entry(int(rng.integers(self.size)))
        patch = crop_patch(whole, self.patch, rng, self.p_on_lesion)
        flip = slice(None, None, -1 if rng.random() < 0.5 else 1)  # left-right mirror (x)
        return LesionSample(patch.image[:, flip].astype(np.float32), patch.mask[:, flip].copy(),
                            patch.brain[flip].copy(), patch.present, patch.affine)
