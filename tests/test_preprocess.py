"""Normalisation maths, the prepared layout, and validation errors."""
from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scprospatial import _constants as K
from scprospatial.errors import InputError
from scprospatial.preprocess import (
    LogNormalisedInputWarning,
    arcsinh,
    check_genes_shared,
    choose_cofactor,
    clr,
    normalize_rna,
    prepare,
    quantile_scale,
)

from ._data_fixtures import PANEL, adt_counts, rna_counts


def _raw_cite(n_cells: int = 30) -> ad.AnnData:
    adata = rna_counts(n_cells)
    adata.obsm[K.PROTEIN_RAW] = pd.DataFrame(adt_counts(PANEL, n_cells), index=adata.obs_names, columns=PANEL)
    adata.uns[K.UNS] = {"source": "cohort.h5ad", "reader": "test"}
    return adata


def _raw_spatial(scale: float = 1.0, n_cells: int = 50) -> ad.AnnData:
    rng = np.random.default_rng(3)
    adata = ad.AnnData(X=(rng.gamma(1.0, 2.0, (n_cells, 3)) * scale).astype(np.float32),
                       var=pd.DataFrame(index=["CD3", "PD-L1", "Ki67"]),
                       obs=pd.DataFrame(index=[f"c{i}" for i in range(n_cells)]))
    adata.obsm[K.SPATIAL] = rng.uniform(0, 100, (n_cells, 2))
    adata.uns[K.UNS] = {"source": "tissue.csv", "reader": "test"}
    return adata


# --- maths -----------------------------------------------------------------------------------------------
def test_normalize_rna_library_size_log1p():
    adata = rna_counts()
    x = adata.X.toarray()
    x[0] = 0  # a cell without counts stays all zero
    adata.X = sp.csr_matrix(x)
    counts = adata.X.copy()
    normalize_rna(adata, target_sum=1e4)
    assert sp.issparse(adata.X) and adata.X.dtype == np.float32
    assert (adata.layers[K.COUNTS_LAYER] != counts).nnz == 0
    sums = np.asarray(np.expm1(adata.X.toarray()).sum(axis=1)).ravel()
    np.testing.assert_allclose(sums[1:], 1e4, rtol=1e-4)
    assert sums[0] == 0
    assert adata.uns[K.UNS][K.NORMALISATION]["rna"] == {"method": "log1p_library_size", "target_sum": 1e4}


def test_normalize_rna_copy_leaves_input():
    adata = rna_counts()
    before = adata.X.copy()
    out = normalize_rna(adata, target_sum=100, copy=True)
    assert (adata.X != before).nnz == 0 and K.COUNTS_LAYER not in adata.layers
    assert K.COUNTS_LAYER in out.layers


def test_clr_matches_seurat_definition():
    adata = _raw_cite()
    clr(adata)
    x = adata.obsm[K.PROTEIN_RAW].to_numpy(dtype=float)
    for i in (0, 7):  # Seurat: log1p(x / exp(sum(log1p(x[x > 0])) / length(x))), per cell
        gm = np.exp(np.log1p(x[i][x[i] > 0]).sum() / x.shape[1])
        np.testing.assert_allclose(adata.obsm[K.PROTEIN].iloc[i].to_numpy(), np.log1p(x[i] / gm), rtol=1e-5)
    assert list(adata.obsm[K.PROTEIN].columns) == PANEL
    entry = adata.uns[K.UNS][K.NORMALISATION]["protein"]
    assert entry["method"] == "clr" and entry["axis"] == "cell" and entry["pseudocount"] == 1.0


def test_arcsinh_and_cofactor_rule():
    counts_like = _raw_spatial(scale=1.0)
    raw = counts_like.X.copy()
    arcsinh(counts_like, cofactor="auto")
    assert counts_like.uns[K.UNS][K.NORMALISATION]["protein"]["cofactor"] == 5.0
    np.testing.assert_allclose(counts_like.X, np.arcsinh(raw / 5.0), rtol=1e-6)
    np.testing.assert_array_equal(counts_like.layers[K.RAW_LAYER], raw)
    assert list(counts_like.obsm[K.PROTEIN].columns) == list(counts_like.var_names)

    intensities = _raw_spatial(scale=1000.0)
    c = choose_cofactor(intensities.X)
    low = np.median([np.percentile(col[col > 0], 20) for col in intensities.X.T])
    assert 5.0 < c and abs(c - low) / low < 0.1  # sits at the background level of the panel
    fixed = arcsinh(intensities, cofactor=150.0, copy=True)
    assert fixed.uns[K.UNS][K.NORMALISATION]["protein"] == {"method": "arcsinh", "cofactor": 150.0,
                                                            "cofactor_rule": "given"}


def test_quantile_scale_range():
    adata = _raw_spatial(scale=100.0)
    raw = adata.X.copy()
    quantile_scale(adata, lower=0.01, upper=0.99)
    lo, hi = np.quantile(raw, 0.01, axis=0), np.quantile(raw, 0.99, axis=0)
    np.testing.assert_allclose(adata.X, np.clip((raw - lo) / (hi - lo), 0, 1), rtol=1e-5, atol=1e-6)
    assert adata.X.min() == 0 and adata.X.max() == 1
    assert adata.uns[K.UNS][K.NORMALISATION]["protein"]["method"] == "quantile"


# --- prepare ---------------------------------------------------------------------------------------------------
def test_prepare_citeseq_layout():
    out = prepare(_raw_cite(), "citeseq", dataset="cohort", batch="b1")
    info = out.uns[K.UNS]
    assert info[K.KIND] == "citeseq" and info[K.DATASET] == "cohort"
    assert list(out.obsm[K.PROTEIN].columns) == ["CD3", "CD4", "CD8", "CD279"]
    assert list(out.obsm[K.PROTEIN_RAW].columns) == ["CD3", "CD4", "CD8", "CD279"]
    assert list(out.obsm[K.ISOTYPE_CONTROLS].columns) == ["Mouse_IgG1"]
    assert info["panel_original"] == PANEL[:4]
    assert info[K.NORMALISATION]["protein"]["background"] == "isotype_controls"
    assert info[K.NORMALISATION]["protein"]["isotype_controls"] == ["Mouse_IgG1"]
    assert set(out.obs[K.BATCH]) == {"b1"}
    assert sp.issparse(out.layers[K.COUNTS_LAYER]) and out.layers[K.COUNTS_LAYER].dtype == np.float32


def test_prepare_spatial_layout():
    out = prepare(_raw_spatial(scale=1000.0), "spatial", dataset="tissue")
    assert list(out.var_names) == ["CD3", "CD274", "Ki67"]
    assert list(out.var["original_name"]) == ["CD3", "PD-L1", "Ki67"]
    assert out.obsm[K.SPATIAL].dtype == np.float64 and out.obsm[K.SPATIAL].shape == (50, 2)
    np.testing.assert_array_equal(out.obsm[K.PROTEIN].to_numpy(), out.X)
    assert out.uns[K.UNS][K.NORMALISATION]["protein"]["cofactor"] > 5.0


def test_an_already_transformed_panel_is_used_as_given():
    """A table arcsinh-transformed and z-scored by its authors (negative values, small range) is not transformed
    again, and the output says so; raw intensities, background-subtracted ones with a few negatives included,
    still get arcsinh."""
    raw = _raw_spatial(scale=1000.0)
    x = np.arcsinh(raw.X / 150.0)
    zscored = raw.copy()
    zscored.X = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    out = prepare(zscored, "spatial", dataset="breast")
    np.testing.assert_array_equal(out.X, zscored.X)
    np.testing.assert_array_equal(out.obsm[K.PROTEIN].to_numpy(), zscored.X)
    entry = out.uns[K.UNS][K.NORMALISATION]["protein"]
    assert entry["method"] == "none" and "already transformed" in entry["reason"]
    subtracted = raw.copy()
    subtracted.X = (raw.X - 200.0).astype(np.float32)   # background-subtracted intensities: negatives, large range
    assert (subtracted.X < 0).any()
    assert prepare(subtracted, "spatial", dataset="t").uns[K.UNS][K.NORMALISATION]["protein"]["method"] == "arcsinh"


def test_prepare_quantile_option():
    out = prepare(_raw_spatial(), "spatial", dataset="t", imaging_method="quantile")
    assert out.uns[K.UNS][K.NORMALISATION]["protein"]["method"] == "quantile"


# --- validation --------------------------------------------------------------------------------------------------
def _with_value(value, where="rna"):
    adata = _raw_cite()
    if where == "rna":
        x = adata.X.toarray()
        x[2, 3] = value
        adata.X = sp.csr_matrix(x)
    else:
        adata.obsm[K.PROTEIN_RAW].iloc[2, 1] = value
    return adata


@pytest.mark.parametrize("value, where, message", [
    (np.nan, "rna", "NaN or Inf"), (np.inf, "protein", "NaN or Inf"), (-3.0, "rna", "negative"),
    (-1.0, "protein", "negative"), (2.5, "rna", "not integer counts"),
])
def test_bad_values_raise(value, where, message):
    with pytest.raises(InputError, match=message) as err:
        prepare(_with_value(value, where), "citeseq", dataset="cohort")
    assert str(err.value).startswith("cohort.h5ad: ")


def test_lognormalised_input_is_used_with_a_warning():
    adata = _raw_cite()
    normalize_rna(adata)
    del adata.layers[K.COUNTS_LAYER]
    with pytest.warns(LogNormalisedInputWarning):
        out = prepare(adata, "rna", dataset="cohort")
    assert out.uns[K.UNS][K.NORMALISATION]["rna"]["as_given"] is True
    np.testing.assert_allclose(out.X.toarray(), adata.X.toarray())


def test_duplicate_cells_and_empty_matrix_raise():
    dup = _raw_cite()
    dup.obs_names = ["same"] * dup.n_obs
    with pytest.raises(InputError, match="duplicate cell ids"):
        prepare(dup, "rna", dataset="cohort")
    empty = _raw_cite()
    empty.X = sp.csr_matrix(empty.shape, dtype=np.float32)
    with pytest.raises(InputError, match="empty"):
        prepare(empty, "rna", dataset="cohort")


def test_check_genes_shared():
    adata = rna_counts()
    assert check_genes_shared(adata, ["CD4", "PDCD1", "NOPE"]) == 2
    with pytest.raises(InputError, match="no genes shared with the model's vocabulary") as err:
        check_genes_shared(adata, ["ENSG0001"], "query.h5ad")
    assert "query.h5ad" in str(err.value)


def test_batch_labels():
    raw = _raw_cite()
    assert set(prepare(raw, "rna", dataset="cohort").obs[K.BATCH]) == {"cohort"}
    raw.obs[K.BATCH] = ["b1", "b2"] * (raw.n_obs // 2)
    assert set(prepare(raw, "rna", dataset="cohort").obs[K.BATCH]) == {"b1", "b2"}  # input batches kept
    given = prepare(raw, "rna", dataset="cohort", batch="run7")
    assert set(given.obs[K.BATCH]) == {"run7"} and set(given.obs["batch_original"]) == {"b1", "b2"}


def test_value_checks_count_across_blocks(monkeypatch):
    """check_finite and the counts test work block by block (no float64 copy of a 10^6-cell X): the counts
    are the same whatever the block size."""
    from scprospatial.preprocess import _validate

    x = sp.csr_matrix(np.array([[1.0, 0, 2], [np.nan, -1, 3], [np.inf, 0, -2]], np.float32))
    monkeypatch.setattr(_validate, "CHECK_BLOCK", 2)
    with pytest.raises(InputError, match=r"NaN or Inf \(2 values\)"):
        _validate.check_finite(x, "x.h5ad", "RNA values")
    finite = sp.csr_matrix(np.array([[1.0, 0, 2], [4, -1, 3], [5, 0, -2]], np.float32))
    with pytest.raises(InputError, match=r"negative values \(2\)"):
        _validate.check_finite(finite, "x.h5ad", "RNA values")
    _validate.check_finite(finite, "x.h5ad", "values", allow_negative=True)
    assert _validate.rna_counts_status(abs(finite), "x.h5ad") == "counts"
    with pytest.raises(InputError, match=r"20.0% non-integer"):
        _validate.rna_counts_status(sp.csr_matrix(np.array([[31.0, 2, 3, 4, 5.5]], np.float32)), "x.h5ad")
