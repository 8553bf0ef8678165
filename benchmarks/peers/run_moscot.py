"""moscot (benchmarks/.venv-peers only) on the held-out marker test of bench_mapping.py.

    benchmarks/.venv-peers/bin/python benchmarks/peers/run_moscot.py IN.npz OUTDIR [--seed S] [--k K]

IN.npz is the file bench_mapping.py writes for MaxFuse (run_maxfuse.py), with the imaged cells' coordinates
('spatial'). For each held-out marker, the marker is removed from both sides and moscot's MappingProblem is solved as
in its spatial-mapping tutorial: quadratic term between the scRNA-seq cells' PCA (30 components of the z-scored
2000 most variable genes) and the imaged cells' coordinates, linear term on the shared features (each side's
features z-scored, then moscot's "local-pca" callback), solve() defaults (alpha 0.5, epsilon 0.01, balanced), CPU.
Each imaged cell keeps its top-k scRNA-seq cells of the transport plan (k = 10, as every top-k method of the
benchmark), their mass renormalised to sum to 1. OUTDIR/<i>.npz (i: the marker's position in held_out) holds 'rna',
'cell', 'weight', 'marker', 'seconds', 'converged'. Markers whose file exists are skipped, so a run resumes.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

FULL_PANEL = "__full_panel__"


def zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(0)) / np.maximum(x.std(0), 1e-6)


def top_k(plan: np.ndarray, k: int):
    """plan: scRNA-seq cells x imaged cells. Each imaged cell's k largest entries, renormalised."""
    k = min(k, plan.shape[0])
    idx = np.argpartition(-plan, k - 1, axis=0)[:k]
    w = np.take_along_axis(plan, idx, axis=0)
    w = w / np.maximum(w.sum(0, keepdims=True), 1e-300)
    cell = np.broadcast_to(np.arange(plan.shape[1]), idx.shape)
    return idx.T.ravel(), cell.T.ravel(), w.T.ravel()


def fit(rna_pca, rna, protein, coords, names):
    import anndata as ad
    from moscot.problems.space import MappingProblem

    ok = (rna.std(0) > 0) & (protein.std(0) > 0)
    names = [f"f{i}_{n}" for i, n in enumerate(names)]
    sc_ad = ad.AnnData(zscore(rna[:, ok]).astype(np.float32))
    sp_ad = ad.AnnData(zscore(protein[:, ok]).astype(np.float32))
    sc_ad.var_names = sp_ad.var_names = [n for n, o in zip(names, ok) if o]
    sc_ad.obsm["X_pca"] = rna_pca.astype(np.float32)
    sp_ad.obsm["spatial"] = coords.astype(np.float32)
    mp = MappingProblem(adata_sc=sc_ad, adata_sp=sp_ad)
    mp = mp.prepare(sc_attr={"attr": "obsm", "key": "X_pca"}, spatial_key="spatial", xy_callback="local-pca")
    mp = mp.solve(device="cpu")
    sol = next(iter(mp.solutions.values()))
    plan = np.asarray(sol.transport_matrix, np.float64)  # moscot's source is the imaged side: imaged x scRNA-seq
    return (plan.T if plan.shape == (len(protein), len(rna)) else plan), bool(sol.converged)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if args.threads == 1:  # before jax is imported
        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    d = np.load(args.src, allow_pickle=False)
    if "spatial" not in d:
        sys.exit("moscot needs the imaged cells' coordinates ('spatial' in the input)")
    markers = [str(m) for m in d["markers"]]
    np.random.seed(args.seed)
    active = zscore(d["rna_active"])
    u, s, _ = np.linalg.svd(active - active.mean(0), full_matrices=False)
    rna_pca = u[:, :30] * s[:30]
    Path(args.dst).mkdir(parents=True, exist_ok=True)
    for i, m in enumerate(str(x) for x in d["held_out"]):
        out = Path(args.dst) / f"{i}.npz"
        if out.is_file():
            continue
        t0 = time.perf_counter()
        keep = [j for j, x in enumerate(markers) if x != m]
        plan, converged = fit(rna_pca, d["rna_shared"][:, keep], d["protein"][:, keep], d["spatial"],
                              [markers[j] for j in keep])
        rna_idx, cell_idx, w = top_k(plan, args.k)
        seconds = time.perf_counter() - t0
        tmp = out.with_suffix(".tmp.npz")
        np.savez(tmp, rna=rna_idx.astype(np.int64), cell=cell_idx.astype(np.int64), weight=w, marker=np.array(m),
                 seconds=np.array(seconds), converged=np.array(converged))
        tmp.replace(out)
        print(f"  moscot {m}: converged {converged}, {seconds:.0f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
