"""bench_mapping.py's mapping peers (MaxFuse, Tangram, moscot): their input file, the call of their runner in the
peers' venv, their outputs as weights, and their stored columns kept from an earlier run.

A peer is fitted on one of two kinds of shared features (`--peer-features`): `rna`, each linked marker's coding-gene
RNA (column `maxfuse`), or `predicted`, the benchmarked model's prediction of the same markers from each scRNA-seq
cell's RNA, the panel our `map` links on (column `maxfuse (pred)`). Everything else the peer sees is the same.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from scipy import sparse

from _mapping_tables import PEER_COLUMNS, PEER_NAMES, runs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PEERS = ROOT / "benchmarks" / ".venv-peers" / "bin" / "python"
FULL_PANEL = "__full_panel__"            # the peer runners' name for "no marker hidden"
# peer registry: name -> (runner in benchmarks/peers/, cache sub-folder of --peer-cache/<panel>, extra arguments).
# A runner reads the .npz of maxfuse_inputs and writes OUTDIR/<i>.npz per held-out marker: 'rna', 'cell' and either
# 'weight' (weighted pairs, used as given) or none (a matching: each imaged cell's matches with equal weight).
PEER_RUNNERS = {"maxfuse": ("run_maxfuse.py", "", []),
                "tangram": ("run_tangram.py", "tangram", ["--epochs", "1000", "--k", "10", "--threads", "1"]),
                "moscot": ("run_moscot.py", "moscot", ["--k", "10", "--threads", "1"])}
assert tuple(PEER_RUNNERS) == PEER_NAMES


def matching_weights(rna_idx, cell_idx, n_cells: int, n_rna: int) -> sparse.csr_matrix:
    """Each imaged cell's matches with equal weight (rows of unmatched cells are empty)."""
    w = sparse.csr_matrix((np.ones(len(rna_idx)), (cell_idx, rna_idx)), shape=(n_cells, n_rna))
    total = np.asarray(w.sum(1)).ravel()
    return sparse.diags(np.where(total > 0, 1.0 / np.maximum(total, 1e-12), 0.0)) @ w


def maxfuse_inputs(model, rna, spatial, markers: list[str], order: list[str], path: Path, pred=None) -> list[str]:
    """The runners' input, markers with a coding gene in the RNA only ('linked'). Shared features: each linked
    marker's coding-gene RNA or, with `pred` (scRNA-seq cells x markers, the model's predictions), its predicted
    value; the active RNA features are the 2000 most variable genes either way."""
    genes = {g: i for i, g in enumerate(rna.var_names)}
    linked = [m for m in markers if any(g in genes for g in model.vocab.gene_links.get(m, []))]
    x = rna.X.tocsc() if sparse.issparse(rna.X) else sparse.csc_matrix(rna.X)
    if pred is None:
        shared = np.column_stack([np.asarray(x[:, [genes[g] for g in model.vocab.gene_links[m] if g in genes]]
                                             .mean(1)).ravel() for m in linked])
    else:
        shared = pred[linked].to_numpy(np.float64)
    var = np.asarray(x.power(2).mean(0)).ravel() - np.asarray(x.mean(0)).ravel() ** 2
    active = x[:, np.argsort(-var)[:2000]].toarray()
    coords = {"spatial": np.asarray(spatial.obsm["spatial"], np.float64)} if "spatial" in spatial.obsm else {}
    np.savez(path, rna_active=active, rna_shared=shared, protein=spatial.obsm["protein"][linked].to_numpy(),
             markers=np.array(linked), held_out=np.array(order), **coords)
    return linked


def peer_weights(d, n_cells: int, n_rna: int) -> sparse.csr_matrix:
    """A runner's output file as imaged cells x scRNA-seq cells weights."""
    if "weight" in d:
        return sparse.csr_matrix((d["weight"], (d["cell"], d["rna"])), shape=(n_cells, n_rna))
    return matching_weights(d["rna"], d["cell"], n_cells, n_rna)


def _same_file(a: Path, b: Path) -> bool:
    with np.load(a) as x, np.load(b) as y:
        return set(x.files) == set(y.files) and all(np.array_equal(x[k], y[k]) for k in x.files)


def run_peer(name: str, model, rna, spatial, markers, order: list[str], cache: Path | None,
             python: Path | None = None, pred=None) -> dict:
    """{marker or FULL_PANEL: weights} from peer `name` in the peers' venv (markers in `order`), or {'error': why};
    with `pred`, fitted on the predicted panel (maxfuse_inputs).

    With `cache`, its outputs are kept there (predicted-panel fits in its sub-folder `predicted`) and a rerun (or an
    interrupted run) only fits what is missing; a cache whose input differs (another model) is refused."""
    python = python or PEERS
    if not Path(python).is_file():
        return {"error": "benchmarks/.venv-peers is missing (bash benchmarks/peers/setup.sh)"}
    script, sub, extra = PEER_RUNNERS[name]
    with tempfile.TemporaryDirectory() as tmp:
        folder = (Path(cache) if cache else Path(tmp)) / ("predicted" if pred is not None else "") / sub
        folder.mkdir(parents=True, exist_ok=True)
        src = folder / "in.npz"
        maxfuse_inputs(model, rna, spatial, markers, order, folder / "new.npz", pred)
        if src.is_file() and not _same_file(src, folder / "new.npz") and any((folder / "out").glob("*.npz")):
            return {"error": f"{folder} holds fits of other inputs (another model or panel): remove it"}
        (folder / "new.npz").replace(src)
        proc = subprocess.run([str(python), str(ROOT / "benchmarks" / "peers" / script), str(src),
                               str(folder / "out"), *extra], stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
        out: dict = {"seconds": 0.0}
        for i, m in enumerate(order):
            d = np.load(folder / "out" / f"{i}.npz")
            out[m] = peer_weights(d, spatial.n_obs, rna.n_obs)
            out["seconds"] += float(d["seconds"])
    return out


def keep_stored_peers(d: dict, name: str, fitted=()) -> None:
    """The peers' columns of the stored results/mapping_<panel>.json (fitted in an earlier run; refits take hours)
    copied into the new rows, per model position (main model, then each replicate) and marker, with their status
    and label-transfer scores; the models of that run (and so the peers' imputed values) may differ. Columns in
    `fitted` (refitted by this run) are not replaced."""
    path = RESULTS / f"mapping_{name}.json"
    if not path.is_file():
        return
    old = json.loads(path.read_text())
    keep = [c for c in PEER_COLUMNS if c not in fitted]
    for new_rows, old_rows in zip(runs(d), runs(old)):
        stored = {r["marker"]: r for r in old_rows}
        for row in new_rows:
            row.update({p: stored[row["marker"]][p] for p in keep if p in stored.get(row["marker"], {})})
    for p in keep:
        if p in old and isinstance(old[p], str) and "error" not in old[p]:
            d[p] = old[p] if "stored from" in old[p] else f"{old[p]}, stored from the run of model {old['model_id']}"
    if d.get("labels") and old.get("labels"):
        for part in ("agreement", "scores"):
            d["labels"].setdefault(part, {}).update({p: v for p, v in old["labels"].get(part, {}).items()
                                                     if p in keep})
    d["peers_kept_from"] = old.get("peers_kept_from", old.get("model_id"))
