"""totalVI (scvi-tools) on one benchmark work folder; run with benchmarks/.venv-peers/bin/python.

The standard totalVI protein imputation: the training cells (train + val, raw RNA and ADT counts) and the
test cells (raw RNA, ADT all zero) are one AnnData with the test cells as their own batch; totalVI sees a
batch whose proteins are all zero as missing (protein_batch_mask), so the test cells' protein is never
used. Genes: 4,000 HVGs (seurat_v3 on the counts of all cells; its per-batch fit fails on 200-cell batches).
After training, the test cells' denoised protein (foreground and background, mean of 25 posterior samples)
is read with transform_batch = the training batch. Those are expected counts: the adapter applies the same
per-cell CLR as `scprospatial prepare`.
"""
from __future__ import annotations

import time
from importlib.metadata import version

import _exchange as X
import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

TRAIN_BATCH, TEST_BATCH = "train", "test"


def main(argv=None) -> None:
    p = X.parser(__doc__)
    p.add_argument("--max-epochs", type=int, default=200)
    p.add_argument("--n-hvg", type=int, default=4000)
    p.add_argument("--n-samples", type=int, default=25)
    args = p.parse_args(argv)
    X.seed_all(args.seed, args.threads)
    import scanpy as sc
    import scvi

    scvi.settings.seed = args.seed
    scvi.settings.num_threads = max(1, args.threads)
    train, val, test = X.read_inputs(args.workdir)
    cells = ad.concat([train, val], merge="same")
    counts = pd.concat([train.obsm[X.PROTEIN_COUNTS], val.obsm[X.PROTEIN_COUNTS]]).loc[cells.obs_names]
    proteins = list(counts.columns)
    blank = pd.DataFrame(0.0, index=test.obs_names, columns=proteins)
    both = ad.AnnData(X=sp.vstack([sp.csr_matrix(cells.X), sp.csr_matrix(test.X)]).astype(np.float32).tocsr(),
                      obs=pd.DataFrame({"batch": [TRAIN_BATCH] * cells.n_obs + [TEST_BATCH] * test.n_obs},
                                       index=[*cells.obs_names, *test.obs_names]),
                      var=pd.DataFrame(index=cells.var_names))
    both.obsm[X.PROTEIN_COUNTS] = pd.concat([counts, blank]).loc[both.obs_names]
    both.layers["counts"] = both.X.copy()
    sc.pp.filter_genes(both, min_cells=3)
    sc.pp.highly_variable_genes(both, n_top_genes=min(args.n_hvg, both.n_vars), flavor="seurat_v3",
                                layer="counts", subset=True)  # per-batch loess fails on 200-cell batches
    t0 = time.perf_counter()
    scvi.model.TOTALVI.setup_anndata(both, batch_key="batch", layer="counts",
                                     protein_expression_obsm_key=X.PROTEIN_COUNTS)
    model = scvi.model.TOTALVI(both)
    model.train(max_epochs=args.max_epochs, accelerator="cpu", devices=1, enable_progress_bar=False)
    test_idx = np.flatnonzero(both.obs["batch"].to_numpy() == TEST_BATCH)
    _, protein = model.get_normalized_expression(indices=test_idx, transform_batch=TRAIN_BATCH,
                                                 n_samples=args.n_samples, include_protein_background=True,
                                                 sample_protein_mixing=False, return_mean=True,
                                                 return_numpy=False)
    out = pd.DataFrame(np.asarray(protein), index=both.obs_names[test_idx], columns=proteins)
    history = model.history.get("elbo_train")
    X.write_outputs(args.workdir, out.loc[test.obs_names], scale=X.SCALE_COUNTS, peer="totalVI",
                    version=version("scvi-tools"), seconds=round(time.perf_counter() - t0, 1),
                    epochs=int(len(history)) if history is not None else None, n_hvg=int(both.n_vars))


if __name__ == "__main__":
    main()
