#!/usr/bin/env bash
# Makes the local Debian bookworm base image (default localhost/debian:bookworm) with debootstrap, from the
# Debian mirror this host's apt already uses, for machines that cannot pull from Docker Hub. Idempotent: does
# nothing when the image exists (FORCE=1 rebuilds it). Runs as root.
#   containers/podman/build-base.sh                       # or: make container-base
# Environment: BASE_IMAGE (tag to create), DEBIAN_SUITE (bookworm), DEBIAN_MIRROR / DEBIAN_SECURITY_MIRROR
# (default: read from /etc/apt/sources.list and /etc/apt/sources.list.d/*), FORCE=1.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$HERE/containers.conf}"
SUITE="${DEBIAN_SUITE:-bookworm}"
BASE_IMAGE="${BASE_IMAGE:-localhost/debian:$SUITE}"

if [[ "${FORCE:-0}" != 1 ]] && podman image exists "$BASE_IMAGE"; then
    echo "build-base: $BASE_IMAGE exists (FORCE=1 rebuilds it)"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "build-base: debootstrap missing (apt-get install -y debootstrap)" >&2; exit 1; }

# The first URI of the host's apt sources that serves the given suite, one-line (.list) or deb822 (.sources).
apt_uri_for() {
    local suite="$1" f files=()
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] && files+=("$f")
    done
    [[ ${#files[@]} -gt 0 ]] || return 0
    awk -v suite="$suite" '
        FNR == 1 { uris = ""; suites = "" }
        /^[[:space:]]*deb[[:space:]]/ {               # deb [options] URI suite components
            sub(/\[[^]]*\]/, ""); if ($3 == suite) { print $2; exit }
        }
        /^URIs:/   { uris = $2 }
        /^Suites:/ { suites = " " substr($0, 8) " " }
        /^[[:space:]]*$/ { uris = ""; suites = "" }
        uris != "" && index(suites, " " suite " ") { print uris; exit }
    ' "${files[@]}" 2>/dev/null || true
}
MIRROR="${DEBIAN_MIRROR:-$(apt_uri_for "$SUITE")}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SECURITY="${DEBIAN_SECURITY_MIRROR:-$(apt_uri_for "$SUITE-security")}"
echo "build-base: $BASE_IMAGE from $MIRROR ($SUITE)${SECURITY:+, security updates from $SECURITY}"

ROOTFS="$(mktemp -d /var/tmp/debootstrap-"$SUITE".XXXXXX)"
trap 'rm -rf "$ROOTFS"' EXIT

t0=$SECONDS
debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 \
    || { tail -n 30 "$ROOTFS.log" >&2; rm -f "$ROOTFS.log"; exit 1; }
rm -f "$ROOTFS.log"
t_debootstrap=$((SECONDS - t0))

# apt sources inside the image: the same mirror, with point-release and security updates (as the Docker Hub
# debian images have); no package lists or .deb files are kept in the image.
{
    echo "deb $MIRROR $SUITE main"
    echo "deb $MIRROR $SUITE-updates main"
    [[ -n "$SECURITY" ]] && echo "deb $SECURITY $SUITE-security main"
} >"$ROOTFS/etc/apt/sources.list"
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb

t1=$SECONDS
tar -C "$ROOTFS" --numeric-owner -c . \
    | podman import --quiet --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' - "$BASE_IMAGE" >/dev/null
t_import=$((SECONDS - t1))

echo "build-base: debootstrap ${t_debootstrap}s, import ${t_import}s"
podman image ls "$BASE_IMAGE"
