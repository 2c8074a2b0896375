#!/usr/bin/env bash
# Make the Debian base image locally (no registry here): debootstrap a minimal bookworm root
# file system and import it into podman as $BASE_IMAGE. This machine's extra CA certificates
# go into it, so that pip can reach package indexes through the TLS-intercepting proxy of
# this network (never part of the Dockerfile). Cached: an existing image is kept unless
# --rebuild is given.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/container-env.sh
if [ "${1:-}" != "--rebuild" ] && podman image exists "$BASE_IMAGE"; then
  echo "base image $BASE_IMAGE: cached"
  exit 0
fi
rootfs=$(mktemp -d /tmp/bids-dl-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "$mirror" >/tmp/debootstrap.log
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
  chroot "$rootfs" update-ca-certificates >/dev/null
fi
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | podman import --change "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt" - "$BASE_IMAGE" >/dev/null
echo "base image $BASE_IMAGE: built"
