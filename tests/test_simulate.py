"""The seeded simulator: files, determinism, chunking, and that the biology in it is learnable."""
from __future__ import annotations

import hashlib
import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.spatial import cKDTree

from scprospatial.errors import InputError
from scprospatial.simulate import _simulate, simulate

SMALL = {"n_cells": 800, "n_query": 300, "n_spatial": 3000, "n_genes": 600, "seed": 3}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    return simulate(out, **SMALL)


@pytest.fixture(scope="module")
def cite(cohort):
    return ad.read_h5ad(cohort["citeseq"])


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _lognorm(X) -> np.ndarray:
    X = sp.csr_matrix(X)
    lib = np.asarray(X.sum(axis=1)).ravel()
    return np.log1p(np.asarray(X.multiply(1e4 / lib[:, None]).todense()))


def test_files_shapes_and_layout(cohort, cite):
    assert cite.shape == (SMALL["n_cells"], SMALL["n_genes"])
    assert sp.issparse(cite.X) and cite.X.dtype == np.float32
    assert np.array_equal(cite.X.data, np.round(cite.X.data)) and cite.X.data.min() >= 1   # raw UMI counts
    assert cite.obs_names.is_unique
    assert {"CD3E", "CD8A", "MS4A1", "PTPRC", "FOXP3", "MKI67"} <= set(cite.var_names)
    assert cite.var["gene_ids"].str.fullmatch(r"ENSG\d{11}").all() and cite.var["gene_ids"].is_unique
    prot = cite.obsm["protein_counts"]
    assert isinstance(prot, pd.DataFrame) and 20 <= prot.shape[1] <= 35
    assert {"CD3_TotalSeqB", "CD8a_TotalSeqB", "PD-1_TotalSeqB", "CD45RA_TotalSeqB", "HLA-DR_TotalSeqB"} <= set(prot)
    assert (prot.index == cite.obs_names).all()
    assert set(cite.obs["batch"]) == {"batch1", "batch2"}
    assert cite.obs["cell_type"].nunique() == 8

    query = ad.read_h5ad(cohort["rna"])
    assert query.shape == (SMALL["n_query"], SMALL["n_genes"]) and not query.obsm
    assert set(query.var_names) == set(cite.var_names) and list(query.var_names) != list(cite.var_names)
    truth = pd.read_csv(cohort["query_protein"], index_col=0)
    assert list(truth.index) == list(query.obs_names)
    assert "CD3" in truth and "CD3_TotalSeqB" not in truth
    assert list(pd.read_csv(cohort["query_cell_type"], index_col=0).index) == list(query.obs_names)

    sheet = pd.read_csv(cohort["samplesheet"])
    assert list(sheet.columns) == ["id", "kind", "path", "batch", "cell_type_col"]
    assert set(sheet["kind"]) == {"citeseq", "rna", "spatial"}
    assert all((cohort["samplesheet"].parent / p).is_file() for p in sheet["path"])
    params = json.loads(cohort["params"].read_text())
    assert params["arguments"]["seed"] == SMALL["seed"] and len(params["cell_types"]) == 8


def test_backed_mode_reads_the_streamed_file(cohort, cite):
    backed = ad.read_h5ad(cohort["citeseq"], backed="r")
    try:
        part = backed[100:140].to_memory()
    finally:
        backed.file.close()
    assert (part.X != cite.X[100:140]).nnz == 0
    assert part.obs["cell_type"].tolist() == cite.obs["cell_type"].iloc[100:140].tolist()


def test_samplesheet_passes_the_pipeline_schema(cohort):
    from scprospatial.pipeline.samplesheet import read_samplesheet

    samples = read_samplesheet(cohort["samplesheet"])
    assert {s.kind for s in samples} == {"citeseq", "rna", "spatial"}
    assert all(p.exists() for s in samples for p in s.paths)


def test_same_arguments_give_identical_bytes(cohort, tmp_path):
    again = simulate(tmp_path, **SMALL)
    for name, path in cohort.items():
        assert _digest(path) == _digest(again[name]), name
    other = simulate(tmp_path / "other", **{**SMALL, "seed": SMALL["seed"] + 1})
    assert _digest(other["citeseq"]) != _digest(cohort["citeseq"])


def test_chunk_size_does_not_change_content(tmp_path, monkeypatch):
    monkeypatch.setattr(_simulate, "block_cells", lambda n_genes: 64)   # many blocks at a small size
    monkeypatch.setattr(_simulate, "SPATIAL_BLOCK", 128)
    args = {**SMALL, "n_cells": 300, "n_query": 130, "n_spatial": 700}
    whole = simulate(tmp_path / "whole", **args, chunk_size=10_000)
    bits = simulate(tmp_path / "bits", **args, chunk_size=100)   # 2 blocks per chunk, last chunk partial
    for name in ("citeseq", "rna"):
        a, b = ad.read_h5ad(whole[name]), ad.read_h5ad(bits[name])
        assert (a.X != b.X).nnz == 0 and a.obs.equals(b.obs) and a.var.equals(b.var)
        assert all(a.obsm[k].equals(b.obsm[k]) for k in a.obsm)
    for name in ("spatial", "query_protein", "spatial_cell_type", "citeseq_cell_type"):
        assert _digest(whole[name]) == _digest(bits[name]), name


def test_sparsity_and_depth_are_realistic(cite):
    zeros = 1.0 - cite.X.nnz / np.prod(cite.shape)
    assert 0.85 < zeros < 0.97
    depth = np.asarray(cite.X.sum(axis=1)).ravel()
    by_batch = pd.Series(depth).groupby(cite.obs["batch"].to_numpy()).median()
    assert 300 < depth.mean() < 10_000
    assert by_batch["batch2"] < 0.85 * by_batch["batch1"]        # the batch effect includes depth


def test_protein_follows_its_coding_gene_but_not_perfectly(cite, cohort):
    params = json.loads(cohort["params"].read_text())["proteins"]
    norm = _lognorm(cite.X)
    genes = {g: i for i, g in enumerate(cite.var_names)}
    prot = cite.obsm["protein_counts"]
    r = {}
    for name, spec in params.items():
        if spec["adt"]:
            r[name] = np.corrcoef(norm[:, genes[spec["gene"]]], np.log1p(prot[spec["adt"]]))[0, 1]
    r = pd.Series(r)
    assert (r > 0.3).mean() > 0.7, r.sort_values()
    assert (r < 0.98).all(), r.sort_values()


def test_isotype_controls_track_background(cite):
    prot = cite.obsm["protein_counts"]
    iso = [c for c in prot if "control" in c]
    assert len(iso) >= 2
    assert prot[iso].to_numpy().mean() < prot.drop(columns=iso).to_numpy().mean()
    background = prot[iso].sum(axis=1)
    # ambient background raises every antibody: a marker absent from the simulated types follows it
    assert np.corrcoef(np.log1p(background), np.log1p(prot["CD15_TotalSeqB"]))[0, 1] > 0.1


def test_cd45_isoforms_follow_naive_memory_state(cite):
    prot = cite.obsm["protein_counts"]
    ratio = np.log1p(prot["CD45RA_TotalSeqB"]) - np.log1p(prot["CD45RO_TotalSeqB"])
    by_type = ratio.groupby(cite.obs["cell_type"].to_numpy()).mean()
    assert by_type["B cell"] > by_type["CD8 T cell"] + 0.5
    assert by_type["NK cell"] > by_type["Macrophage"] + 0.5


def test_cell_types_are_separable(cite):
    from sklearn.decomposition import PCA
    from sklearn.neighbors import KNeighborsClassifier

    pcs = PCA(20, random_state=0).fit_transform(_lognorm(cite.X))
    labels = cite.obs["cell_type"].to_numpy()
    half = len(labels) // 2
    acc = KNeighborsClassifier(15).fit(pcs[:half], labels[:half]).score(pcs[half:], labels[half:])
    assert acc > 0.85


def test_spatial_table_has_tissue_niches(cohort):
    table = pd.read_csv(cohort["spatial"])
    assert len(table) == SMALL["n_spatial"] and table["CellID"].is_unique
    assert {"X", "Y", "HOECHST1:Cyc_1_ch_1", "ClusterName", "CD8 - cytotoxic T cells:Cyc_2_ch_4"} <= set(table)
    markers = [c for c in table if ":Cyc_" in c and not c.startswith("HOECHST")]
    assert 30 <= len(markers) <= 50
    values = table[markers].to_numpy()
    assert values.min() > 0 and 100 < np.median(values) < 5000         # raw imaging intensity scale
    types = table["ClusterName"].to_numpy()
    _, nbrs = cKDTree(table[["X", "Y"]].to_numpy()).query(table[["X", "Y"]].to_numpy(), k=11)
    same = (types[nbrs[:, 1:]] == types[:, None]).mean()
    share = pd.Series(types).value_counts(normalize=True)
    assert same > 2.0 * (share**2).sum()                               # well above random mixing
    cd8 = "CD8 - cytotoxic T cells:Cyc_2_ch_4"
    assert table.loc[types == "CD8 T cell", cd8].median() > 2 * table.loc[types == "B cell", cd8].median()
    truth = pd.read_csv(cohort["spatial_cell_type"])
    assert (truth["cell_type"].to_numpy() == types).all() and truth["niche"].nunique() >= 4


def test_cycif_layout(tmp_path):
    paths = simulate(tmp_path, n_cells=100, n_spatial=500, n_genes=300, spatial_layout="cycif")
    table = pd.read_csv(paths["spatial"])
    assert {"X_position", "Y_position", "phenotype", "CD8A", "PD1", "KI67", "DNA1"} <= set(table)
    assert not any(":Cyc_" in c for c in table)
    assert "phenotype" in pd.read_csv(paths["samplesheet"])["cell_type_col"].tolist()


def test_vocabulary_filler_names_relabel_genes_only(cohort, tmp_path):
    """filler_names='vocabulary': filler genes carry the protein vocabulary's coding genes, counts unchanged."""
    from scprospatial.vocab import get_vocabulary

    named = simulate(tmp_path, **{**SMALL, "n_spatial": 10}, filler_names="vocabulary")
    a, b = ad.read_h5ad(cohort["rna"]), ad.read_h5ad(named["rna"])
    assert (a.X != b.X).nnz == 0 and b.var_names.is_unique
    coding = {g for p in get_vocabulary().proteins for g in get_vocabulary().genes(p)}
    was_filler = a.var_names.str.startswith("GENE")
    assert was_filler.sum() > 100 and set(b.var_names[was_filler]) <= coding   # 600 genes: all fillers named
    assert list(b.var_names[~was_filler]) == list(a.var_names[~was_filler])   # the simulated biology's genes stay
    assert json.loads(named["params"].read_text())["arguments"]["filler_names"] == "vocabulary"


@pytest.mark.parametrize("bad", [{"n_genes": 50}, {"spatial_layout": "merfish"}, {"n_cells": 0},
                                 {"n_cell_types": 40}, {"chunk_size": 0}, {"filler_names": "random"}])
def test_bad_arguments_are_input_errors(tmp_path, bad):
    with pytest.raises(InputError):
        simulate(tmp_path, **{"n_cells": 50, "n_genes": 300, **bad})
    assert not list(tmp_path.glob(".simulate-*"))     # no staging folder left behind


def test_cli_simulate(tmp_path, cli):
    proc = cli("simulate", "--outdir", tmp_path, "--n-cells", "120", "--seed", "2")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "citeseq.h5ad").is_file() and "samplesheet" in proc.stdout
    assert ad.read_h5ad(tmp_path / "citeseq.h5ad").n_obs == 120
