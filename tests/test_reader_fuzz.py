"""Property-based fuzzing of the readers (issue 13): generated CSV/TSV/parquet/h5ad/10x inputs with mutated
headers, cell types, encodings and truncations are either read into a valid prepared AnnData or refused
with an InputError; no other exception escapes. Few examples per format, so this stays fast."""
from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from scprospatial.errors import InputError  # noqa: E402

FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
CELL = st.one_of(TEXT, st.sampled_from(["", "nan", "NaN", "inf", "-inf", "NA", "1e400", "-1", "0x1F", "1,5",
                                        "\x00", '"', "1.0.0"]))


def _table(n: int = 24) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"CellID": np.arange(n), "X": rng.uniform(0, 500, n), "Y": rng.uniform(0, 500, n),
                         "CD3": rng.gamma(2, 50, n), "CD20": rng.gamma(2, 50, n), "CD68": rng.gamma(2, 50, n),
                         "PanCK": rng.gamma(2, 50, n),
                         "cell_type": rng.choice(["T", "B", "Mac"], n)})


def _read(path: Path, **kw) -> None:
    """The property: a valid prepared AnnData, or an InputError naming the problem (one line)."""
    from scprospatial.io import load

    try:
        adata = load(str(path), **kw)
    except InputError as exc:
        assert str(exc).strip(), "an InputError says what is wrong"
        return
    assert adata.n_obs > 0 and adata.n_vars > 0
    x = adata.X.data if hasattr(adata.X, "data") and not isinstance(adata.X, np.ndarray) else np.asarray(adata.X)
    assert np.isfinite(np.asarray(x, dtype=float)).all()


def _mutate_rows(df: pd.DataFrame, data) -> pd.DataFrame:
    df = df.astype(object)
    for _ in range(data.draw(st.integers(0, 4), label="n_cells_changed")):
        r = data.draw(st.integers(0, len(df) - 1), label="row")
        c = data.draw(st.integers(0, df.shape[1] - 1), label="col")
        df.iat[r, c] = data.draw(CELL, label="value")
    return df


def _mutate_header(cols: list[str], data) -> list[str]:
    cols = list(cols)
    op = data.draw(st.sampled_from(["none", "rename", "duplicate", "blank", "case", "spaces"]), label="header_op")
    i = data.draw(st.integers(0, len(cols) - 1), label="header_col")
    if op == "rename":
        cols[i] = data.draw(TEXT, label="new_name")
    elif op == "duplicate":
        cols[i] = cols[(i + 1) % len(cols)]
    elif op == "blank":
        cols[i] = ""
    elif op == "case":
        cols[i] = cols[i].lower()
    elif op == "spaces":
        cols[i] = f" {cols[i]} "
    return cols


def _mutate_bytes(raw: bytes, data) -> bytes:
    op = data.draw(st.sampled_from(["none", "truncate", "flip", "prefix"]), label="bytes_op")
    if op == "truncate" and raw:
        return raw[: data.draw(st.integers(0, len(raw) - 1), label="cut")]
    if op == "flip" and raw:
        i = data.draw(st.integers(0, len(raw) - 1), label="flip_at")
        return raw[:i] + bytes([raw[i] ^ 0xFF]) + raw[i + 1:]
    if op == "prefix":
        return data.draw(st.binary(max_size=16), label="prefix") + raw
    return raw


@FUZZ
@given(data=st.data(), suffix=st.sampled_from([".csv", ".tsv", ".csv.gz"]),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16"]))
def test_delimited_tables_read_or_refuse(data, suffix, encoding):
    df = _mutate_rows(_table(), data)
    df.columns = _mutate_header(list(df.columns), data)
    sep = "\t" if suffix == ".tsv" else ","
    text = df.to_csv(sep=sep, index=False)
    try:
        raw = text.encode(encoding)
    except UnicodeEncodeError:
        raw = text.encode("utf-8")
    raw = _mutate_bytes(gzip.compress(raw) if suffix.endswith(".gz") else raw, data)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"cells{suffix}"
        path.write_bytes(raw)
        _read(path)


@FUZZ
@given(data=st.data())
def test_parquet_tables_read_or_refuse(data):
    df = _mutate_rows(_table(), data)
    df.columns = _mutate_header(list(df.columns), data)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cells.parquet"
        try:
            df.astype(str).to_parquet(path) if data.draw(st.booleans(), label="as_text") else \
                df.convert_dtypes().to_parquet(path)
        except (ValueError, TypeError, ImportError, Exception):  # noqa: BLE001 - pyarrow refuses some frames
            return
        path.write_bytes(_mutate_bytes(path.read_bytes(), data))
        _read(path)


def _citeseq(n: int = 30):
    import anndata as ad
    from scipy import sparse

    rng = np.random.default_rng(1)
    x = sparse.csr_matrix(rng.poisson(1.0, (n, 40)).astype(np.float32))
    a = ad.AnnData(X=x, obs=pd.DataFrame(index=[f"c{i}" for i in range(n)]),
                   var=pd.DataFrame(index=[f"CD{i}" if i < 10 else f"GENE{i}" for i in range(40)]))
    a.obsm["protein_expression"] = pd.DataFrame(rng.poisson(20, (n, 4)).astype(np.float32), index=a.obs_names,
                                                columns=["CD3", "CD4", "CD8a", "CD19"])
    return a


@FUZZ
@given(data=st.data())
def test_h5ad_read_or_refuse(data):
    a = _citeseq()
    op = data.draw(st.sampled_from(["none", "nan", "negative", "dup_var", "dup_obs", "no_cells", "fraction",
                                    "protein_nan", "protein_text", "empty_protein"]), label="h5ad_op")
    x = a.X.toarray()
    if op == "nan":
        x[0, 0] = np.nan
    elif op == "negative":
        x[1, 1] = -3
    elif op == "fraction":
        x = x + 0.5
    a.X = x
    if op == "dup_var":
        a.var_names = ["CD1"] * a.n_vars
    elif op == "dup_obs":
        a.obs_names = ["c0"] * a.n_obs
    elif op == "no_cells":
        a = a[:0].copy()
    elif op == "protein_nan":
        a.obsm["protein_expression"].iloc[0, 0] = np.nan
    elif op == "protein_text":
        a.obsm["protein_expression"] = a.obsm["protein_expression"].astype(str)
    elif op == "empty_protein":
        a.obsm["protein_expression"] = a.obsm["protein_expression"].iloc[:, :0]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cite.h5ad"
        try:
            a.write_h5ad(path)
        except Exception:  # noqa: BLE001 - anndata refuses to write some of these: nothing to read
            return
        path.write_bytes(_mutate_bytes(path.read_bytes(), data))
        _read(path)


@FUZZ
@given(data=st.data())
def test_10x_folder_read_or_refuse(data):
    rng = np.random.default_rng(2)
    n_genes, n_cells = 12, 8
    entries = [(g + 1, c + 1, int(rng.integers(1, 9))) for g in range(n_genes) for c in range(n_cells)
               if rng.random() < 0.5]
    lines = ["%%MatrixMarket matrix coordinate integer general", f"{n_genes} {n_cells} {len(entries)}",
             *(f"{g} {c} {v}" for g, c, v in entries)]
    features = [f"ENSG{i}\t{'CD3' if i == 0 else f'G{i}'}\t{'Antibody Capture' if i < 2 else 'Gene Expression'}"
                for i in range(n_genes)]
    barcodes = [f"AAAC{i}-1" for i in range(n_cells)]
    files = {"matrix.mtx.gz": "\n".join(lines) + "\n", "features.tsv.gz": "\n".join(features) + "\n",
             "barcodes.tsv.gz": "\n".join(barcodes) + "\n"}
    target = data.draw(st.sampled_from(sorted(files)), label="file")
    op = data.draw(st.sampled_from(["bytes", "drop_line", "missing", "dims"]), label="tenx_op")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "filtered_feature_bc_matrix"
        folder.mkdir()
        for name, text in files.items():
            if name == target and op == "drop_line":
                text = "\n".join(text.splitlines()[:-2]) + "\n"
            if name == target and op == "dims" and name == "matrix.mtx.gz":
                text = text.replace(f"{n_genes} {n_cells}", f"{n_genes - 3} {n_cells + 5}", 1)
            raw = gzip.compress(text.encode())
            if name == target and op == "bytes":
                raw = _mutate_bytes(raw, data)
            if not (name == target and op == "missing"):
                (folder / name).write_bytes(raw)
        _read(folder)
