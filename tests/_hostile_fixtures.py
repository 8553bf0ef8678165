"""Tiny hostile inputs shared by tests/test_hostile_inputs.py: a simulated cohort, a one-epoch model, and
damaged or misleading variants of every input kind (files are small; the whole set is built in seconds)."""
from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import numpy as np


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under `root` (hidden ones too) -> sha256 of its bytes; folders -> 'dir'."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def build(root: Path) -> dict[str, str]:
    """Write the fixtures into `root`; returns name -> path (for str.format of the case arguments)."""
    import anndata as ad

    from scprospatial.io import prepare_files
    from scprospatial.model import train_files
    from scprospatial.simulate import simulate
    from scprospatial.spatial import graph_file

    sim = root / "sim"
    simulate(sim, n_cells=60, n_genes=200, n_cell_types=3, seed=0)
    model = train_files([str(sim / "citeseq.h5ad")], root / "model", epochs=1, threads=1, device="cpu")
    prep = root / "prepared"
    prepare_files([str(sim / "spatial.csv"), str(sim / "query_rna.h5ad"), str(sim / "citeseq.h5ad")], prep)
    graph = graph_file(str(prep / "spatial.h5ad"), root / "graph.h5ad")
    f = {"cite": sim / "citeseq.h5ad", "rna": sim / "query_rna.h5ad", "csv": sim / "spatial.csv",
         "sheet": sim / "samplesheet.csv", "model": model, "psp": prep / "spatial.h5ad",
         "prna": prep / "query_rna.h5ad", "pcite": prep / "citeseq.h5ad", "graph": graph}
    h = root / "hostile"
    h.mkdir()
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    for suffix in ("h5ad", "csv", "pt", "h5mu", "h5", "parquet", "tsv"):
        (h / f"noise.{suffix}").write_bytes(noise)
        (h / f"empty.{suffix}").write_bytes(b"")
    f.update({f"noise_{s}": h / f"noise.{s}" for s in ("h5ad", "csv", "pt", "h5mu", "h5", "parquet", "tsv")})
    f.update({f"empty_{s}": h / f"empty.{s}" for s in ("h5ad", "csv", "pt", "h5mu", "h5", "parquet", "tsv")})
    cite_bytes = f["cite"].read_bytes()
    (h / "trunc.h5ad").write_bytes(cite_bytes[: len(cite_bytes) // 2])
    model_bytes = Path(model).read_bytes()
    (h / "trunc.pt").write_bytes(model_bytes[: len(model_bytes) // 2])
    (h / "cite_as_model.pt").write_bytes(cite_bytes)
    f.update(trunc_h5ad=h / "trunc.h5ad", trunc_pt=h / "trunc.pt", h5ad_pt=h / "cite_as_model.pt")
    (h / "afile").write_text("I am a file\n")
    (h / "adir").mkdir()
    f.update(afile=h / "afile", adir=h / "adir", missing=h / "does_not_exist.h5ad", long="x" * 300)

    # cell tables
    base = f["csv"].read_text().splitlines()
    header, rows = base[0], base[1:]
    cols = header.split(",")
    marker = next(c for c in cols if c.startswith("CD"))
    mi = cols.index(marker)
    xi = cols.index(next(c for c in cols if c in ("X", "X_position", "x")))

    def with_cell(*cells: tuple[int, int, str]) -> list[str]:
        out = [r.split(",") for r in rows]
        for row_i, col_i, value in cells:
            out[row_i][col_i] = value
        return [",".join(r) for r in out]

    tables = {
        "t_header_only": header + "\n",
        "t_no_coords": "\n".join([",".join(c + "_" if i == xi else c for i, c in enumerate(cols)), *rows]) + "\n",
        "t_nan_coord": "\n".join([header, *with_cell((0, xi, "nan"))]) + "\n",
        "t_text_coord": "\n".join([header, *with_cell((0, xi, "left"))]) + "\n",
        "t_stray_text": "\n".join([header, *with_cell((3, mi, "n/a"), (5, mi, "x"))]) + "\n",
        "t_dup_header": "\n".join([header + f",{marker}", *[r + ",1.5" for r in rows]]) + "\n",
        "t_ragged": "\n".join([header, *rows[:3], rows[3] + ",1,2,3", *rows[4:]]) + "\n",
        "t_only_text": "a,b\nx,y\nz,w\n",
        "t_one_column": "X\n1\n2\n",
        "t_markers_missing": "X,Y,ClusterName\n1,2,T\n3,4,B\n",
        "t_inf_coord": "\n".join([header, *with_cell((1, xi, "inf"))]) + "\n",
        "t_nul": header + "\n" + "\x00" * 64 + "\n",
    }
    for name, text in tables.items():
        f[name] = _csv(h / f"{name}.csv", text)
    (h / "t_latin1.csv").write_bytes(("X,Y,CD3 \xb5m\n" + "1,2,\xb5\n").encode("latin-1"))
    f["t_latin1"] = h / "t_latin1.csv"
    (h / "t_commas.tsv").write_text(f["csv"].read_text())  # a CSV named .tsv: one column per line
    f["t_commas"] = h / "t_commas.tsv"
    (h / "t_trunc.csv.gz").write_bytes(gzip.compress(f["csv"].read_bytes())[:300])
    f["t_trunc_gz"] = h / "t_trunc.csv.gz"

    # h5ad variants
    cite = ad.read_h5ad(f["cite"])
    cite[:1].copy().write_h5ad(h / "one_cell.h5ad")
    cite[:4].copy().write_h5ad(h / "four_cells.h5ad")
    nan = ad.read_h5ad(f["prna"])
    x = nan.X.toarray() if hasattr(nan.X, "toarray") else np.array(nan.X)
    x[0, :5] = np.nan
    nan.X = x
    nan.write_h5ad(h / "nan_prepared.h5ad")
    other = ad.read_h5ad(f["rna"])
    other.var_names = [f"NOTAGENE{i}" for i in range(other.n_vars)]
    other.write_h5ad(h / "no_shared_genes.h5ad")
    empty_cells = cite[:0].copy()
    empty_cells.write_h5ad(h / "zero_cells.h5ad")
    f.update(one_cell=h / "one_cell.h5ad", four_cells=h / "four_cells.h5ad", nan_prep=h / "nan_prepared.h5ad",
             no_genes=h / "no_shared_genes.h5ad", zero_cells=h / "zero_cells.h5ad")

    # 10x folders
    tenx = h / "tenx_empty"
    tenx.mkdir()
    bad10 = h / "tenx_bad"
    bad10.mkdir()
    truncated = b"%%MatrixMarket matrix coordinate integer general\n3 3 9\n1 1"
    (bad10 / "matrix.mtx.gz").write_bytes(gzip.compress(truncated))
    (bad10 / "features.tsv.gz").write_bytes(gzip.compress(b"G1\tG1\tGene Expression\n"))
    (bad10 / "barcodes.tsv.gz").write_bytes(gzip.compress(b"AAAC-1\n"))
    f.update(tenx_empty=tenx, tenx_bad=bad10)

    # samplesheets (paths relative to the sheet, which lives beside the simulated files)
    sheets = {
        "s_missing_col": "id,path\nc,citeseq.h5ad\n",
        "s_bad_kind": "id,kind,path\nc,protein,citeseq.h5ad\n",
        "s_dup_id": "id,kind,path\nc,citeseq,citeseq.h5ad\nc,rna,query_rna.h5ad\n",
        "s_missing_file": "id,kind,path\nc,citeseq,nope.h5ad\n",
        "s_header_only": "id,kind,path\n",
        "s_empty": "",
        "s_rna_pair": "id,kind,path\nr,rna,query_rna.h5ad;citeseq.h5ad\n",
        "s_three_files": "id,kind,path\nc,citeseq,citeseq.h5ad;query_rna.h5ad;spatial.csv\n",
        "s_bad_id": "id,kind,path\nc d/e,citeseq,citeseq.h5ad\n",
        "s_no_citeseq": "id,kind,path\nq,rna,query_rna.h5ad\n",
        "s_spatial_as_rna": "id,kind,path\nc,citeseq,citeseq.h5ad\nq,rna,spatial.csv\n",
        "s_no_shared_genes": "id,kind,path\nq,rna,../hostile/no_shared_genes.h5ad\nsp,spatial,spatial.csv\n",
        "s_input_in_results": "id,kind,path\nc,citeseq,citeseq.h5ad\nq,rna,../model/prepared/q.h5ad\n",
        "s_nul": "id,kind,path\n\x00\x00\x00\n",
    }
    for name, text in sheets.items():
        f[name] = _csv(sim / f"{name}.csv", text)
    (root / "model" / "prepared").mkdir()  # an input inside the folders a run into root/model would write
    shutil.copyfile(f["prna"], root / "model" / "prepared" / "q.h5ad")
    (sim / "s_bom.csv").write_bytes(b"\xef\xbb\xbf" + f["sheet"].read_bytes())
    (sim / "s_latin1.csv").write_bytes("id,kind,path\nc\xe9,citeseq,citeseq.h5ad\n".encode("latin-1"))
    shutil.copyfile(f["cite"], sim / "s_h5ad.csv")
    f.update(s_bom=sim / "s_bom.csv", s_latin1=sim / "s_latin1.csv", s_h5ad=sim / "s_h5ad.csv")
    return {k: str(v) for k, v in f.items()}
