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

import os
import sys

import numpy as np
from _held_out import each_held_out, parser, zscore


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
    args = parser(__doc__).parse_args(argv)
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

    def one(keep: list[int]):
        plan, converged = fit(rna_pca, d["rna_shared"][:, keep], d["protein"][:, keep], d["spatial"],
                              [markers[j] for j in keep])
        return plan, {"converged": converged}

    each_held_out(d, args.dst, args.k, "moscot", one)


if __name__ == "__main__":
    main()
