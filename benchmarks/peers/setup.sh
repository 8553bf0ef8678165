#!/usr/bin/env bash
# Creates benchmarks/.venv-peers with the peer tools (totalVI, sciPENN, MaxFuse, Tangram, moscot, squidpy).
# Idempotent: a finished environment (stamp file) is left as it is. Usage: bash benchmarks/peers/setup.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${PEERS_VENV:-$here/../.venv-peers}"
torch_spec="${TORCH_SPEC:-torch==2.13.0}"
stamp="$venv/.peers-installed"
if [[ -f "$stamp" && "$stamp" -nt "$here/requirements.txt" && "$stamp" -nt "$here/requirements-nodeps.txt" ]]; then
    exit 0
fi
local_wheels=()
[[ -d /opt/wheels ]] && local_wheels=(--find-links /opt/wheels)
python3 -m venv "$venv"
py="$venv/bin/python"
"$py" -m pip install -q "${local_wheels[@]}" "$torch_spec"
"$py" -m pip install -q "${local_wheels[@]}" -r "$here/requirements.txt" "$torch_spec"
"$py" -m pip install -q --no-deps -r "$here/requirements-nodeps.txt"
"$py" "$here/versions.py" > "$venv/peer_versions.json"
touch "$stamp"
echo "peers installed in $venv: $(tr -d '\n' < "$venv/peer_versions.json")"
