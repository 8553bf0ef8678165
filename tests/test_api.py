"""The public Python API a notebook user meets: in-memory objects, input-state checks, scanpy conventions,
scoped thread limits and the pp/tl/pl namespaces (real MALT CITE-seq and CODEX data where present)."""
from __future__ import annotations

import inspect
import logging
import os
import subprocess
import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import scprospatial as scp
from scprospatial import _constants as K
from scprospatial.errors import InputError
from scprospatial.model import ModelConfig

TINY = ModelConfig(n_hvg=40, d_model=16, d_joint=8, d_hidden=16, n_blocks=1, batch_size=128, epochs_pretrain=1,
                   epochs_align=1, epochs_translate=2, patience=10)
MALT_TRAIN = "citeseq/malt_10k_train_1000cells.h5ad"
MALT_QUERY = "citeseq/malt_10k_query_1100cells_rna_only.h5ad"
CODEX = "spatial/codex_crc_schurch2020_reg009.csv"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------ namespaces
def test_import_is_light_and_namespaces_resolve():
    code = "import scprospatial, sys; assert 'torch' not in sys.modules, 'torch imported'; scprospatial.pp"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
                          env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert scp.keys.PROTEIN_PREDICTED == "protein_predicted"
    assert scp.ScProSpatial.__name__ == "ScProSpatial"
    with pytest.raises(AttributeError):
        scp.not_a_thing  # noqa: B018


@pytest.mark.parametrize("name", ["pp", "tl", "pl"])
def test_every_exported_function_has_a_numpydoc_docstring(name):
    module = getattr(scp, name)
    for fn in module.__all__:
        obj = getattr(module, fn)
        doc = inspect.getdoc(obj) or ""
        assert "Parameters\n----------" in doc and "Returns\n-------" in doc, f"{name}.{fn}"


# ------------------------------------------------------------------ input state
def _counts(n=60, genes=30, seed=0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    x = sp.csr_matrix(rng.poisson(2.0, (n, genes)).astype(np.float32))
    return ad.AnnData(x, var=pd.DataFrame(index=[f"G{i}" for i in range(genes)]))


def test_rna_input_state_tells_counts_lognorm_and_scaled():
    a = _counts()
    assert scp.pp.rna_input_state(a.X) == "counts"
    scp.pp.normalize(a)
    assert scp.pp.rna_input_state(a.X) == "lognorm" and K.COUNTS_LAYER in a.layers
    scaled = a.X.toarray() - a.X.toarray().mean(0)
    with pytest.raises(InputError, match="scanpy.pp.normalize_total"):
        scp.pp.rna_input_state(scaled)


# ------------------------------------------------------------------ thread limits
def test_library_calls_leave_the_process_thread_limits_alone(tmp_path):
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    from scprospatial.spatial import spatial_stats_file

    rng = np.random.default_rng(0)
    table = pd.DataFrame({"X": rng.uniform(0, 100, 200), "Y": rng.uniform(0, 100, 200),
                          "CD3": rng.gamma(2, 50, 200), "CD20": rng.gamma(2, 50, 200),
                          "cell_type": rng.choice(["T", "B"], 200)})
    table.to_csv(tmp_path / "cells.csv", index=False)
    env = os.environ.get("SCPROSPATIAL_THREADS")
    with threadpool_limits(limits=1):
        before = [p["num_threads"] for p in threadpool_info()]
        torch_before = torch.get_num_threads()
        with scp.threads(2) as n:
            assert n == 2 and torch.get_num_threads() == 2
        spatial_stats_file(tmp_path / "cells.csv", tmp_path / "out", n_perms=5, threads=2)
        assert [p["num_threads"] for p in threadpool_info()] == before
        assert torch.get_num_threads() == torch_before
    assert os.environ.get("SCPROSPATIAL_THREADS") == env


# ------------------------------------------------------------------ a notebook session on real data
@pytest.fixture(scope="module")
def malt(shared_data):
    return ad.read_h5ad(shared_data / MALT_TRAIN), ad.read_h5ad(shared_data / MALT_QUERY)


@pytest.fixture(scope="module")
def model(malt):
    train, _ = malt
    # scvi-tools face: the in-memory cohort (obsm['protein_counts'] as a DataFrame) registered once
    m = scp.ScProSpatial.setup_anndata(train, TINY, seed=0)
    m.train(seed=0, device="cpu")
    return m


def test_train_without_data_needs_registered_cohorts(model, tmp_path):
    assert model.registered is not None and len(model.registered) == 1 and model.meta.get("metrics")
    loaded = scp.ScProSpatial.load(model.save(tmp_path / "m.pt"), device="cpu")
    assert loaded.registered is None  # the checkpoint holds no data
    with pytest.raises(InputError, match="no training data"):
        loaded.train(device="cpu")


def test_in_memory_inputs_are_prepared_into_new_objects(malt, shared_data):
    train, _ = malt
    x_before, obsm_before = train.X.copy(), list(train.obsm)
    prepared = scp.pp.read(train)
    assert prepared is not train and (train.X != x_before).nnz == 0 and list(train.obsm) == obsm_before
    assert K.PROTEIN in prepared.obsm and prepared.uns[K.UNS][K.KIND] == "citeseq"
    assert scp.pp.read(prepared) is not prepared and scp.pp.read(prepared, copy=False) is prepared
    pbmc = ad.read_h5ad(shared_data / "citeseq/pbmc_10k_protein_v3_200cells.h5ad")  # scvi-tools layout
    assert scp.pp.read(pbmc).obsm[K.PROTEIN].shape == (200, 14)
    mudata = pytest.importorskip("mudata")
    prot = ad.AnnData(train.obsm["protein_counts"].to_numpy(), obs=train.obs[[]],
                      var=pd.DataFrame(index=train.obsm["protein_counts"].columns))
    mdata = mudata.MuData({"rna": train[:, :200].copy(), "prot": prot})
    assert scp.pp.read(mdata).obsm[K.PROTEIN].shape[0] == train.n_obs


def test_setup_names_what_is_missing(malt):
    train, _ = malt
    rna_only = ad.AnnData(train.X, obs=train.obs, var=train.var)
    with pytest.raises(InputError, match="no training cohort has measured protein"):
        scp.ScProSpatial.setup(rna_only, TINY)


def test_predict_on_raw_and_log_normalised_counts(model, malt, caplog):
    _, query = malt
    x_before = query.X.copy()
    with caplog.at_level(logging.WARNING, logger="scprospatial"):
        raw_out = scp.tl.predict_proteins(query, model, copy=True)
    assert "raw counts" in caplog.text and (query.X != x_before).nnz == 0
    assert K.PROTEIN_PREDICTED not in query.obsm  # copy=True left the input alone
    pred = raw_out.obsm[K.PROTEIN_PREDICTED]
    assert pred.shape == (query.n_obs, len(model.vocab.measured)) and np.isfinite(pred.to_numpy()).all()
    assert raw_out.uns[K.PROTEIN_PREDICTED]["input_rna"].startswith("raw counts")
    lognorm = scp.pp.read(query, kind="rna")
    assert scp.tl.predict_proteins(lognorm, model, key_added="prot") is None  # copy=False: in place
    assert {"prot", "prot" + K.SD_SUFFIX, K.EMBEDDING} <= set(lognorm.obsm)
    assert lognorm.uns["prot"]["input_rna"] == "log-normalised"
    np.testing.assert_allclose(lognorm.obsm["prot"].to_numpy(), pred.to_numpy(), atol=1e-4)
    scaled = lognorm.copy()
    scaled.X = scaled.X.toarray() - 1.0
    with pytest.raises(InputError, match="scprospatial.pp.normalize"):
        model.predict(scaled)


def test_map_then_spatial_statistics(model, malt, shared_data, tmp_path):
    _, query = malt
    table = pd.read_csv(shared_data / CODEX)
    spatial = scp.pp.read(table, kind="spatial", dataset="codex")
    assert spatial.n_obs == len(table) and K.SPATIAL in spatial.obsm
    rna = query[:400].copy()
    result = scp.tl.map_cells(model, rna, spatial, k=5, adapt_epochs=0, copy=True)
    assert K.PROTEIN_PREDICTED not in spatial.obsm and K.MAPPED_LOCATION not in rna.obsm  # copies only
    sp_out, rna_out = result
    panel = [p for p in spatial.obsm[K.PROTEIN].columns
             if p in model.vocab.gene_links and p not in model.vocab.measured]
    # by default the training panel plus every imaged marker the model predicts
    assert list(sp_out.obsm[K.PROTEIN_PREDICTED].columns)[:len(model.vocab.measured)] == model.vocab.measured
    assert sp_out.obsm[K.PROTEIN_PREDICTED].shape == (spatial.n_obs, len(model.vocab.measured) + len(panel))
    assert sp_out.obsm[K.PROTEIN_PREDICTED_SD].shape == sp_out.obsm[K.PROTEIN_PREDICTED].shape
    assert rna_out.obsm[K.MAPPED_LOCATION].shape == (rna.n_obs, 2) and K.MAPPING_CONFIDENCE in sp_out.obs
    assert scp.tl.spatial_neighbors(sp_out, n_neighs=6) is None
    assert K.SPATIAL_CONNECTIVITIES in sp_out.obsp
    cluster_key = sp_out.uns[K.UNS].get(K.CELL_TYPE_KEY) or "ClusterID"
    sp_out.obs[cluster_key] = sp_out.obs[cluster_key].astype(str).astype("category")
    enriched = scp.tl.nhood_enrichment(sp_out, cluster_key=cluster_key, n_perms=20, copy=True)
    key = f"{cluster_key}_nhood_enrichment"
    n_types = sp_out.obs[cluster_key].nunique()
    assert key not in sp_out.uns and enriched.uns[key]["zscore"].shape == (n_types, n_types)
    assert scp.pl.nhood_enrichment(enriched, cluster_key, tmp_path / "enrichment.png").stat().st_size > 0
