"""A pool of pre-rendered samples to cut training patches from (training on few CPU cores).

Rendering a whole head costs 1.6-3 s on one core, a training step on a 64³ patch well under
that; so on a CPU the generator, not the network, sets the pace. A pool renders ``size``
whole-grid samples once (cached in a folder as ``.npz``; a resumed run reuses them) and every
training sample is then a random patch of a random pool entry (cut by the generator's own
``crop``), mirrored left-right at random: many different patches per render. The pool is a
pure function of ``seed``, and every patch of ``(seed, step, index)``. Works for any generator
whose samples are dataclasses of arrays (lesion samples, synthesis pairs).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import time
from pathlib import Path

import numpy as np

from ..utils.io import atomic_path

POOL_SEED = 1_000_000  # pool entries use seeds (seed, POOL_SEED + i): never a training step's


def _render(args) -> None:
    heads, seed, index, path = args
    (sample,) = heads.samples((seed, POOL_SEED + index), 1)
    arrays = {}
    for item in dataclasses.fields(sample):
        if getattr(sample, item.name) is None:  # an optional array not made (yet)
            continue
        value = np.asarray(getattr(sample, item.name))
        arrays[item.name] = value.astype(np.float16) if value.dtype == np.float32 else value
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)


def _mirrored(sample, flip: bool):
    """``sample`` with its volumes as float32 (images) and, when ``flip``, mirrored along x
    (the third axis from the end); the affine is kept (training does not read it)."""
    values = {}
    for item in dataclasses.fields(sample):
        value = getattr(sample, item.name)
        if isinstance(value, np.ndarray) and value.ndim >= 3:
            if flip:
                value = np.flip(value, axis=-3)
            value = value.astype(np.float32) if value.dtype == np.float16 else value.copy()
        values[item.name] = value
    return type(sample)(**values)


class PatchPool:
    """Patches of ``patch`` voxels cut from ``size`` whole-grid samples of ``heads`` (a
    generator with ``samples``, ``crop`` and ``sample_type``, configured without patches),
    kept in ``folder``."""

    def __init__(self, heads, folder: Path, size: int, seed: int, patch: int,
                 workers: int = 1):
        self.heads, self.folder, self.size, self.patch = heads, Path(folder), size, patch
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
        self._cache: dict[int, object] = {}

    def path(self, index: int) -> Path:
        return self.folder / f"sample-{index:05d}.npz"

    def entry(self, index: int):
        """Pool entry ``index`` as the generator's sample type (images float16 in memory:
        240 lesion heads ~3.5 GB)."""
        if index not in self._cache:
            with np.load(self.path(index)) as data:
                self._cache[index] = self.heads.sample_type(
                    **{name: data[name] for name in data.files})
        return self._cache[index]

    def sample(self, seed):
        """One patch: a pure function of ``seed``."""
        rng = np.random.default_rng(seed)
        whole = self.entry(int(rng.integers(self.size)))
        patch = self.heads.crop(whole, self.patch, rng)
        return _mirrored(patch, rng.random() < 0.5)
