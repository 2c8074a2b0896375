#!/usr/bin/env bash
# Singularity/Apptainer cannot be installed here, so check the recipes the way that works
# offline: convert each with spython to a Dockerfile and build that with podman (which runs
# the recipe's %files/%post for real), then run its %test command and its %runscript.
# Needs the image of scripts/ci-build-image.sh (singularity.def bootstraps from it); that image
# is removed afterwards to free disk (BIDS_DL_KEEP_IMAGE=1 keeps it).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/container-env.sh
podman tag "$IMAGE" "docker.io/bids-dl/bids-dl:$VERSION"
podman tag "$BASE_IMAGE" docker.io/library/debian:bookworm-slim
scratch=$(mktemp -d /tmp/bids-dl-sif.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
for recipe in singularity.def singularity-source.def; do
  # spython writes %test as a RUN that appends to /tests.sh plus a HEALTHCHECK line that is
  # not Dockerfile syntax: leave both out and run the %test command ourselves below.
  spython recipe --parser singularity --writer docker "$recipe" \
    | grep -v -e '/tests.sh' -e '^HEALTHCHECK' > "$scratch/$recipe.Dockerfile"
  tag="localhost/bids-dl-sif:${recipe%.def}"
  tic=$(date +%s)
  podman build --pull=never --runtime runc "${PIP_MOUNTS[@]}" -f "$scratch/$recipe.Dockerfile" \
    -t "$tag" . > "$scratch/build.log" 2>&1 || { tail -40 "$scratch/build.log"; exit 1; }
  test_command=$(awk '/^%/ {on = ($1 == "%test"); next} on' "$recipe")
  tested=$(podman run --rm --network none --user 1000:1000 --entrypoint bash "$tag" -c "$test_command")
  [ "$tested" = "bids-dl $VERSION" ] || { echo "$recipe %test printed: $tested" >&2; exit 1; }
  helped=$(podman run --rm --network none --user 1000:1000 --entrypoint bash "$tag" \
    -c 'exec bids-dl "$@"' runscript --help)
  grep -q "BIDS_DIR OUTPUT_DIR" <<< "$helped"
  echo "$recipe: converted, built in $(( $(date +%s) - tic )) s, %test and %runscript pass"
  # Each recipe's image is checked: free its disk before the next build (a from-scratch build
  # needs its own ~2 GB of Python packages, twice while podman commits the layer). The Docker
  # image is no longer needed either once singularity.def, which bootstraps from it, passed.
  podman rmi -f "$tag" >/dev/null
  if [ "$recipe" = singularity.def ] && [ -z "${BIDS_DL_KEEP_IMAGE:-}" ]; then
    podman rmi -f "docker.io/bids-dl/bids-dl:$VERSION" "$IMAGE" >/dev/null
  fi
  podman image prune -f >/dev/null
  echo "disk after $recipe: $(df -h --output=avail "$(podman info --format '{{.Store.GraphRoot}}')" | tail -1 | tr -d ' ') free"
done
