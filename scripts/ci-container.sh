#!/usr/bin/env bash
# Run the demo dataset through the CPU image the way users run it (no network, non-root
# --user 1000:1000, read-only root file system, input mounted read-only), at participant and
# group level, then run the same outside the container and require the same results.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/container-env.sh
if [ -n "${BIDS_DL_PREBUILT_IMAGE:-}" ] && podman image exists "$IMAGE"; then
  echo "image $IMAGE: prebuilt"  # CircleCI: built by its build_image job
else
  bash scripts/ci-build-image.sh
fi
scratch=$(mktemp -d /tmp/bids-dl-container.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
bids-dl-demo "$scratch/demo" >/dev/null
mkdir -p "$scratch/container-out" "$scratch/container-work"
chown -R 1000:1000 "$scratch/container-out" "$scratch/container-work"
run_in_container() {
  podman run --rm --network none --user 1000:1000 --read-only \
    -v "$scratch/demo:/data:ro" -v "$scratch/container-out:/out" \
    -v "$scratch/container-work:/work" "$IMAGE" /data /out "$@"
}
tic=$(date +%s)
run_in_container participant -w /work --nprocs 2
run_in_container group
echo "container: participant + group in $(( $(date +%s) - tic )) s"
# any uid without a passwd entry works too (HOME and caches in /tmp, matplotlib included)
cp -r "$scratch/container-out" "$scratch/any-user-out" && chmod -R a+rwX "$scratch/any-user-out"
podman run --rm --network none --user 54321:54321 --read-only -v "$scratch/demo:/data:ro" \
  -v "$scratch/any-user-out:/out" "$IMAGE" /data /out group
tic=$(date +%s)
bids-dl "$scratch/demo" "$scratch/host-out" participant -w "$scratch/host-work" --nprocs 2
bids-dl "$scratch/demo" "$scratch/host-out" group
echo "host: participant + group in $(( $(date +%s) - tic )) s"
test -f "$scratch/container-out/sub-01.html" && test -f "$scratch/container-out/group/report.html"
grep -q '"Container"' "$scratch/container-out/dataset_description.json"
python3 scripts/compare_derivatives.py "$scratch/container-out" "$scratch/host-out"
