"""Print the peers' versions as JSON; a peer that fails to import is reported with its error, not hidden."""
import importlib
import json

PEERS = {"scvi-tools": "scvi", "sciPENN": "sciPENN", "maxfuse": "maxfuse", "tangram-sc": "tangram",
         "moscot": "moscot", "squidpy": "squidpy", "torch": "torch", "scanpy": "scanpy"}

out = {}
for dist, module in PEERS.items():
    try:
        from importlib.metadata import version

        importlib.import_module(module)
        out[dist] = version(dist)
    except Exception as exc:  # noqa: BLE001 - reported, not swallowed
        out[dist] = f"unavailable: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
print(json.dumps(out))
