"""Small generated inputs in every supported layout (for the io/preprocess tests)."""
from __future__ import annotations

from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

PANEL = ["CD3_TotalSeqB", "CD4_TotalSeqB", "CD8a_TotalSeqB", "PD-1_TotalSeqB", "IgG1_control_TotalSeqB"]
GENES = [f"GENE{i}" for i in range(40)] + ["CD3E", "CD4", "CD8A", "PDCD1"]


def rna_counts(n_cells: int = 30, seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    x = sp.csr_matrix(rng.poisson(1.0, (n_cells, len(GENES))).astype(np.float32))
    return ad.AnnData(X=x, obs=pd.DataFrame(index=[f"c{i}" for i in range(n_cells)]),
                      var=pd.DataFrame(index=GENES))


def adt_counts(names, n_cells: int = 30, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).poisson(20.0, (n_cells, len(names))).astype(np.float32)


def write_scvi_h5ad(path: Path, n_cells: int = 30) -> Path:
    adata = rna_counts(n_cells)
    adata.obsm["protein_expression"] = adt_counts(PANEL, n_cells)
    adata.uns["protein_names"] = np.array(PANEL)
    adata.write_h5ad(path)
    return path


def write_pair(folder: Path, n_cells: int = 30, drop_protein_cells: int = 0) -> tuple[Path, Path]:
    rna = rna_counts(n_cells)
    prot = ad.AnnData(X=adt_counts(PANEL, n_cells), obs=pd.DataFrame(index=rna.obs_names[::-1]),
                      var=pd.DataFrame(index=PANEL))
    prot = prot[drop_protein_cells:].copy()
    rna.write_h5ad(folder / "rna.h5ad")
    prot.write_h5ad(folder / "protein.h5ad")
    return folder / "rna.h5ad", folder / "protein.h5ad"


def write_h5mu(path: Path, n_cells: int = 30) -> Path:
    import mudata

    rna = rna_counts(n_cells)
    prot = ad.AnnData(X=adt_counts(PANEL, n_cells), obs=pd.DataFrame(index=rna.obs_names),
                      var=pd.DataFrame(index=PANEL))
    mudata.MuData({"rna": rna, "prot": prot}).write(path)
    return path


def write_10x_h5(path: Path, n_cells: int = 30, with_antibodies: bool = True) -> Path:
    """A Cell Ranger v3 filtered_feature_bc_matrix.h5 (CSC: features x barcodes)."""
    names = GENES + (PANEL if with_antibodies else [])
    types = ["Gene Expression"] * len(GENES) + ["Antibody Capture"] * (len(names) - len(GENES))
    ids = [f"ENSG{i:011d}" for i in range(len(GENES))] + names[len(GENES):]
    counts = sp.hstack([rna_counts(n_cells).X, sp.csr_matrix(adt_counts(names[len(GENES):], n_cells))])
    m = sp.csc_matrix(counts.T.astype(np.int32))
    with h5py.File(path, "w") as f:
        g = f.create_group("matrix")
        g.create_dataset("barcodes", data=np.array([f"AAAC{i:04d}-1" for i in range(n_cells)], dtype="S"))
        g.create_dataset("data", data=m.data)
        g.create_dataset("indices", data=m.indices.astype(np.int64))
        g.create_dataset("indptr", data=m.indptr.astype(np.int64))
        g.create_dataset("shape", data=np.array(m.shape, dtype=np.int32))
        feat = g.create_group("features")
        feat.create_dataset("id", data=np.array(ids, dtype="S"))
        feat.create_dataset("name", data=np.array(names, dtype="S"))
        feat.create_dataset("feature_type", data=np.array(types, dtype="S"))
        feat.create_dataset("genome", data=np.array(["GRCh38"] * len(names), dtype="S"))
        feat.create_dataset("_all_tag_keys", data=np.array(["genome"], dtype="S"))
    return path


def mibi_table(n_cells: int = 40, seed: int = 2) -> pd.DataFrame:
    """MIBI-TOF-like single-cell table (Keren 2018 column style): counts-scale markers."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "SampleID": 1, "cellLabelInImage": np.arange(n_cells) + 1,
        "x": rng.uniform(0, 800, n_cells), "y": rng.uniform(0, 800, n_cells),
        "cellSize": rng.integers(50, 500, n_cells), "dsDNA": rng.gamma(2, 5, n_cells),
        "Au": rng.gamma(2, 5, n_cells), "tumorYN": rng.integers(0, 2, n_cells),
    })
    for marker in ("CD45", "CD3", "CD8", "FoxP3", "Pan-Keratin", "HLA-DR", "PD1", "Ki67"):
        df[marker] = rng.gamma(1.0, 1.5, n_cells)
    df["cell_type"] = rng.choice(["T", "tumour", "macrophage"], n_cells)
    return df


@pytest.fixture
def generated(tmp_path: Path) -> dict[str, Path]:
    """Paths of small inputs in every generated layout."""
    out = {"scvi": write_scvi_h5ad(tmp_path / "scvi.h5ad"), "h5mu": write_h5mu(tmp_path / "cite.h5mu"),
           "10x_h5": write_10x_h5(tmp_path / "filtered_feature_bc_matrix.h5")}
    out["pair_rna"], out["pair_protein"] = write_pair(tmp_path)
    table = mibi_table()
    table.to_csv(tmp_path / "mibi.csv", index=False)
    table.to_parquet(tmp_path / "mibi.parquet")
    out["mibi_csv"], out["mibi_parquet"] = tmp_path / "mibi.csv", tmp_path / "mibi.parquet"
    return out
