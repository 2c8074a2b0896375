# Sourced by the container scripts: podman settings this kind of machine needs (runc, not
# crun, which fails on hybrid cgroups; explicit ulimits, which podman cannot raise here).
# shellcheck shell=bash
export CONTAINERS_CONF="${CONTAINERS_CONF:-/tmp/bids-dl-containers.conf}"
if [ ! -f "$CONTAINERS_CONF" ]; then
  cat > "$CONTAINERS_CONF" <<CONF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=32768:32768"]
[engine]
runtime = "runc"
CONF
fi
BASE_IMAGE="${BASE_IMAGE:-localhost/bids-dl-base:bookworm}"
IMAGE="${IMAGE:-localhost/bids-dl:cpu}"
# This machine's pip configuration and local wheel mirrors (if any), mounted read-only into
# image builds so they install the host's wheels; never part of the Dockerfile.
PIP_MOUNTS=()
for path in /etc/pip.conf /etc/xdg/pip /opt/pypi /opt/pypi-more /opt/wheels; do
  if [ -e "$path" ]; then PIP_MOUNTS+=(-v "$path:$path:ro"); fi
done
VERSION=$(python3 -c "import re; print(re.search(r'__version__ = \"(.+)\"', open('bids_dl/__init__.py').read())[1])")
