"""``DerivativesSink``: copy a node's files to their BIDS-Derivatives names, with sidecars."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    OutputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)


class _DerivativesSinkInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(File(exists=True), mandatory=True, desc="files to store")
    relpaths = InputMultiObject(traits.Str, mandatory=True,
                                desc="derivative path of each file, relative to out_dir")
    sidecars = traits.List(traits.Any, mandatory=True,
                           desc="JSON sidecar of each file (None: no sidecar)")
    metadata = traits.Dict(desc="fields added to every sidecar (model, device, runtime...)")
    with_measures = InputMultiObject(traits.Bool, desc="whether each sidecar also gets the "
                                     "metadata's 'Measures' (default: none)")
    out_dir = traits.Str(mandatory=True, desc="the derivatives dataset root")


class _DerivativesSinkOutputSpec(TraitedSpec):
    out_files = OutputMultiObject(File(exists=True), desc="the stored files")


class DerivativesSink(SimpleInterface):
    """Store files atomically (temporary name beside the target, then rename), each with its
    JSON sidecar; runs every time (cheap), so deleted outputs come back on a cached rerun."""

    input_spec = _DerivativesSinkInputSpec
    output_spec = _DerivativesSinkOutputSpec
    _always_run = True

    def _run_interface(self, runtime):
        from ..utils.io import atomic_path

        files, relpaths, sidecars = (self.inputs.in_files, self.inputs.relpaths,
                                     self.inputs.sidecars)
        if not len(files) == len(relpaths) == len(sidecars):
            raise ValueError("DerivativesSink: in_files, relpaths and sidecars differ in length")
        measures = list(self.inputs.with_measures or []) or [False] * len(files)
        metadata = dict(self.inputs.metadata or {})
        root, stored = Path(self.inputs.out_dir), []
        for source, relpath, sidecar, measured in zip(files, relpaths, sidecars, measures):
            target = root / relpath
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)
            stored.append(str(target))
            if sidecar is None:
                continue
            extra = metadata if measured else {k: v for k, v in metadata.items()
                                               if k != "Measures"}
            json_path = target.with_name(target.name.split(".")[0] + ".json")
            with atomic_path(json_path) as tmp:
                Path(tmp).write_text(json.dumps({**sidecar, **extra}, indent=2,
                                                sort_keys=True) + "\n")
        self._results["out_files"] = stored
        return runtime

