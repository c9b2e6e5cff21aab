#!/usr/bin/env bash
# Build the worker image without a Docker engine, and run `forecast health` inside it.
#   sudo scripts/build_image.sh            the CPU image (root: buildah with chroot isolation, debootstrap)
#   sudo scripts/build_image.sh --gpu      the GPU image (target gpu: PyPI's CUDA build of torch, several GB);
#                                          on a host without a GPU its health check must say so (exit 1)
# The base is bootstrapped from Debian's packages (bookworm: Python 3.11), the image is built from the
# Dockerfile with buildah, then `forecast health --no-model` runs in a container of it. Too slow for CI
# (see docs/DEPLOYMENT.md for the measured time); run it by hand after changing the Dockerfile.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/forecast-image}
BASE=localhost/forecast-base:bookworm
IMAGE=localhost/timesfm-forecast:dev
TARGET=cpu
if [ "${1:-}" = --gpu ]; then
  IMAGE=localhost/timesfm-forecast:dev-gpu
  TARGET=gpu
fi
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
# CPU: the machine's CPU torch wheel (if any) is mounted, and the CPU index left out, so pip takes it.
# GPU: no local wheels (pip would prefer the local +cpu build) and no index: PyPI's CUDA build.
# The docker format: the OCI one has no HEALTHCHECK, and buildah would drop it with a warning.
args=(--isolation=chroot --layers=false --format docker --target "$TARGET" --build-arg BASE_IMAGE="$BASE" -t "$IMAGE")
if [ "$TARGET" = gpu ]; then
  args+=(--build-arg TORCH_INDEX_URL=)
elif [ -d /opt/wheels ]; then
  args+=(--volume /opt/wheels:/opt/wheels:ro --build-arg PIP_FIND_LINKS=/opt/wheels --build-arg TORCH_INDEX_URL=)
fi
buildah bud "${args[@]}" .
container=$(buildah from "$IMAGE")
trap 'buildah rm "$container" >/dev/null' EXIT
probe=$(buildah inspect --format '{{.Docker.Config.Healthcheck.Test}}' "$IMAGE")
[[ "$probe" == *"forecast health --device $TARGET"* ]] \
  || { echo "error: the image has no HEALTHCHECK running forecast health (got: $probe)" >&2; exit 1; }
echo "image $IMAGE: HEALTHCHECK $probe; $(buildah images --format '{{.Size}}' "$IMAGE") uncompressed"
if [ "$TARGET" = cpu ]; then
  buildah run --isolation=chroot "$container" -- forecast health --device cpu --no-model --min-free-gb 0.1
  echo "image $IMAGE: forecast health exited 0"
else
  status=0
  buildah run --isolation=chroot "$container" -- forecast health --device gpu --no-model --min-free-gb 0.1 \
    > "$WORK/gpu-health.json" || status=$?
  if nvidia-smi -L >/dev/null 2>&1; then
    [ "$status" = 0 ] || { cat "$WORK/gpu-health.json"; echo "error: the GPU image is unhealthy on a GPU host" >&2; exit 1; }
  else
    grep -q "CUDA is not available" "$WORK/gpu-health.json" && [ "$status" = 1 ] \
      || { cat "$WORK/gpu-health.json"; echo "error: without a GPU the health check must fail naming CUDA" >&2; exit 1; }
  fi
  echo "image $IMAGE: forecast health --device gpu exited $status (this host has $(nvidia-smi -L 2>/dev/null | wc -l) GPUs)"
fi
