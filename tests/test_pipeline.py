"""The single-machine runner end to end, as `make demo` and users run it."""
from __future__ import annotations

import anndata as ad
import pandas as pd
import pytest

from scprospatial import keys


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    from tests.conftest import run_cli

    out = tmp_path_factory.mktemp("demo")
    proc = run_cli("demo", "--outdir", str(out), "--n-cells", "500", "--epochs", "3", "--seed", "3", "--threads", "2")
    return out, proc


def test_demo_writes_documented_layout(demo_run):
    out, proc = demo_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rel in ("simulated/samplesheet.csv", "model/model.pt", "report/report.html", "pipeline_info/trace.tsv"):
        assert (out / rel).exists(), rel
    imputed = sorted((out / "imputed").glob("*.h5ad"))
    graphs = sorted((out / "spatial").glob("*.h5ad"))
    assert imputed and graphs
    a = ad.read_h5ad(imputed[0])
    pred, sd = a.obsm[keys.PROTEIN_PREDICTED], a.obsm[keys.PROTEIN_PREDICTED_SD]
    assert isinstance(pred, pd.DataFrame) and list(sd.columns) == list(pred.columns)
    assert pred.notna().all().all() and (sd.to_numpy() > 0).all()
    g = ad.read_h5ad(graphs[0])
    assert keys.SPATIAL_CONNECTIVITIES in g.obsp and keys.SPATIAL_DISTANCES in g.obsp
    mapped = [p for p in sorted((out / "mapped").glob("*.h5ad")) if not p.name.endswith(".rna.h5ad")]
    assert mapped
    m = ad.read_h5ad(mapped[0])
    assert m.obsm[keys.PROTEIN_PREDICTED].shape[0] == m.n_obs and keys.MAPPING_CONFIDENCE in m.obs
    assert keys.SPATIAL_CONNECTIVITIES in m.obsp  # mapped from the graph file, so statistics can reuse it
    html = (out / "report" / "report.html").read_text()
    assert "Imaged cells with imputed proteomes" in html and "Spatial statistics" in html
    stats = next((out / "stats").iterdir())
    assert {"moran.csv", "nhood_enrichment.csv", "nhood_enrichment.png"} <= {p.name for p in stats.iterdir()}
    assert "Imputed proteins" in html and "data:image/png;base64" in html


def test_rerun_skips_complete_steps(demo_run, cli):
    out, first = demo_run
    assert first.returncode == 0
    before = (out / "model" / "model.pt").stat().st_mtime
    proc = cli("demo", "--outdir", str(out), "--n-cells", "500", "--epochs", "3", "--seed", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "up to date, skipped" in proc.stderr
    assert (out / "model" / "model.pt").stat().st_mtime == before
