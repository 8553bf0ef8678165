"""Tangram (benchmarks/.venv-peers only) on the held-out marker test of bench_mapping.py.

    benchmarks/.venv-peers/bin/python benchmarks/peers/run_tangram.py IN.npz OUTDIR [--epochs N] [--seed S] [--k K]

IN.npz is the file bench_mapping.py writes for MaxFuse (run_maxfuse.py): rna_shared (RNA cells x markers: log-normalised
expression of each marker's coding gene(s)), protein (imaged cells x markers, arcsinh), markers, held_out (markers to
hide one at a time; FULL_PANEL hides none). For each held-out marker, the marker is removed from both sides and
tangram.map_cells_to_space is fitted with its tutorial settings in mode "cells" (learning rate 0.1, lambda_g1 = 1,
every shared feature a training gene) on the CPU, seeded, for a fixed number of epochs (default 1000, Tangram's own).
The density prior is "uniform": every imaged "spot" here is one cell, and the "rna_count_based" prior (a spot's summed
counts) has no meaning for arcsinh protein intensities. Tangram returns a scRNA-seq cell x imaged cell probability
matrix; each imaged cell keeps its top-k scRNA-seq cells (k = 10, as every top-k method of the benchmark), their
probabilities renormalised to sum to 1. OUTDIR/<i>.npz (i: the marker's position in held_out) holds 'rna', 'cell',
'weight' (one entry per kept pair), 'marker', 'seconds', 'epochs', 'final_score' (Tangram's last gene-cosine score).
Markers whose file exists are skipped, so an interrupted run resumes.
"""
from __future__ import annotations

import logging

import numpy as np
from _held_out import each_held_out, parser


def fit(rna: np.ndarray, protein: np.ndarray, names: list[str], epochs: int, seed: int) -> tuple[np.ndarray, float]:
    import anndata as ad
    import tangram as tg
    import torch
    from scipy import sparse

    sc_ad = ad.AnnData(sparse.csr_matrix(rna.astype(np.float32)))   # tangram calls .toarray() on the scRNA-seq X
    sp_ad = ad.AnnData(protein.astype(np.float32))
    sc_ad.var_names = sp_ad.var_names = [f"f{i}_{n}" for i, n in enumerate(names)]
    tg.pp_adatas(sc_ad, sp_ad, genes=None)                           # drops all-zero features on either side
    genes = sorted(sc_ad.uns["training_genes"])                     # a fixed order (pp_adatas returns a set's)
    sc_ad.uns["training_genes"] = sp_ad.uns["training_genes"] = genes
    np.random.seed(seed)                                             # tangram seeds only when random_state is truthy
    torch.manual_seed(seed)
    out = tg.map_cells_to_space(sc_ad, sp_ad, mode="cells", device="cpu", learning_rate=0.1, num_epochs=epochs,
                                density_prior="uniform", random_state=seed or None, verbose=False)
    hist = out.uns.get("training_history", {}).get("main_loss", [])
    last = float(hist[-1]) if len(hist) else float("nan")
    return np.asarray(out.X, np.float64), last


def main(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--epochs", type=int, default=1000)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    logging.getLogger().setLevel(logging.WARNING)
    d = np.load(args.src, allow_pickle=False)
    markers = [str(m) for m in d["markers"]]

    def one(keep: list[int]):
        probs, last = fit(d["rna_shared"][:, keep], d["protein"][:, keep], [markers[j] for j in keep], args.epochs,
                          args.seed)
        return probs, {"epochs": args.epochs, "final_score": last}

    each_held_out(d, args.dst, args.k, "tangram", one)


if __name__ == "__main__":
    main()
