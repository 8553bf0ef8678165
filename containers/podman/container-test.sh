#!/usr/bin/env bash
# `make container-test`: the CPU image built from this checkout and the pipeline's test profile run with every
# process inside it, with podman, on this kind of machine (root, no Docker engine, no Docker Hub). Steps, each
# timed: podman/runc/debootstrap from Debian when missing; the image (podman-build.sh, cached layers reused);
# `scprospatial demo` inside the image (small: 500 cells, 2 epochs); a simulated cohort; `nextflow run` of the
# plugin-free entry with -profile test,podman and this host's podman settings (podman.config); then checks that
# every task completed and ran in the image. Needs the Nextflow runtime (make nextflow) and the venv (for the
# simulated inputs only). OUT (default /var/tmp/scprospatial-container-test) keeps the run for inspection.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
OUT="${OUT:-/var/tmp/scprospatial-container-test}"
NEXTFLOW="${NEXTFLOW:-$(command -v nextflow || echo "$REPO/.nextflow-runtime/nextflow")}"
PY="${PY:-$REPO/.venv/bin/python}"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/pyproject.toml" | head -n1)"
IMAGE="localhost/scprospatial:$VERSION"
T_START=$SECONDS
step() { local t0=$SECONDS; echo "== $1"; shift; "$@"; echo "   done in $((SECONDS - t0)) s"; }

install_tools() {
    local missing=()
    for tool in podman runc debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
    if ((${#missing[@]})); then
        [[ $(id -u) == 0 ]] || { echo "container-test: ${missing[*]} missing; install them (needs root)" >&2; exit 2; }
        apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" uidmap fuse-overlayfs slirp4netns
    fi
    podman --version
}

demo_in_image() {
    local option engine runopts
    option() { sed -n "s/^ *$1 *= *'\(.*\)'.*/\1/p" "$HERE/podman.config"; }
    read -r -a engine <<<"$(option engineOptions)"
    read -r -a runopts <<<"$(option runOptions)"
    mkdir -p "$OUT/demo"
    podman "${engine[@]}" run --rm "${runopts[@]}" -v "$OUT/demo:$OUT/demo" -w "$OUT/demo" "$IMAGE" \
        scprospatial demo --outdir "$OUT/demo" --n-cells 500 --epochs 2 -q
    test -s "$OUT/demo/report/report.html"
}

pipeline_in_image() {
    "$PY" -m scprospatial simulate --outdir "$OUT/sim" --n-cells 600 --seed 0 -q
    # -C takes one configuration alone (-c files are then ignored): the plugin-free entry's and this host's podman
    # settings, together
    printf "includeConfig '%s'\nincludeConfig '%s'\n" "$REPO/tests/nextflow/nextflow.config" "$HERE/podman.config" \
        >"$OUT/nextflow.config"
    (cd "$OUT" && NXF_ANSI_LOG=false "$NEXTFLOW" -C "$OUT/nextflow.config" run "$REPO/tests/nextflow/main.nf" \
        -profile test,podman --input "$OUT/sim/samplesheet.csv" --outdir "$OUT/results" -w "$OUT/work")
}

check_run() {
    local trace="$OUT/results/pipeline_info/trace.txt" tasks in_image
    tasks=$(($(wc -l <"$trace") - 1))
    [[ $(cut -f5 "$trace" | grep -c COMPLETED) == "$tasks" ]] || { cut -f4,5 "$trace"; echo "container-test: a task did not complete" >&2; exit 1; }
    in_image=$(grep -l "podman .*run .*--ulimit .*ghcr.io/scprospatial/scprospatial:$VERSION" "$OUT"/work/*/*/.command.run | wc -l)
    [[ "$in_image" == "$tasks" ]] || { echo "container-test: $in_image of $tasks tasks ran in the image" >&2; exit 1; }
    test -s "$OUT/results/report/report.html"
    echo "   $tasks tasks completed, each inside ghcr.io/scprospatial/scprospatial:$VERSION"
}

rm -rf "$OUT" && mkdir -p "$OUT"
[[ -x "$NEXTFLOW" ]] || { echo "container-test: no Nextflow (run make nextflow)" >&2; exit 2; }
step "podman, runc, debootstrap" install_tools
step "image $IMAGE (containers/podman/podman-build.sh cpu)" "$HERE/podman-build.sh" cpu
step "scprospatial demo inside the image" demo_in_image
step "nextflow run -profile test,podman (every process in the image)" pipeline_in_image
step "checks" check_run
echo "container-test: passed in $((SECONDS - T_START)) s; outputs in $OUT"
