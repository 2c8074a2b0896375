#!/usr/bin/env bash
# Build the CPU image ($IMAGE) with podman from the Dockerfile, on the local base image, and
# lint the Dockerfile. This machine's pip configuration and local package mirrors (if any)
# are mounted into the build read-only, so the build installs the same wheels as the host
# without the Dockerfile knowing about them. Layers are cached between runs by podman.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/container-env.sh
hadolint Dockerfile
bash scripts/ci-base-image.sh
tic=$(date +%s)
podman build --pull=never --runtime runc "${PIP_MOUNTS[@]}" \
  --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg TF_VARIANT=cpu --build-arg VERSION="$VERSION" \
  -t "$IMAGE" . > /tmp/bids-dl-image-build.log 2>&1 || { tail -50 /tmp/bids-dl-image-build.log; exit 1; }
echo "image $IMAGE built in $(( $(date +%s) - tic )) s: $(podman image inspect "$IMAGE" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"
