"""Inputs from imaging pipelines: MCMICRO quantification tables, steinbock folders, SpatialData stores (read, and
results written back as a SpatialData table)."""
from __future__ import annotations

import sys
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from scprospatial import _constants as K
from scprospatial.errors import InputError
from scprospatial.io import load, read_input

from ._imaging_fixtures import MARKERS, MORPHOLOGY, mcmicro_table, spatialdata_object, write_steinbock, write_store

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def _cross_image_edges(adata, key) -> int:
    graph = adata.obsp[K.SPATIAL_CONNECTIVITIES].tocoo()
    lib = adata.obs[key].astype(str).to_numpy()
    return int((lib[graph.row] != lib[graph.col]).sum())


# --- MCMICRO ----------------------------------------------------------------------------------------------------
def test_mcmicro_table_markers_coordinates_and_morphology_as_metadata(tmp_path):
    df = mcmicro_table()
    path = tmp_path / "exemplar-001--unmicst_cell.csv"
    df.to_csv(path, index=False)
    adata, kind = read_input(path)
    assert kind == "spatial" and adata.uns[K.UNS]["reader"] == "mcmicro"
    assert list(adata.var_names) == MARKERS                       # DNA, centroids and morphology are not markers
    assert set(MORPHOLOGY + ["DNA_1", "column_centroid", "row_centroid"]) <= set(adata.obs.columns)
    assert list(adata.obs_names) == [str(i) for i in df["CellID"]]
    np.testing.assert_allclose(adata.obsm[K.SPATIAL], df[["X_centroid", "Y_centroid"]].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(adata.X, df[MARKERS].to_numpy(), rtol=1e-6)


def test_real_cycif_table_is_mcmicro_but_for_its_coordinate_names(shared_data, tmp_path):
    """The scimap CyCIF example is an MCMICRO table whose X_centroid/Y_centroid were renamed X_position/Y_position."""
    path = shared_data / "spatial" / "cycif_scimap_example.csv"
    adata, _ = read_input(path)
    assert adata.n_obs == 3029 and adata.n_vars == 33 and adata.uns[K.UNS]["coordinate_columns"] == ["X_position",
                                                                                                     "Y_position"]
    assert set(MORPHOLOGY) <= set(adata.obs.columns) and not set(MORPHOLOGY) & set(adata.var_names)
    assert adata.obs_names[0] == "1"                               # CellID names the cells
    renamed = tmp_path / "cycif.csv"
    pd.read_csv(path).rename(columns={"X_position": "X_centroid", "Y_position": "Y_centroid"}).to_csv(renamed,
                                                                                                       index=False)
    mc, _ = read_input(renamed)
    assert mc.uns[K.UNS]["reader"] == "mcmicro" and list(mc.var_names) == list(adata.var_names)
    np.testing.assert_array_equal(mc.obsm[K.SPATIAL], adata.obsm[K.SPATIAL])


# --- steinbock --------------------------------------------------------------------------------------------------
def test_steinbock_folder_reads_every_image_as_one_library_each(tmp_path):
    root = write_steinbock(tmp_path / "steinbock")
    adata, kind = read_input(root)
    assert kind == "spatial" and adata.n_obs == 55 and adata.uns[K.UNS]["reader"] == "steinbock"
    assert list(adata.var_names) == ["CD3", "CD8", "CD20"]      # panel names, DNA1 set aside
    assert "DNA1" in adata.obs and "area" in adata.obs
    assert adata.obs[K.LIBRARY_ID].value_counts().to_dict() == {"img_A": 30, "img_B": 25}
    assert adata.uns[K.UNS][K.LIBRARY_KEY] == K.LIBRARY_ID
    props = pd.read_csv(root / "regionprops" / "img_B.csv").set_index("Object")
    inten = pd.read_csv(root / "intensities" / "img_B.csv").set_index("Object")
    cell = adata[f"img_B_{props.index[3]}"]
    np.testing.assert_allclose(cell.obsm[K.SPATIAL][0], props.loc[props.index[3], ["centroid-1", "centroid-0"]])
    np.testing.assert_allclose(cell.X[0], inten.loc[props.index[3], ["Sm152", "Er170", "Yb176"]], rtol=1e-6)
    prepared = load(root)
    assert prepared.uns[K.UNS][K.LIBRARY_KEY] == K.LIBRARY_ID and prepared.uns[K.UNS][K.DATASET] == "steinbock"


def test_steinbock_graph_and_statistics_stay_within_each_image(tmp_path, cli):
    root = write_steinbock(tmp_path / "steinbock", metal_tags=False)
    cli("spatial-graph", root, "--out", tmp_path / "g.h5ad", "--k", "5", check=True)
    graph = ad.read_h5ad(tmp_path / "g.h5ad")
    assert graph.obsp[K.SPATIAL_CONNECTIVITIES].nnz == 55 * 5 and _cross_image_edges(graph, K.LIBRARY_ID) == 0
    assert graph.uns[K.SPATIAL_NEIGHBORS]["params"]["library_key"] == K.LIBRARY_ID


def _drop_regionprops_of_b(root):
    (root / "regionprops" / "img_B.csv").unlink()


def _object_ids_differ(root):
    df = pd.read_csv(root / "regionprops" / "img_A.csv")
    df.iloc[:-1].to_csv(root / "regionprops" / "img_A.csv", index=False)


def _no_object_column(root):
    pd.read_csv(root / "intensities" / "img_A.csv").rename(columns={"Object": "cell"}).to_csv(
        root / "intensities" / "img_A.csv", index=False)


def _channels_differ(root):
    pd.read_csv(root / "intensities" / "img_B.csv").drop(columns=["Er170"]).to_csv(
        root / "intensities" / "img_B.csv", index=False)


def _panel_without_names(root):
    pd.read_csv(root / "panel.csv").drop(columns=["name"]).to_csv(root / "panel.csv", index=False)


@pytest.mark.parametrize("damage, where, message", [
    (lambda root: __import__("shutil").rmtree(root / "regionprops"), ".", "no regionprops/"),
    (_drop_regionprops_of_b, "regionprops", "no regionprops for image(s) ['img_B']"),
    (_object_ids_differ, "regionprops/img_A.csv", "Object ids differ"),
    (_no_object_column, "intensities/img_A.csv", "no 'Object' column"),
    (_channels_differ, "intensities/img_B.csv", "channels differ"),
    (_panel_without_names, "panel.csv", "panel has no column(s) ['name']"),
])
def test_malformed_steinbock_folders_are_errors_naming_the_file(tmp_path, damage, where, message):
    root = write_steinbock(tmp_path / "steinbock")
    damage(root)
    with pytest.raises(InputError) as err:
        read_input(root)
    assert str(err.value).startswith(f"{root / where}: ") and message in str(err.value)


# --- SpatialData: reading ---------------------------------------------------------------------------------------
@pytest.fixture
def sd_store(tmp_path):
    pytest.importorskip("spatialdata")
    sdata, xy, ids = spatialdata_object()
    return write_store(sdata, tmp_path / "tissue.zarr"), xy, ids


def test_spatialdata_table_gets_the_centroids_of_the_shapes_it_annotates(sd_store):
    store, xy, ids = sd_store
    adata, kind = read_input(store)
    assert kind == "spatial" and adata.uns[K.UNS]["reader"] == "spatialdata"
    assert list(adata.var_names) == MARKERS and "DAPI" in adata.obs          # table rows are in another order
    expected = xy[adata.obs["cell_id"].to_numpy() - ids[0]]
    np.testing.assert_allclose(adata.obsm[K.SPATIAL], expected)
    link = adata.uns[K.UNS][K.SPATIALDATA]
    assert link["table"] == "table" and link["region"] == ["cells"] and link["instance_key"] == "cell_id"
    prepared = load(store)
    assert prepared.uns[K.UNS][K.DATASET] == "tissue" and prepared.uns[K.UNS][K.SPATIALDATA]["region_key"] == "region"
    assert prepared.uns[K.UNS]["cell_type_key"] == "cell_type"


def test_spatialdata_labels_centroids_follow_the_elements_transformation(tmp_path):
    pytest.importorskip("spatialdata")
    from scipy import ndimage

    sdata, _, _ = spatialdata_object(labels_table=True)
    adata, _ = read_input(write_store(sdata, tmp_path / "labels.zarr"))
    mask = np.asarray(sdata.labels["seg"])
    for cell, label in zip(adata.obs_names, adata.obs["cell_id"]):
        y, x = ndimage.center_of_mass(mask == label)
        np.testing.assert_allclose(adata[cell].obsm[K.SPATIAL][0], [2 * (x + 0.5), 2 * (y + 0.5)])  # Scale(2)


def test_spatialdata_two_regions_are_two_libraries_in_their_own_coordinate_systems(tmp_path):
    pytest.importorskip("spatialdata")
    from scprospatial.spatial import graph_file

    sdata, _, _ = spatialdata_object(two_regions=True)
    store = write_store(sdata, tmp_path / "two.zarr")
    adata, _ = read_input(store)
    assert adata.uns[K.UNS][K.LIBRARY_KEY] == "region"
    assert adata.uns[K.UNS][K.SPATIALDATA]["coordinate_system"] == ["global", "b"]
    graph = ad.read_h5ad(graph_file(store, tmp_path / "g.h5ad", k=4))
    assert _cross_image_edges(graph, "region") == 0


def test_in_memory_spatialdata_through_pp_read():
    pytest.importorskip("spatialdata")
    import scprospatial as scp

    sdata, _, _ = spatialdata_object()
    adata = scp.pp.read(sdata)
    assert adata.uns[K.UNS][K.KIND] == "spatial" and adata.n_obs == 50 and adata.uns[K.UNS][K.DATASET].startswith(
        "adata-")


def _second_table(sdata):
    sdata.tables["other"] = sdata.tables["table"].copy()


def _plain_table(sdata):
    sdata.tables["table"] = ad.AnnData(sdata.tables["table"].X, obs=sdata.tables["table"].obs[["cell_type"]])


def _lost_instances(sdata):
    sdata.tables["table"].obs["cell_id"] = sdata.tables["table"].obs["cell_id"] + 1000


@pytest.mark.parametrize("change, overrides, message", [
    (_second_table, {}, "the store has 2 tables (['other', 'table']); choose one with --table-name"),
    (None, {"table_name": "cells_table"}, "no table 'cells_table' in the store"),
    (_plain_table, {}, "table 'table' annotates no element"),
    (_lost_instances, {}, "50 cells of the table have cell_id values not found in element 'cells' (e.g. 11"),
    (None, {"coordinate_system": "aligned"}, "element 'cells' is not in coordinate system 'aligned'"),
])
def test_malformed_spatialdata_inputs_are_errors_naming_the_store(tmp_path, change, overrides, message):
    pytest.importorskip("spatialdata")
    sdata, _, _ = spatialdata_object()
    if change is not None:
        change(sdata)
    store = write_store(sdata, tmp_path / "bad.zarr")
    with pytest.raises(InputError) as err:
        read_input(store, **overrides)
    assert str(err.value).startswith(f"{store}: {message}")


@pytest.mark.parametrize("layout", ["steinbock", "spatialdata"])
def test_prepare_reports_a_malformed_imaging_input_in_one_line_and_writes_nothing(tmp_path, cli, layout):
    if layout == "steinbock":
        bad = write_steinbock(tmp_path / "bad")
        _object_ids_differ(bad)
        message, flags = "Object ids differ", []
    else:
        pytest.importorskip("spatialdata")
        bad = write_store(spatialdata_object(n=10)[0], tmp_path / "bad.zarr")
        message, flags = "no table 'nuclei' in the store (tables: ['table'])", ["--table-name", "nuclei"]
    proc = cli("prepare", bad, "--outdir", tmp_path / "out", *flags)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert message in proc.stderr and str(bad) in proc.stderr
    assert not (tmp_path / "out" / "bad.h5ad").exists()


def test_a_damaged_store_is_an_input_error(tmp_path):
    pytest.importorskip("spatialdata")
    store = tmp_path / "broken.zarr"
    (store / "tables" / "table").mkdir(parents=True)
    (store / "zarr.json").write_text("{not json")
    with pytest.raises(InputError, match=r"broken.zarr: cannot read as a SpatialData store"):
        read_input(store)


def test_without_the_spatialdata_package_the_error_names_the_extra(tmp_path, monkeypatch):
    pytest.importorskip("spatialdata")
    sdata, _, _ = spatialdata_object(n=5)
    store = write_store(sdata, tmp_path / "t.zarr")
    monkeypatch.setitem(sys.modules, "spatialdata", None)           # `import spatialdata` now fails
    with pytest.raises(InputError, match=r"t.zarr: SpatialData stores need the 'spatialdata' package: "
                                         r"pip install 'scprospatial\[spatialdata\]'"):
        read_input(store)


# --- SpatialData: writing results back ---------------------------------------------------------------------------
def _read_back(store, table_name):
    import spatialdata as sd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sdata = sd.read_zarr(store)
    return sdata, sdata.tables[table_name]


def _assert_annotates(sdata, table, region):
    """spatialdata itself joins every row of the table to its element, and each row's coordinates are its shape's."""
    import spatialdata as sd

    attrs = table.uns["spatialdata_attrs"]
    assert region in np.atleast_1d(attrs["region"])
    rows = table[table.obs[attrs["region_key"]] == region]
    _, joined = sd.join_spatialelement_table(sdata=sdata, spatial_element_names=[region], table=rows, how="inner")
    assert joined.n_obs == rows.n_obs
    system = next(iter(sd.transformations.get_transformation(sdata[region], get_all=True)))
    centres = sd.get_centroids(sdata[region], coordinate_system=system).compute()
    centres = centres.loc[rows.obs[attrs["instance_key"]].to_numpy()]
    np.testing.assert_allclose(rows.obsm[K.SPATIAL][:, :2], centres[["x", "y"]].to_numpy(), atol=1e-9)


def test_spatial_stats_written_back_into_the_input_store(sd_store, tmp_path, cli):
    store, _, _ = sd_store
    args = ["spatial-stats", store, "--out", tmp_path / "stats", "--n-perms", "20", "--spatialdata-out", store]
    cli(*args, check=True)
    sdata, table = _read_back(store, "scprospatial_stats")
    assert set(sdata.tables) == {"table", "scprospatial_stats"}
    _assert_annotates(sdata, table, "cells")
    assert "cell_type_nhood_enrichment" in table.uns and "moranI" in table.uns
    import matplotlib

    matplotlib.use("Agg")
    import squidpy as sq

    sq.pl.nhood_enrichment(table, cluster_key="cell_type")        # squidpy plots the result read back
    genes = list(table.var_names)[:2]
    sq.gr.spatial_autocorr(table, genes=genes, n_perms=None)      # and computes on the table's own graph
    assert set(table.uns["moranI"].index) == set(genes)
    cli(*args, check=True)                                            # a re-run replaces its own table
    assert _read_back(store, "scprospatial_stats")[1].n_obs == 50
    proc = cli(*args[:3], tmp_path / "stats2", *args[4:], "--spatialdata-table", "table")
    assert proc.returncode == 2 and "already has a table 'table' that scprospatial did not write" in proc.stderr
    assert _read_back(store, "table")[1].n_vars == 5 and not (tmp_path / "stats2").exists()   # refused before work


def test_results_of_a_cell_table_go_into_a_new_store_of_circles(tmp_path, cli):
    pytest.importorskip("spatialdata")
    df = mcmicro_table(n=40)
    df.to_csv(tmp_path / "cells.csv", index=False)
    out = tmp_path / "cells_results.zarr"
    cli("spatial-stats", tmp_path / "cells.csv", "--out", tmp_path / "stats", "--spatialdata-out", out, check=True)
    sdata, table = _read_back(out, "scprospatial_stats")
    _assert_annotates(sdata, table, "cells")
    radius = sdata.shapes["cells"].loc[table.obs["instance_id"].to_numpy(), "radius"].to_numpy()
    np.testing.assert_allclose(radius, np.sqrt(table.obs["Area"].to_numpy() / np.pi))
    proc = cli("spatial-stats", tmp_path / "cells.csv", "--out", tmp_path / "stats2", "--spatialdata-out", out)
    assert proc.returncode == 2 and "the cells were read from a cell table, not from this store" in proc.stderr
    assert not (tmp_path / "stats2").exists()


def test_steinbock_results_get_one_shapes_element_and_coordinate_system_per_image(tmp_path):
    pytest.importorskip("spatialdata")
    from scprospatial.io import write_spatialdata

    adata = load(write_steinbock(tmp_path / "steinbock"))
    store = write_spatialdata(adata, tmp_path / "out.zarr", table_name="cells_table")
    sdata, table = _read_back(store, "cells_table")
    assert set(sdata.shapes) == {"img_A_cells", "img_B_cells"} and set(sdata.coordinate_systems) == {"img_A", "img_B"}
    for region in sdata.shapes:
        _assert_annotates(sdata, table, region)


def test_write_spatialdata_refusals_leave_no_store(sd_store, tmp_path):
    from scprospatial.io import write_spatialdata

    store, _, _ = sd_store
    mcmicro_table(n=20).to_csv(tmp_path / "cells.csv", index=False)
    with pytest.raises(InputError, match="'cells' is also the name of the element the table annotates"):
        write_spatialdata(load(tmp_path / "cells.csv"), tmp_path / "a.zarr", table_name="cells")
    cells = load(store)
    del cells.obs["cell_id"]
    with pytest.raises(InputError, match=r"lost the obs column\(s\) \['cell_id'\] that link them"):
        write_spatialdata(cells, tmp_path / "b.zarr")
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "b.zarr").exists()
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("store_kind, name, message", [
    ("file", "scprospatial_stats", "exists and is not a SpatialData zarr store"),
    ("new", "bad name", "--spatialdata-table 'bad name' is not a SpatialData element name"),
])
def test_bad_spatialdata_out_is_refused_before_any_work(sd_store, tmp_path, cli, store_kind, name, message):
    store, _, _ = sd_store
    target = tmp_path / "x.zarr"
    if store_kind == "file":
        target.write_text("")
    proc = cli("spatial-stats", store, "--out", tmp_path / "stats", "--spatialdata-out", target,
               "--spatialdata-table", name)
    assert proc.returncode == 2 and message in proc.stderr and not (tmp_path / "stats").exists()


@pytest.mark.slow
def test_map_results_written_into_a_new_store_with_the_annotated_element(tmp_path, cli, one_torch_thread):
    pytest.importorskip("spatialdata")
    import spatialdata as sd

    from scprospatial.model import ModelConfig, ScProSpatial
    from scprospatial.simulate import simulate

    paths = simulate(tmp_path / "sim", n_cells=200, n_genes=300, n_cell_types=3, seed=1, filler_names="vocabulary")
    cite = load(paths["citeseq"])
    cfg = ModelConfig(n_hvg=150, d_model=16, d_joint=8, d_hidden=16, n_blocks=1, batch_size=64,
                      epochs_pretrain=1, epochs_align=1, epochs_translate=1)
    model = ScProSpatial.setup([cite], cfg, seed=0)
    model.train([cite], seed=0, device="cpu")
    model.save(tmp_path / "model.pt")
    imaged = load(paths["spatial"], kind="spatial")          # the simulated imaging panel as a SpatialData store
    sdata, _, _ = spatialdata_object(n=imaged.n_obs)
    table = sdata.tables["table"]
    table = ad.AnnData(imaged.layers[K.RAW_LAYER], obs=table.obs, var=pd.DataFrame(index=imaged.var_names))
    sdata.tables["table"] = sd.models.TableModel.parse(table, region="cells", region_key="region",
                                                       instance_key="cell_id")
    store = write_store(sdata, tmp_path / "tissue.zarr")
    out = tmp_path / "results.zarr"
    cli("map", "--model", tmp_path / "model.pt", "--rna", paths["rna"], "--spatial", store, "--out",
        tmp_path / "mapped.h5ad", "--k", "5", "--spatialdata-out", out, check=True)
    written, result = _read_back(out, "scprospatial_mapped")
    assert set(written.shapes) == {"cells"} and not written.labels      # only the annotated element is copied
    _assert_annotates(written, result, "cells")
    mapped = ad.read_h5ad(tmp_path / "mapped.h5ad")
    np.testing.assert_allclose(np.asarray(result.obsm[K.PROTEIN_PREDICTED]),
                               np.asarray(mapped.obsm[K.PROTEIN_PREDICTED]), rtol=1e-6)
    assert K.MAPPING_CONFIDENCE in result.obs


# --- samplesheet and runner ---------------------------------------------------------------------------------------
def test_samplesheet_rows_of_a_steinbock_folder_and_a_store_are_prepared(tmp_path):
    pytest.importorskip("spatialdata")
    from scprospatial.pipeline.runner import _prepare_step
    from scprospatial.pipeline.samplesheet import read_samplesheet

    write_steinbock(tmp_path / "steinbock")
    sdata, _, _ = spatialdata_object(n=20)
    sdata.tables["nuclei"] = sdata.tables["table"].copy()
    write_store(sdata, tmp_path / "tissue.zarr")
    sheet = tmp_path / "samplesheet.csv"
    sheet.write_text("id,kind,path,table_name,coordinate_system\n"
                     "imc,spatial,steinbock,,\n"
                     "tissue,spatial,tissue.zarr,nuclei,global\n")
    samples = read_samplesheet(sheet)
    assert samples[1].read_overrides() == {"table_name": "nuclei", "coordinate_system": "global"}
    for sample in samples:
        step = _prepare_step(sample, tmp_path / "results")
        step.action()
        prepared = ad.read_h5ad(step.outputs[0])
        assert prepared.uns[K.UNS][K.DATASET] == sample.id and prepared.uns[K.UNS][K.KIND] == "spatial"
    tissue = ad.read_h5ad(tmp_path / "results" / "prepared" / "tissue.h5ad")
    assert tissue.uns[K.UNS][K.SPATIALDATA]["table"] == "nuclei"
