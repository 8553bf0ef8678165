"""MaxFuse (benchmarks/.venv-peers only; academic licence: run here, never bundled) on the held-out marker test.

    benchmarks/.venv-peers/bin/python benchmarks/peers/run_maxfuse.py IN.npz OUTDIR

IN.npz (written by bench_mapping.py): rna_active (RNA cells x genes, log-normalised HVGs), rna_shared (RNA cells x
markers: log-normalised expression of each marker's coding gene(s)), protein (imaged cells x markers, arcsinh),
markers, held_out (markers to hide one at a time; FULL_PANEL hides none). Each held-out marker is removed from the
shared and the imaged active features, MaxFuse is fitted as in its tutorial (graphs, initial pivots, CCA refinement,
propagation) and its full-data matching (every imaged cell matched to RNA cells) is stored in OUTDIR/<i>.npz (i: the
marker's position in held_out) as 'rna', 'cell', 'score' (one entry per matched pair), 'marker' and 'seconds'.
Markers whose file exists are skipped, so an interrupted run resumes.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

FULL_PANEL = "__full_panel__"


def zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(0)) / np.maximum(x.std(0), 1e-6)


def fit(rna_shared, prot_shared, rna_active, prot_active):
    import maxfuse as mf

    fusor = mf.model.Fusor(shared_arr1=rna_shared, shared_arr2=prot_shared, active_arr1=rna_active,
                           active_arr2=prot_active)
    fusor.split_into_batches(max_outward_size=8000, matching_ratio=4, metacell_size=2, verbose=False)
    n2 = prot_active.shape[1]
    fusor.construct_graphs(n_neighbors1=15, n_neighbors2=15, svd_components1=40, svd_components2=min(15, n2 - 1),
                           resolution1=2, resolution2=2, resolution_tol=0.1, leiden_runs=1, verbose=False)
    ns = rna_shared.shape[1]
    fusor.find_initial_pivots(wt1=0.3, wt2=0.3, svd_components1=min(25, ns - 1), svd_components2=min(20, ns - 1))
    fusor.refine_pivots(wt1=0.3, wt2=0.3, svd_components1=40, svd_components2=None,
                        cca_components=min(20, n2 - 1), filter_prop=0.0, n_iters=1, randomized_svd=False,
                        svd_runs=1, verbose=False)
    fusor.filter_bad_matches(target="pivot", filter_prop=0.0, verbose=False)
    fusor.propagate(svd_components1=40, svd_components2=None, wt1=0.7, wt2=0.7, verbose=False)
    fusor.filter_bad_matches(target="propagated", filter_prop=0.0, verbose=False)
    return fusor.get_matching(order=(2, 1), target="full_data")


def main(argv) -> None:
    src, dst = argv
    d = np.load(src, allow_pickle=False)
    markers = [str(m) for m in d["markers"]]
    rna_active = zscore(d["rna_active"])
    Path(dst).mkdir(parents=True, exist_ok=True)
    for i, m in enumerate(str(x) for x in d["held_out"]):
        out = Path(dst) / f"{i}.npz"
        if out.is_file():
            continue
        t0 = time.perf_counter()
        keep = [j for j, x in enumerate(markers) if x != m]
        rs, ps = d["rna_shared"][:, keep], d["protein"][:, keep]
        ok = (rs.std(0) > 0) & (ps.std(0) > 0)
        match = fit(zscore(rs[:, ok]), zscore(ps[:, ok]), rna_active, zscore(d["protein"][:, keep]))
        tmp = out.with_suffix(".tmp.npz")
        np.savez(tmp, rna=np.asarray(match[0], np.int64), cell=np.asarray(match[1], np.int64),
                 score=np.asarray(match[2], np.float64), marker=np.array(m), seconds=np.array(time.perf_counter() - t0))
        tmp.replace(out)
        print(f"  maxfuse {m}: {len(match[0])} pairs, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)

if __name__ == "__main__":
    main(sys.argv[1:])
