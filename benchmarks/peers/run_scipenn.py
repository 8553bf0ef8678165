"""sciPENN (Lakkis et al. 2022) on one benchmark work folder; run with benchmarks/.venv-peers/bin/python.

sciPENN is trained on the train + val cells (it carves its own early-stopping part, 10%, out of them) with
its defaults: 1,000 HVGs chosen over training and test RNA, per-batch z-scored genes and proteins, quantile
heads; its gene filter keeps genes expressed in 30 training cells (a tenth of the cells below 300 cells,
where 30 would leave no gene). Inputs: the log-normalised RNA (layers['lognorm']) and the CLR protein
(obsm['protein_clr']), so sciPENN's own cell and log normalisation are off (they would apply to the proteins
too); its per-batch z-scoring of the proteins is inverted with the training cells' mean and SD, which puts
the predictions on the CLR scale the benchmark scores on. Like its paper, it standardises the test RNA with
the test batch's own statistics (transductive in the RNA, never in the protein).
"""
from __future__ import annotations

import os
import tempfile
import time
from importlib.metadata import version

import _exchange as X
import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

MIN_CELLS = 30  # sciPENN's gene filter (expressed in >= 30 training cells); a tenth of the cells when fewer than 300


def _genes(a: ad.AnnData) -> ad.AnnData:
    return ad.AnnData(X=sp.csr_matrix(a.layers[X.LOGNORM], dtype=np.float32), obs=pd.DataFrame(index=a.obs_names),
                      var=pd.DataFrame(index=a.var_names))


def main(argv=None) -> None:
    p = X.parser(__doc__)
    p.add_argument("--max-epochs", type=int, default=10000, help="sciPENN's n_epochs (early stopping ends it)")
    args = p.parse_args(argv)
    X.seed_all(args.seed, args.threads)
    from sciPENN.sciPENN_API import sciPENN_API

    train, val, test = X.read_inputs(args.workdir)
    cells = ad.concat([train, val], merge="same")
    clr = pd.concat([train.obsm[X.PROTEIN_CLR], val.obsm[X.PROTEIN_CLR]]).loc[cells.obs_names]
    protein = ad.AnnData(X=clr.to_numpy(np.float32, copy=True), obs=pd.DataFrame(index=cells.obs_names),
                         var=pd.DataFrame(index=clr.columns))
    mean, sd = clr.mean().to_numpy(), clr.std(ddof=1).replace(0.0, 1.0).to_numpy()
    t0 = time.perf_counter()
    api = sciPENN_API(gene_trainsets=[_genes(cells)], protein_trainsets=[protein], gene_test=_genes(test),
                      select_hvg=True, cell_normalize=False, log_normalize=False, gene_normalize=True,
                      min_cells=min(MIN_CELLS, max(1, cells.n_obs // 10)), min_genes=0, use_gpu=False)
    # sciPENN z-scored the proteins in place (sc.pp.scale, SD with ddof=1): check the inverse used below
    np.testing.assert_allclose(np.asarray(protein.X), (clr.to_numpy() - mean) / sd, atol=1e-3)
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="scipenn-") as weights:
        os.chdir(weights)  # sciPENN's build_dir loops forever on an absolute path: give it a relative one
        try:
            api.train(n_epochs=args.max_epochs, weights_dir="weights", load=False)
        finally:
            os.chdir(here)
        pred = api.predict()
    out = pd.DataFrame(np.asarray(pred.X) * sd + mean, index=pred.obs_names, columns=pred.var_names)
    X.write_outputs(args.workdir, out.loc[test.obs_names], scale=X.SCALE_NORMALISED, peer="sciPENN",
                    version=version("sciPENN"), seconds=round(time.perf_counter() - t0, 1),
                    n_hvg=int(api.train_genes.shape[0]))


if __name__ == "__main__":
    main()
