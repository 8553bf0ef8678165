"""Readers on every real file in ../shared/data and on generated layouts; load(); prepare_files(); errors."""
from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from scprospatial import _constants as K
from scprospatial.errors import InputError
from scprospatial.io import dataset_name, load, prepare_files, read_input

from ._data_fixtures import generated, mibi_table, write_10x_h5, write_pair  # noqa: F401 - fixture

pytestmark = pytest.mark.filterwarnings("ignore::anndata.OldFormatWarning", "ignore::UserWarning")


# --- real data -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, kind, n_cells, n_proteins, n_isotypes", [
    ("malt_10k_train_1000cells.h5ad", "citeseq", 1000, 14, 3),
    ("malt_10k_query_1100cells_rna_only.h5ad", "rna", 1100, 0, 0),
    ("pbmc_10k_protein_v3_200cells.h5ad", "citeseq", 200, 14, 0),
    ("pbmc_5k_protein_v3_200cells.h5ad", "citeseq", 200, 29, 0),
    ("pbmc_10x_v3_1024cells/filtered_feature_bc_matrix", "citeseq", 1024, 14, 3),
])
def test_real_citeseq_and_rna(shared_data, name, kind, n_cells, n_proteins, n_isotypes):
    adata = load(shared_data / "citeseq" / name)
    info = adata.uns[K.UNS]
    assert info[K.KIND] == kind and adata.n_obs == n_cells
    assert adata.layers[K.COUNTS_LAYER].sum() > 0 and np.all(np.mod(adata.layers[K.COUNTS_LAYER].data, 1) == 0)
    if kind == "citeseq":
        assert adata.obsm[K.PROTEIN].shape == (n_cells, n_proteins)
        assert adata.obsm[K.ISOTYPE_CONTROLS].shape[1] == n_isotypes
        assert "CD279" in adata.obsm[K.PROTEIN] and len(info["unrecognised_proteins"]) == 0
    else:
        assert K.PROTEIN not in adata.obsm
    if "10x" in name:
        assert info[K.DATASET] == "pbmc_10x_v3_1024cells" and "gene_ids" in adata.var


def test_real_codex(shared_data):
    adata = load(shared_data / "spatial" / "codex_crc_schurch2020_reg009.csv")
    assert adata.shape == (2434, 56)
    assert adata.uns[K.UNS]["cell_type_key"] == "ClusterName"
    assert adata.uns[K.UNS]["coordinate_columns"] == ["X", "Y"]
    assert not {"X.1", "Y.1"} & set(adata.obs.columns)  # pandas-renamed duplicate X/Y columns are dropped
    assert {"HOECHST1:Cyc_1_ch_1", "DRAQ5:Cyc_23_ch_4", "size:size", "tile_nr:tile_nr"} <= set(adata.obs.columns)
    assert {"CD8", "CD274", "CD279", "Pan-Keratin"} <= set(adata.var_names)
    assert adata.uns[K.UNS][K.NORMALISATION]["protein"]["cofactor"] > 5.0  # fluorescence scale


def test_real_cycif(shared_data):
    adata = load(shared_data / "spatial" / "cycif_scimap_example.csv")
    assert adata.shape == (3029, 33)
    assert not any(v.startswith(("DNA", "BG")) for v in adata.var["original_name"])
    assert {"Area", "Eccentricity", "DNA1", "BG1"} <= set(adata.obs.columns)
    table = pd.read_csv(shared_data / "spatial" / "cycif_scimap_example.csv")
    np.testing.assert_allclose(adata.obsm[K.SPATIAL], table[["X_position", "Y_position"]].to_numpy())
    assert list(adata.obs_names[:2]) == [str(c) for c in table["CellID"][:2]]


# --- generated layouts ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("key, reader", [("scvi", "h5ad:obsm[protein_expression]"), ("h5mu", "h5mu:rna+prot"),
                                         ("10x_h5", "10x_h5")])
def test_generated_citeseq_layouts(generated, key, reader):  # noqa: F811
    adata, kind = read_input(generated[key])
    assert kind == "citeseq" and adata.uns[K.UNS]["reader"] == reader
    assert list(adata.obsm[K.PROTEIN_RAW].columns)[:2] == ["CD3_TotalSeqB", "CD4_TotalSeqB"]
    prepared = load(generated[key])
    assert list(prepared.obsm[K.PROTEIN].columns) == ["CD3", "CD4", "CD8", "CD279"]


def test_pair_reorders_protein_cells(generated):  # noqa: F811
    adata = load(f"{generated['pair_rna']},{generated['pair_protein']}")
    prot = ad.read_h5ad(generated["pair_protein"])
    cell = adata.obs_names[3]
    assert adata.obsm[K.PROTEIN_RAW].loc[cell, "CD4"] == prot[cell, "CD4_TotalSeqB"].X[0, 0]
    assert dataset_name((generated["pair_rna"], generated["pair_protein"])) == "rna"


def test_pair_cell_mismatch(tmp_path):
    rna, prot = write_pair(tmp_path, drop_protein_cells=2)
    with pytest.raises(InputError, match="cells do not match: 2 only in RNA") as err:
        read_input([rna, prot])
    assert "protein.h5ad" in str(err.value)


def test_rna_kind_drops_protein_and_10x_without_antibodies(generated, tmp_path):  # noqa: F811
    assert K.PROTEIN not in load(generated["scvi"], kind="rna").obsm
    adata, kind = read_input(write_10x_h5(tmp_path / "gex.h5", with_antibodies=False))
    assert kind == "rna" and "gene_ids" in adata.var
    with pytest.raises(InputError, match="no protein measurements"):
        read_input(tmp_path / "gex.h5", kind="citeseq")


@pytest.mark.parametrize("key", ["mibi_csv", "mibi_parquet"])
def test_mibi_tables(generated, key):  # noqa: F811
    adata = load(generated[key])
    assert list(adata.var["original_name"]) == ["CD45", "CD3", "CD8", "FoxP3", "Pan-Keratin", "HLA-DR", "PD1", "Ki67"]
    assert adata.uns[K.UNS]["cell_type_key"] == "cell_type"
    assert adata.uns[K.UNS][K.NORMALISATION]["protein"]["cofactor"] == 5.0  # count scale
    assert adata.obs_names[0] == "1"  # cellLabelInImage


def test_table_overrides_centroids_and_z(tmp_path):
    df = mibi_table().rename(columns={"x": "centroid-1", "y": "centroid-0"}).assign(z=np.arange(40.0))
    df.to_csv(tmp_path / "cells.tsv", sep="\t", index=False)
    adata = load(tmp_path / "cells.tsv")
    np.testing.assert_allclose(adata.obsm[K.SPATIAL], df[["centroid-1", "centroid-0", "z"]].to_numpy())
    chosen = load(tmp_path / "cells.tsv", x_col="cellSize", y_col="z", marker_cols=["CD3", "Ki67"],
                  cell_type_col="tumorYN", id_col="cellLabelInImage")
    assert list(chosen.var_names) == ["CD3", "Ki67"] and chosen.uns[K.UNS]["cell_type_key"] == "tumorYN"
    np.testing.assert_allclose(chosen.obsm[K.SPATIAL][:, 0], df["cellSize"])
    given = load(tmp_path / "cells.tsv", cofactor=150.0).uns[K.UNS][K.NORMALISATION]["protein"]
    assert given == {"method": "arcsinh", "cofactor": 150.0, "cofactor_rule": "given"}


def test_spatial_h5ad(tmp_path):
    df = mibi_table()
    markers = ["CD3", "CD8", "Ki67", "dsDNA"]
    src = ad.AnnData(X=df[markers].to_numpy(np.float32), var=pd.DataFrame(index=markers),
                     obs=df[["cell_type"]].set_axis([f"c{i}" for i in range(40)]))
    src.obsm[K.SPATIAL] = df[["x", "y"]].to_numpy()
    src.write_h5ad(tmp_path / "imaged.h5ad")
    adata = load(tmp_path / "imaged.h5ad")
    assert adata.uns[K.UNS][K.KIND] == "spatial" and list(adata.var_names) == ["CD3", "CD8", "Ki67"]
    assert list(adata.obs_names[:2]) == ["c0", "c1"]
    np.testing.assert_allclose(adata.obsm[K.SPATIAL], src.obsm[K.SPATIAL])


# --- load / prepare_files -----------------------------------------------------------------------------------
def test_prepare_files_then_load_is_identity(generated, tmp_path):  # noqa: F811
    out = prepare_files([generated["scvi"], generated["mibi_csv"]], tmp_path / "out", batch="run1")
    assert [p.name for p in out] == ["scvi.h5ad", "mibi.h5ad"]
    again = load(out[0])
    first = ad.read_h5ad(out[0])
    np.testing.assert_array_equal(again.X.toarray(), first.X.toarray())  # not normalised twice
    assert set(again.obs[K.BATCH]) == {"run1"}
    assert load(out[0], kind="rna").uns[K.UNS][K.KIND] == "citeseq"  # citeseq carries RNA
    with pytest.raises(InputError, match="prepared as 'spatial'"):
        load(out[1], kind="citeseq")


def _no_output(outdir: Path) -> bool:
    return not outdir.exists() or not any(outdir.iterdir())


@pytest.mark.parametrize("case, message", [
    ("missing", "file not found"), ("garbage_h5ad", "cannot read as .h5ad"), ("unsupported", "unsupported input"),
    ("no_coordinates", "no coordinate columns"), ("nan_coordinates", "NaN or Inf"), ("empty_table", "no rows"),
    ("no_markers", "no marker columns"), ("duplicate_ids", "duplicate cell ids"), ("negative", "negative"),
    ("missing_marker", "not found in the table"),
])
def test_errors_name_the_file_and_write_nothing(tmp_path, case, message):
    df = mibi_table()
    path = tmp_path / f"{case}.csv"
    overrides = {}
    if case == "missing":
        path = tmp_path / "absent.h5ad"
    elif case == "garbage_h5ad":
        path = tmp_path / "garbage.h5ad"
        path.write_text("not hdf5")
    elif case == "unsupported":
        path = tmp_path / "notes.docx"
        path.write_text("x")
    elif case == "no_coordinates":
        df.drop(columns=["x", "y"]).to_csv(path, index=False)
    elif case == "nan_coordinates":
        df.assign(x=np.where(np.arange(40) == 3, np.nan, df["x"])).to_csv(path, index=False)
    elif case == "empty_table":
        df.iloc[:0].to_csv(path, index=False)
    elif case == "no_markers":
        df[["x", "y", "cellLabelInImage", "dsDNA", "cellSize", "cell_type"]].to_csv(path, index=False)
    elif case == "duplicate_ids":
        df.assign(cellLabelInImage=1).to_csv(path, index=False)
        overrides = {"id_col": "cellLabelInImage"}
    elif case == "negative":
        path = tmp_path / "negative.h5ad"
        adata = ad.AnnData(X=-np.ones((5, 4), dtype=np.float32))
        adata.write_h5ad(path)
    elif case == "missing_marker":
        df.to_csv(path, index=False)
        overrides = {"marker_cols": ["CD3", "CD999"]}
    outdir = tmp_path / "out"
    with pytest.raises(InputError, match=message) as err:
        prepare_files([path], outdir, **overrides)
    assert path.name in str(err.value) and "\n" not in str(err.value)
    assert _no_output(outdir)


def test_dataset_names_must_not_collide(generated, tmp_path):  # noqa: F811
    with pytest.raises(InputError, match="same dataset"):
        prepare_files([generated["mibi_csv"], generated["mibi_parquet"]], tmp_path / "out")
    out = prepare_files([generated["mibi_parquet"]], tmp_path / "out", dataset="tissue")
    assert out == [tmp_path / "out" / "tissue.h5ad"] and out[0].exists()
