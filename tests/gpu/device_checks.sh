#!/usr/bin/env bash
# The GPU checks of the package, as one script for a fresh GPU machine (issue 17, items 2 and 3): build with the
# CUDA kernels, run the CUDA tests and the end-to-end CPU-vs-CUDA comparison, measure the GPU figures of
# benchmarks/README.md. Written for this workplace's device machines (H100/H200, image 'cuda': python3 3.12 with torch,
# nvcc, cmake, ninja, pybind11, scikit-build-core; no package index). From the repository root, here:
#
#   tests/gpu/prepare_wheels.sh                       # once: the missing Python packages into .whl/ (about 22 MB)
#   then the device tool:  run(command="bash tests/gpu/device_checks.sh", carry=[".whl"], timeout_s=600)
#
# Usage: device_checks.sh [all|tests|figures]   (default all; `figures` rebuilds only when /tmp/site lacks the build)
# Environment: OUT, DEADLINE, PYTHON (python3), SITE (/tmp/site: install target), WHEELS=0 (packages already there),
# EXTRA_CMAKE_ARGS (e.g. -DCUDAToolkit_ROOT=...), REQUIRE_GPU=0 (a rehearsal without GPU: CUDA tests skip, CPU rows only).
# Each step runs under its own time limit inside DEADLINE seconds (default 570), so a slow step still leaves the
# others' results. Everything goes to $OUT (default /tmp/device_checks): log.txt, pytest.xml, e2e.json (every
# measured CPU-vs-CUDA difference), knn.json, topk.json, gather.json, device.json (bench_*.py results; topk, gather and
# device start from the committed benchmarks/results/*.json, so the returned files hold the CPU rows and the new GPU
# rows: copy them into benchmarks/results/ and run each script with --readme-only to rewrite its README section).
# Not run yet at the time of writing (no GPU machine was lent to that session): the step budgets are estimates.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2
MODE="${1:-all}"
case "$MODE" in all|tests|figures) ;; *) echo "usage: $0 [all|tests|figures]" >&2; exit 2 ;; esac
OUT="${OUT:-/tmp/device_checks}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
DEADLINE="${DEADLINE:-570}"
PYTHON="${PYTHON:-python3}"
SITE="${SITE:-/tmp/site}"
THREADS="$(nproc)"
WHEELS="${WHEELS:-1}"            # 0: the packages are already importable (no .whl needed)
REQUIRE_GPU="${REQUIRE_GPU:-1}"  # 0: go on after a build that cannot run CUDA (a rehearsal on a machine without GPU)
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PATH="$SITE/bin:$PATH" MPLBACKEND=Agg
export OUT PYTHON SITE THREADS MODE REQUIRE_GPU WHEELS
FAILED=()

# step NAME LIMIT_S FUNCTION: runs FUNCTION (exported) in a child bash under min(LIMIT_S, time left), logs its time
# and status
step() {
    local name="$1" limit="$2"; shift 2
    local left=$((DEADLINE - SECONDS - 5))
    if (( left < 20 )); then echo "== $name: skipped, ${left}s left of ${DEADLINE}s"; FAILED+=("$name(no time)"); return 1; fi
    (( limit > left )) && limit=$left
    echo "== $name (limit ${limit}s, ${SECONDS}s elapsed)"
    local t0=$SECONDS
    timeout --signal=INT --kill-after=10 "$limit" bash -c 'set -uo pipefail; "$@"' "$name" "$@"
    local rc=$?
    echo "== $name: exit $rc after $((SECONDS - t0))s"
    (( rc == 0 )) || FAILED+=("$name(exit $rc)")
    return $rc
}

environment() {
    nvidia-smi -L || true
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
    { command -v nvcc || ls /usr/local/cuda/bin/nvcc; } && "${CUDACXX:-nvcc}" --version | tail -2 || true
    "$PYTHON" -c 'import sys, torch, numpy; print("python", sys.version.split()[0], "torch", torch.__version__,
"cuda", torch.version.cuda, "numpy", numpy.__version__, "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)'
    echo "cpus $THREADS, mode $MODE, deadline ${DEADLINE}s"
}

install_wheels() {
    if [[ "$WHEELS" == 0 ]]; then echo "WHEELS=0: using the packages already installed"; return 0; fi
    ls .whl/*.whl >/dev/null 2>&1 || { echo "no .whl/: run tests/gpu/prepare_wheels.sh here and carry .whl"; return 1; }
    local wheels=() pandas=()  # pandas 2 and its pytz, tzdata: only to replace an image's pandas 3
    for w in .whl/*.whl; do
        case "${w##*/}" in pandas-*|pytz-*|tzdata-*) pandas+=("$w") ;; *) wheels+=("$w") ;; esac
    done
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${wheels[@]}" || return 1
    local pandas_major
    pandas_major="$("$PYTHON" -c 'import pandas; print(pandas.__version__.split(".")[0])' 2>/dev/null || echo none)"
    if [[ "$pandas_major" != 2 ]]; then  # anndata 0.12 needs pandas < 3
        echo "image pandas: $pandas_major; installing the carried pandas 2"
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${pandas[@]}" || return 1
    fi
    "$PYTHON" -c 'import anndata, pandas; print("anndata", anndata.__version__, "pandas", pandas.__version__)'
}

build() {
    if [[ -z "${CUDACXX:-}" ]] && ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then
        export CUDACXX=/usr/local/cuda/bin/nvcc
    fi
    # Hopper only (sm_90) to keep the build short; a release build covers 75;80;90 (CMakeLists.txt).
    SCPROSPATIAL_CUDA=1 CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=90 ${EXTRA_CMAKE_ARGS:-}" CMAKE_BUILD_PARALLEL_LEVEL="$THREADS" \
        "$PYTHON" -m pip install -q --no-deps --no-build-isolation --no-index --no-cache-dir --upgrade \
        --target "$SITE" . || return 1
    "$PYTHON" -c 'import scprospatial._core as c, torch
print("compiled_with_cuda", c.compiled_with_cuda(), "cuda_device_count", c.cuda_device_count(), "torch sees GPU", torch.cuda.is_available())
assert c.compiled_with_cuda(), "built without CUDA kernels"
assert c.cuda_device_count() > 0 and torch.cuda.is_available(), "no usable GPU"' || [[ "$REQUIRE_GPU" == 0 ]]
}

tests() {
    SCPROSPATIAL_GPU_REPORT="$OUT/e2e.json" "$PYTHON" -m pytest -q -p no:cacheprovider -rs --junitxml="$OUT/pytest.xml" \
        tests/test_core_knn.py tests/test_topk_core.py tests/test_gather_core.py \
        tests/test_device_cuda.py tests/test_device_dispatch.py tests/test_gpu_end_to_end.py
}

bench_knn() {
    "$PYTHON" benchmarks/bench_knn.py --sizes 1000000 --layouts uniform,clustered \
        --methods scprospatial,scprospatial-cuda,ckdtree --k 10 --repeats 3 --threads "$THREADS" --out "$OUT/knn.json"
}

bench_topk() {  # CPU once (it is the slow one), the GPU backends three times; rows merged into one file
    cp benchmarks/results/topk.json "$OUT/topk.json"
    "$PYTHON" benchmarks/bench_topk.py --nq 1e6 --nr 1e5 --threads "$THREADS" --repeats 1 --backends cpp \
        --out "$OUT/topk.json" &&
    "$PYTHON" benchmarks/bench_topk.py --nq 1e6 --nr 1e5 --threads "$THREADS" --repeats 3 \
        --backends cpp-cuda,torch-cuda --out "$OUT/topk.json"
}

bench_gather() {
    cp benchmarks/results/gather.json "$OUT/gather.json"
    "$PYTHON" benchmarks/bench_gather.py --n 1e5 --m 1e5 --p 300,3000 --k 10 --threads "$THREADS" --repeats 3 \
        --backends cpp,cpp-cuda --out "$OUT/gather.json"
}

bench_device() {
    [[ -f benchmarks/results/device.json ]] && cp benchmarks/results/device.json "$OUT/device.json"
    "$PYTHON" benchmarks/bench_device.py --nq 5e5 --nr 1e5 --dim 64 --k 10 --p 300 --threads "$THREADS" --repeats 2 \
        --out "$OUT/device.json"
}

export -f environment install_wheels build tests bench_knn bench_topk bench_gather bench_device
step environment 60 environment
step wheels 120 install_wheels || { echo "cannot go on without the packages"; exit 1; }
if [[ "$MODE" != figures ]] || ! "$PYTHON" -c 'import scprospatial._core as c; assert c.compiled_with_cuda()' 2>/dev/null; then
    step build 240 build || { echo "cannot go on without a CUDA build"; exit 1; }
fi
if [[ "$MODE" != figures ]]; then
    step tests 300 tests
fi
if [[ "$MODE" != tests ]]; then
    step bench_knn 90 bench_knn
    step bench_topk 120 bench_topk
    step bench_gather 90 bench_gather
    step bench_device 120 bench_device
fi
echo "== done in ${SECONDS}s; failed or skipped: ${FAILED[*]:-none}"
ls -la "$OUT"
(( ${#FAILED[@]} == 0 ))
