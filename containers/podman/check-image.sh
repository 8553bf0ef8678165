#!/usr/bin/env bash
# Smoke test of a locally built image, run the way Nextflow's podman executor runs a task: the podman options
# are read from containers/podman/podman.config (engineOptions before `run`, runOptions after), the task folder
# is bind-mounted at its own path and is the working directory, and the task script runs under bash with the
# trace wrapper's tools (ps). Needs no CONTAINERS_CONF. Prints each check's time.
#   containers/podman/check-image.sh [cpu|cuda] [--demo]      # or: make container-check
# --demo also runs `scprospatial demo` (about 2 min on 2 cores) in the container, into a bind-mounted folder.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VARIANT=cpu
DEMO=0
for arg in "$@"; do
    case "$arg" in
        cpu|cuda) VARIANT="$arg" ;;
        --demo) DEMO=1 ;;
        *) echo "usage: $0 [cpu|cuda] [--demo]" >&2; exit 2 ;;
    esac
done
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/pyproject.toml" | head -n1)"
SUFFIX=""
[[ "$VARIANT" == cpu ]] || SUFFIX="-$VARIANT"
IMAGE="${IMAGE:-localhost/scprospatial:$VERSION$SUFFIX}"

option() { sed -n "s/^ *$1 *= *'\(.*\)'.*/\1/p" "$HERE/podman.config"; }
read -r -a ENGINE <<<"$(option engineOptions)"
read -r -a RUNOPTS <<<"$(option runOptions)"
podman_run() { podman "${ENGINE[@]}" run "$@"; }
step() { local t0=$SECONDS; echo "== $1"; shift; "$@"; echo "   ok ($((SECONDS - t0)) s)"; }

TASK="$(mktemp -d /var/tmp/scprospatial-check.XXXXXX)"
trap 'rm -rf "$TASK"' EXIT
cat >"$TASK/.command.sh" <<'SH'
#!/bin/bash -ue
ps -o pid=,comm= -p $$
scprospatial --version
scprospatial_run.py --help > /dev/null
python -c 'import scprospatial._core as c, torch; print("torch", torch.__version__, "| CUDA kernels compiled:", c.compiled_with_cuda())'
pwd > where.txt
SH

echo "image $IMAGE; podman ${ENGINE[*]} run ... ${RUNOPTS[*]}"
step "python: scprospatial._core and torch" \
    podman_run --rm "${RUNOPTS[@]}" "$IMAGE" python -c 'import scprospatial._core, torch; print(torch.__version__)'
step "bind mount, -w, bash -c, ps" \
    podman_run --rm "${RUNOPTS[@]}" -v "$TASK:$TASK" -w "$TASK" "$IMAGE" bash -c 'ps -p $$ && scprospatial --version'
# as in Nextflow's .command.run: podman <engineOptions> run -i -e "NXF_TASK_WORKDIR" -v <dir>:<dir>
#   -w "$NXF_TASK_WORKDIR" <runOptions> --cpu-shares N --memory M --name <id> <image> /bin/bash -ue .command.sh
name="nxf-check-$$"
step "as Nextflow runs a task" env NXF_TASK_WORKDIR="$TASK" bash -c '
    podman "$@" && podman rm "'"$name"'" >/dev/null' _ \
    "${ENGINE[@]}" run -i -e NXF_TASK_WORKDIR -v "$TASK:$TASK" -w "$TASK" "${RUNOPTS[@]}" \
    --cpu-shares 1024 --memory 2g --name "$name" "$IMAGE" /bin/bash -ue "$TASK/.command.sh" </dev/null
[[ "$(cat "$TASK/where.txt")" == "$TASK" ]] || { echo "the task ran in $(cat "$TASK/where.txt"), not $TASK" >&2; exit 1; }
if [[ "$DEMO" == 1 ]]; then
    step "scprospatial demo" \
        podman_run --rm "${RUNOPTS[@]}" -v "$TASK:$TASK" -w "$TASK" "$IMAGE" scprospatial demo --outdir "$TASK/demo" -q
    test -s "$TASK/demo/report/report.html"
fi
echo "check-image: $IMAGE passed"
