#!/usr/bin/env bash
# Downloads the wheels that device_checks.sh installs on a GPU machine (which reaches no package index) into .whl/
# at the repository root (ignored by git): cp312 manylinux x86-64 wheels of tests/gpu/device-wheels.txt, no
# dependencies beyond the list. Run here, once, before the device call that carries .whl:
#   tests/gpu/prepare_wheels.sh
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PYTHON="${PYTHON:-python3}"
mkdir -p "$REPO/.whl"
grep -v '^\s*#' "$REPO/tests/gpu/device-wheels.txt" | grep -v '^\s*$' | xargs \
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$REPO/.whl"
ls -la "$REPO/.whl"
du -sh "$REPO/.whl"
