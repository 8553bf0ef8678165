#!/usr/bin/env bash
# Builds the project's image with podman from containers/Dockerfile (cpu) or containers/Dockerfile.cuda (cuda)
# on a local Debian base made by build-base.sh, with torch from PyPI, for machines that reach neither Docker Hub
# nor download.pytorch.org. Runs as root. Prints the elapsed time and the image size.
#   containers/podman/podman-build.sh [cpu|cuda] [--if-missing]   # or: make container-build / container-build-cuda
# --if-missing: do nothing when the image exists (for tests that need the image; a rebuild with nothing changed
# takes seconds anyway, from the layer cache).
# The image is tagged localhost/scprospatial:<version>[-cuda] and also with the name the pipeline's modules give
# in their `container` directives (ghcr.io/scprospatial/scprospatial:<version>[-cuda]), so that `-profile podman`
# runs it without pulling. Environment (defaults): BASE_IMAGE (localhost/debian:bookworm; made when missing), TORCH_SPEC
# (torch==2.13.0), TORCH_INDEX (https://pypi.org/simple), CA_BUNDLE (/etc/ssl/certs/ca-certificates.crt),
# IMAGE (the local tag), PIPELINE_IMAGE (the second tag; empty: none), CONTAINERS_CONF
# (containers/podman/containers.conf), PODMAN_BUILD_ARGS (extra arguments to podman build); for cuda also
# CUDA_PIP_TOOLKIT and CUDA_ARCHITECTURES (see containers/Dockerfile.cuda).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$HERE/containers.conf}"

VARIANT=cpu
IF_MISSING=0
for arg in "$@"; do
    case "$arg" in
        cpu|cuda) VARIANT="$arg" ;;
        --if-missing) IF_MISSING=1 ;;
        *) echo "usage: $0 [cpu|cuda] [--if-missing]" >&2; exit 2 ;;
    esac
done
EXTRA_ARGS=()
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/pyproject.toml" | head -n1)"
case "$VARIANT" in
    cpu)  DOCKERFILE="$REPO/containers/Dockerfile";      IMAGE="${IMAGE:-localhost/scprospatial:$VERSION}"
          PIPELINE_IMAGE="${PIPELINE_IMAGE-ghcr.io/scprospatial/scprospatial:$VERSION}" ;;
    cuda) DOCKERFILE="$REPO/containers/Dockerfile.cuda"; IMAGE="${IMAGE:-localhost/scprospatial:$VERSION-cuda}"
          PIPELINE_IMAGE="${PIPELINE_IMAGE-ghcr.io/scprospatial/scprospatial:$VERSION-cuda}"
          # nvcc from PyPI, of the CUDA release PyPI's torch 2.13 is built with (13.0), which has no Volta (70)
          EXTRA_ARGS+=(--build-arg CUDA_PIP_TOOLKIT="${CUDA_PIP_TOOLKIT-cuda-toolkit[nvcc,crt,nvvm,cccl,cudart]==13.0.3}"
                       --build-arg CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES-75;80;90}") ;;
esac
if [[ "$IF_MISSING" == 1 ]] && podman image exists "$IMAGE"; then
    [[ -z "$PIPELINE_IMAGE" ]] || podman image exists "$PIPELINE_IMAGE" || podman tag "$IMAGE" "$PIPELINE_IMAGE"
    echo "podman-build: $IMAGE exists"
    exit 0
fi
BASE_IMAGE="${BASE_IMAGE:-localhost/debian:bookworm}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
TORCH_INDEX="${TORCH_INDEX:-https://pypi.org/simple}"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
# podman's default ulimits ask for more than this kind of host's hard limits (runc then fails with
# "error setting rlimits"); these fit under them.
ULIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

if [[ "$BASE_IMAGE" == localhost/* ]]; then
    BASE_IMAGE="$BASE_IMAGE" "$HERE/build-base.sh"
fi

# pip in the build trusts the host's CA bundle (PyPI may sit behind a TLS-intercepting proxy): a copy of it is
# mounted over /mnt, a folder every Debian image has, so that no mount point is left behind in the image.
CA_DIR="$(mktemp -d /var/tmp/podman-build-ca.XXXXXX)"
trap 'rm -rf "$CA_DIR"' EXIT
cp -L "$CA_BUNDLE" "$CA_DIR/ca-certificates.crt"
chmod 755 "$CA_DIR"; chmod 644 "$CA_DIR/ca-certificates.crt"

echo "podman-build: $IMAGE from ${DOCKERFILE#"$REPO"/} on $BASE_IMAGE, $TORCH_SPEC from $TORCH_INDEX"
t0=$SECONDS
# shellcheck disable=SC2086  # PODMAN_BUILD_ARGS is a list of words
podman build "${ULIMITS[@]}" --layers \
    --build-arg BASE_IMAGE="$BASE_IMAGE" \
    --build-arg TORCH_SPEC="$TORCH_SPEC" \
    --build-arg TORCH_INDEX="$TORCH_INDEX" \
    --build-arg PIP_CERT=/mnt/ca-certificates.crt \
    --volume "$CA_DIR:/mnt:ro" \
    "${EXTRA_ARGS[@]}" \
    ${PODMAN_BUILD_ARGS:-} \
    -f "$DOCKERFILE" -t "$IMAGE" "$REPO"
[[ -z "$PIPELINE_IMAGE" ]] || podman tag "$IMAGE" "$PIPELINE_IMAGE"
elapsed=$((SECONDS - t0))
echo "podman-build: $IMAGE built in ${elapsed}s ($((elapsed / 60)) min $((elapsed % 60)) s)"
podman image ls --filter reference="$IMAGE"${PIPELINE_IMAGE:+ --filter reference="$PIPELINE_IMAGE"}
