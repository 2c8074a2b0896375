#!/usr/bin/env bash
# The test command of the README: lint, then the test suite (CPU, TensorFlow backend).
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check bids_dl tests benchmarks
KERAS_BACKEND=tensorflow python3 -m pytest -q "$@"
