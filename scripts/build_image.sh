#!/usr/bin/env bash
# Build the worker image without a Docker engine, and run `forecast health` inside it.
#   sudo scripts/build_image.sh            (root: buildah with chroot isolation, debootstrap)
# The base is bootstrapped from Debian's packages (bookworm: Python 3.11), the image is built from the
# Dockerfile with buildah, then `forecast health --no-model` runs in a container of it. Too slow for CI
# (see docs/DEPLOYMENT.md for the measured time); run it by hand after changing the Dockerfile.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/forecast-image}
BASE=localhost/forecast-base:bookworm
IMAGE=localhost/timesfm-forecast:dev
export BUILDAH_ISOLATION=chroot STORAGE_DRIVER=vfs
command -v buildah >/dev/null && command -v debootstrap >/dev/null \
  || apt-get install -y -q buildah debootstrap || { apt-get update -q && apt-get install -y -q buildah debootstrap; }
mkdir -p "$WORK"
if ! buildah inspect --type image "$BASE" >/dev/null 2>&1; then
  rm -rf "$WORK/rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$WORK/rootfs" \
    http://deb.debian.org/debian
  container=$(buildah from scratch)
  buildah copy "$container" "$WORK/rootfs" /
  # This machine's CA bundle, so pip inside the build trusts the same registries (and proxy) as the host.
  buildah copy "$container" /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
  buildah config --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt "$container"
  buildah commit --rm "$container" "$BASE"
fi
# The machine's CPU torch wheel (if any) is mounted so pip does not download the multi-GB CUDA build.
wheels=$(ls -d /opt/wheels 2>/dev/null || true)
buildah bud --isolation=chroot --layers=false --build-arg BASE_IMAGE="$BASE" \
  ${wheels:+--volume "$wheels:$wheels:ro" --build-arg PIP_FIND_LINKS="$wheels"} -t "$IMAGE" .
container=$(buildah from "$IMAGE")
trap 'buildah rm "$container" >/dev/null' EXIT
buildah run --isolation=chroot "$container" -- forecast health --no-model --min-free-gb 0.1
echo "image $IMAGE: forecast health exited 0"
