"""The AnnData-facing model: prediction invariances, flags, save/load, vocabulary errors, streaming impute."""
from __future__ import annotations

import dataclasses

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from scprospatial import _constants as K
from scprospatial.errors import InputError
from scprospatial.model import ModelConfig, ScProSpatial, impute_file

CODING = ["CD3E", "CD4", "CD8A", "CD19", "MS4A1", "PTPRC", "NCAM1", "IL7R", "CD14", "HLA-DRA"]
TINY = ModelConfig(n_hvg=60, d_model=16, d_joint=8, d_hidden=16, n_blocks=1, batch_size=64, epochs_pretrain=2,
                   epochs_align=2, epochs_translate=4, patience=10)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_cohort(n: int = 240, seed: int = 0, proteins=("CD3", "CD4", "CD19", "CD45RA"), batch: str = "c1",
                n_other: int = 90, kind: str = "citeseq") -> ad.AnnData:
    """A small cohort in the prepared layout: 3 cell types; proteins follow type and coding-gene RNA."""
    rng = np.random.default_rng(seed)
    genes = CODING + [f"GENE{i}" for i in range(n_other)]
    types = rng.integers(0, 3, n)
    profile = np.random.default_rng(123).gamma(0.6, 2.0, (3, len(genes)))
    counts = rng.poisson(profile[types] * rng.uniform(0.5, 1.5, (n, 1))).astype(np.float32)
    lib = counts.sum(1, keepdims=True).clip(1)
    x = sp.csr_matrix(np.log1p(counts / lib * 1e4).astype(np.float32))
    a = ad.AnnData(x, obs=pd.DataFrame({K.BATCH: batch}, index=[f"{batch}_{i}" for i in range(n)]),
                   var=pd.DataFrame(index=genes))
    a.layers[K.COUNTS_LAYER] = sp.csr_matrix(counts)
    a.uns[K.UNS] = {K.KIND: kind, K.DATASET: batch,
                    K.NORMALISATION: {"rna": {"method": "log1p_library_size", "target_sum": 1e4}}}
    if kind == "citeseq":
        dense = np.asarray(x.todense())
        prot = {p: types * (j + 1) % 3 + 0.5 * dense[:, j] + 0.1 * rng.standard_normal(n)
                for j, p in enumerate(proteins)}
        a.obsm[K.PROTEIN] = pd.DataFrame(prot, index=a.obs_names).astype(np.float32)
    return a


@pytest.fixture(scope="module")
def trained():
    train = make_cohort(seed=0)
    model = ScProSpatial.setup([train], TINY, seed=0)
    model.train([train], seed=0, device="cpu")
    return model


@pytest.fixture(scope="module")
def query():
    a = make_cohort(n=70, seed=5, batch="q", kind="rna")
    return a


def _pred(model, adata, **kw) -> pd.DataFrame:
    return model.predict(adata, **kw).obsm[K.PROTEIN_PREDICTED]


def test_prediction_does_not_depend_on_other_requested_proteins_or_their_order(trained, query):
    alone = _pred(trained, query, proteins=["CD4"])
    together = _pred(trained, query, proteins=["CD19", "CD3", "CD4", "CD45RA"])
    reversed_ = _pred(trained, query, proteins=["CD45RA", "CD4", "CD3", "CD19"])
    np.testing.assert_allclose(alone["CD4"], together["CD4"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(together[["CD3", "CD19"]], reversed_[["CD3", "CD19"]], rtol=0, atol=1e-5)
    assert list(reversed_.columns) == ["CD45RA", "CD4", "CD3", "CD19"]
    assert alone["CD4"].std() > 0
    # proteins predicted through their coding gene, alone and among every predictable protein
    every = _pred(trained, query, all_proteins=True)
    for p in ("CD20", "CD56"):
        np.testing.assert_allclose(_pred(trained, query, proteins=[p])[p], every[p], rtol=0, atol=1e-5)


def test_prediction_does_not_depend_on_gene_order(trained, query):
    perm = np.random.default_rng(1).permutation(query.n_vars)
    shuffled = query[:, perm].copy()
    np.testing.assert_allclose(_pred(trained, query), _pred(trained, shuffled), rtol=0, atol=1e-5)
    np.testing.assert_allclose(trained.embed_rna(query), trained.embed_rna(shuffled), rtol=0, atol=1e-5)


def test_chunk_size_does_not_change_results(trained, query):
    np.testing.assert_allclose(_pred(trained, query, batch_size=7), _pred(trained, query, batch_size=4096),
                               rtol=0, atol=1e-5)


def test_output_layout_and_gene_link_flags(trained, query):
    out = trained.predict(query, all_proteins=True)
    info = out.uns[K.PROTEIN_PREDICTED]
    assert set(info["measured_in_training"]) == {"CD3", "CD4", "CD19", "CD45RA"}
    # proteins never measured but coded by a vocabulary gene (MS4A1 -> CD20, NCAM1 -> CD56) are predictable
    assert {"CD20", "CD56"} <= set(info["predicted_via_gene_link"])
    assert not set(info["measured_in_training"]) & set(info["predicted_via_gene_link"])
    pred, sd = out.obsm[K.PROTEIN_PREDICTED], out.obsm[K.PROTEIN_PREDICTED_SD]
    assert list(pred.columns) == list(sd.columns) and (pred.index == query.obs_names).all()
    assert np.isfinite(pred.to_numpy()).all() and (sd.to_numpy() > 0).all()
    emb = out.obsm[K.EMBEDDING]
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    assert info["scale"] == "clr" and info["model_id"].startswith("scprospatial-")
    links = info["gene_links"]  # one row per (protein, coding gene)
    assert set(links.columns) == {"protein", "gene"} and set(links["protein"]) <= set(pred.columns)
    assert ("CD20", "MS4A1") in set(zip(links["protein"], links["gene"]))


def test_missing_genes_are_counted_and_no_shared_gene_is_an_error(trained, query):
    part = query[:, 20:].copy()
    info = trained.predict(part).uns[K.PROTEIN_PREDICTED]
    assert info["n_vocabulary_genes_missing"] >= 20 - (len(query.var_names) - len(trained.vocab.genes))
    assert info["n_vocabulary_genes_missing"] > 0
    alien = query.copy()
    alien.var_names = [f"XX{i}" for i in range(alien.n_vars)]
    with pytest.raises(InputError, match="no gene shared"):
        trained.predict(alien)


def test_unknown_protein_is_an_input_error(trained, query):
    with pytest.raises(InputError, match="not predictable"):
        trained.predict(query, proteins=["NOT_A_PROTEIN_XYZ"])


def test_save_load_round_trip_predicts_identically(trained, query, tmp_path):
    path = trained.save(tmp_path / "model.pt")
    loaded = ScProSpatial.load(path, device="cpu")
    assert loaded.vocab.to_dict() == trained.vocab.to_dict()
    assert loaded.meta["model_id"] == trained.meta["model_id"]
    a, b = trained.predict(query, all_proteins=True), loaded.predict(query, all_proteins=True)
    np.testing.assert_array_equal(a.obsm[K.PROTEIN_PREDICTED], b.obsm[K.PROTEIN_PREDICTED])
    np.testing.assert_array_equal(a.obsm[K.PROTEIN_PREDICTED_SD], b.obsm[K.PROTEIN_PREDICTED_SD])


def test_incompatible_checkpoint_vocabulary_fails_loudly(trained, tmp_path):
    path = trained.save(tmp_path / "model.pt")
    ck = torch.load(path, weights_only=True)
    ck["vocabulary"]["genes"] = ck["vocabulary"]["genes"][:-3]
    torch.save(ck, tmp_path / "bad.pt")
    with pytest.raises(InputError, match="do not match"):
        ScProSpatial.load(tmp_path / "bad.pt", device="cpu")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError):
        ScProSpatial.load(tmp_path / "junk.pt", device="cpu")


def test_impute_file_streams_backed_and_matches_predict(trained, query, tmp_path):
    src = tmp_path / "query.h5ad"
    query.write_h5ad(src)
    model_path = trained.save(tmp_path / "model.pt")
    out_small = impute_file(model_path, src, tmp_path / "a.h5ad", all_proteins=True, device="cpu", batch_size=16)
    out_big = impute_file(trained, src, tmp_path / "b.h5ad", all_proteins=True, device="cpu", batch_size=4096)
    a, b = ad.read_h5ad(out_small), ad.read_h5ad(out_big)
    expected = trained.predict(query, all_proteins=True).obsm[K.PROTEIN_PREDICTED]
    np.testing.assert_allclose(a.obsm[K.PROTEIN_PREDICTED], expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(a.obsm[K.PROTEIN_PREDICTED_SD], b.obsm[K.PROTEIN_PREDICTED_SD], rtol=0, atol=1e-5)
    assert list(a.obsm[K.PROTEIN_PREDICTED].columns) == list(expected.columns)
    assert a.obsm[K.EMBEDDING].shape == (query.n_obs, TINY.d_joint)
    assert a.uns[K.PROTEIN_PREDICTED]["predicted_via_gene_link"].size > 0
    assert (a.X != query.X).nnz == 0


def test_embed_protein_uses_the_measured_panel(trained):
    cells = make_cohort(n=30, seed=9, batch="img")
    emb = trained.embed_protein(cells)
    assert emb.shape == (30, TINY.d_joint) and np.isfinite(emb).all()
    cells.obsm[K.PROTEIN] = cells.obsm[K.PROTEIN].rename(columns=lambda c: f"UNKNOWN{c}")
    with pytest.raises(InputError, match="protein vocabulary"):
        trained.embed_protein(cells)


def test_coding_genes_of_unmeasured_proteins_are_output_only(trained, query):
    """The encoder reads HVGs + coding genes of measured proteins; the coding genes of proteins requested
    only through their gene link (MS4A1 -> CD20) are not read, yet pretraining trains their ID embeddings."""
    vocab, module = trained.vocab, trained.module
    assert "MS4A1" in vocab.genes and "MS4A1" not in vocab.inputs
    assert {"CD3E", "CD4"} <= set(vocab.inputs)
    before = trained.embed_rna(query)
    changed = query.copy()
    col = changed.var_names.get_loc("MS4A1")
    x = changed.X.toarray()
    x[:, col] = x[:, col] + 3.0
    changed.X = sp.csr_matrix(x)
    np.testing.assert_allclose(trained.embed_rna(changed), before, atol=1e-6)
    fresh = ScProSpatial.setup([make_cohort(seed=0)], TINY, seed=0)
    i = vocab.gene_index.get_loc("MS4A1")
    assert i in module.output_genes.tolist()
    assert not torch.allclose(fresh.module.rna_encoder.id_emb[i], module.rna_encoder.id_emb[i])


def test_proteins_never_measured_follow_their_denoised_coding_gene(query):
    """A gene-link-only protein is a + b * its coding-gene RNA (MS4A1 is output-only: the tied decoder's
    denoised value), fitted on validation cells of the measured proteins, independent of the translator
    head; the tied decoder learns genes."""
    from scprospatial.model._data import GeneMapping, dataset_index, dataset_names, map_rna
    from scprospatial.nn._sparse import sparse_tensor

    train = make_cohort(seed=0)
    model = ScProSpatial.setup([train], dataclasses.replace(TINY, epochs_pretrain=40), seed=0)
    model.train([train], seed=0, device="cpu")
    fit = model.meta["metrics"]["gene_link_fit"]
    assert fit["fitted"] and fit["slope"] > 0 and fit["residual_sd"] > 0
    mod, vocab = model.module.eval(), model.vocab
    x = sparse_tensor(map_rna(query.X, GeneMapping.of(query.var_names, vocab), len(vocab.genes)), "cpu")
    with torch.no_grad():
        cell = mod.rna_encoder(x, torch.as_tensor(dataset_index(dataset_names(query), model.datasets)))
        cd20 = torch.as_tensor([vocab.protein_index.get_loc("CD20")])
        denoised = mod.link_rna(x, cell, cd20).numpy().ravel()
        recon = mod.gene_query_decoder(cell, mod.rna_encoder.id_emb, torch.arange(len(vocab.genes))).numpy()
    pred = model.predict(query, proteins=["CD20"]).obsm[K.PROTEIN_PREDICTED]["CD20"].to_numpy()
    np.testing.assert_allclose(pred, fit["intercept"] + fit["slope"] * denoised, rtol=1e-4, atol=1e-4)
    dense = x.to_dense().numpy()
    r = [np.corrcoef(recon[:, j], dense[:, j])[0, 1] for j in range(dense.shape[1]) if dense[:, j].std() > 0]
    assert np.nanmedian(r) > 0.3
    with torch.no_grad():
        mod.head.mlp[-1].bias.add_(5.0)          # the head does not touch gene-link proteins
        try:
            again = model.predict(query, proteins=["CD20"]).obsm[K.PROTEIN_PREDICTED]["CD20"].to_numpy()
        finally:
            mod.head.mlp[-1].bias.sub_(5.0)
    np.testing.assert_allclose(again, pred, rtol=1e-5, atol=1e-5)


def test_head_only_routes_gene_link_proteins_through_the_head_and_default_is_unchanged(trained, query):
    """predict_panel(head_only=True) (mapping's opt-in panel view) predicts gene-link proteins with the translator
    head; the default is the model's normal prediction, and measured proteins are the same either way."""
    from scprospatial.spatial._fuse import predict_panel

    names = ["CD3", "CD20", "CD4", "CD56"]
    normal = _pred(trained, query, proteins=names).to_numpy()
    default = predict_panel(trained, query, names)
    head = predict_panel(trained, query, names, head_only=True)
    np.testing.assert_array_equal(default, normal)
    np.testing.assert_allclose(head[:, [0, 2]], normal[:, [0, 2]], rtol=0, atol=1e-5)
    assert np.abs(head[:, [1, 3]] - normal[:, [1, 3]]).max() > 1e-3
    mod = trained.module
    with torch.no_grad():
        mod.head.mlp[-1].bias.add_(5.0)          # moves every head prediction's mean by 5 (and its logvar)
        try:
            head_shifted = predict_panel(trained, query, names, head_only=True)
            default_shifted = predict_panel(trained, query, names)
        finally:
            mod.head.mlp[-1].bias.sub_(5.0)
    np.testing.assert_array_equal(default_shifted[:, [1, 3]], default[:, [1, 3]])   # gene link: head untouched
    assert np.abs(head_shifted[:, [1, 3]] - head[:, [1, 3]]).min() > 1.0             # head_only: through the head


def test_protein_side_is_mapped_in_chunks_with_the_same_values(trained):
    from scprospatial.model._data import map_protein

    cells = make_cohort(n=50, seed=9, batch="img")
    cells.obsm[K.PROTEIN].iloc[3, 1] = np.nan                 # an unmeasured value stays masked in a chunk
    values, mask = map_protein(cells, trained.vocab)
    part_v, part_m = map_protein(cells, trained.vocab, slice(2, 7))
    np.testing.assert_array_equal(part_v, values[2:7])
    np.testing.assert_array_equal(part_m, mask[2:7])
    assert not part_m[1, trained.vocab.protein_index.get_loc(cells.obsm[K.PROTEIN].columns[1])]
    rows = np.array([0, 4, 31])
    np.testing.assert_array_equal(map_protein(cells, trained.vocab, rows)[0], values[rows])
    np.testing.assert_allclose(trained.embed_protein(cells, batch_size=7), trained.embed_protein(cells),
                               rtol=0, atol=1e-6)


def test_public_seams_for_code_outside_model_agree_with_predict(trained, query):
    """What spatial mapping uses instead of the model's internals: to(), dataset_ids(), protein_values(),
    predict_chunks()."""
    from scprospatial.model._data import map_protein

    assert trained.to("cpu") is trained and trained.device == "cpu"
    names = ["CD4", "CD20"]                                          # measured, and through the gene link
    out = trained.predict(query, proteins=names)
    mean, sd = np.zeros((query.n_obs, 2), np.float32), np.zeros((query.n_obs, 2), np.float32)
    emb = np.zeros_like(out.obsm[K.EMBEDDING])
    for rows, e, m, s in trained.predict_chunks(query, names, batch_size=16):
        emb[rows], mean[rows], sd[rows] = e, m, s
    np.testing.assert_allclose(mean, out.obsm[K.PROTEIN_PREDICTED][names].to_numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(sd, out.obsm[K.PROTEIN_PREDICTED_SD][names].to_numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(emb, out.obsm[K.EMBEDDING], rtol=0, atol=1e-6)
    # cohort of training: its 1-based position; anything else: 0, the 'unknown dataset' embedding
    assert (trained.dataset_ids(make_cohort(n=5, seed=1, batch="c1")) == 1).all()
    assert (trained.dataset_ids(query) == 0).all()
    cells = make_cohort(n=12, seed=9, batch="img")
    for got, want in zip(trained.protein_values(cells, slice(3, 9)), map_protein(cells, trained.vocab, slice(3, 9))):
        np.testing.assert_array_equal(got, want)
