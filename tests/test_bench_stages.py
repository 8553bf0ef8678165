"""benchmarks/bench_stages.py: its splits, its variants and its summary (on a small simulated cohort)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_stages as B  # noqa: E402
from scprospatial import _constants as K  # noqa: E402


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, one_torch_thread):
    from scprospatial.io import load
    from scprospatial.simulate import simulate

    out = tmp_path_factory.mktemp("sim")
    simulate(out, n_cells=250, n_query=20, n_spatial=50, n_genes=800, seed=3)
    adata = load(out / "citeseq.h5ad", kind="citeseq")
    return adata, list(adata.obsm[K.PROTEIN].columns)


def test_with_panel_hides_protein_of_unpaired_cells(cohort):
    adata, panel = cohort
    keep = panel[:3]
    out = B.with_panel(adata, keep, paired_rows=np.array([0, 5]))
    table = out.obsm[K.PROTEIN]
    assert list(table.columns) == keep
    assert table.iloc[[0, 5]].notna().all().all()
    assert table.drop(index=table.index[[0, 5]]).isna().all().all()
    assert adata.obsm[K.PROTEIN].notna().all().all()  # the input is left as it was


def test_few_shot_variants_share_cells_and_differ_in_stages(cohort):
    adata, panel = cohort
    rows = B.run_few_shot(adata, panel, seed=0, epochs=1, n_paired=40)
    assert [r["method"] for r in rows] == ["ridge_hvg (paired cells)", *B.VARIANTS]
    for r in rows:
        assert set(r["pearson"]) == set(panel)
    for r in rows[1:]:
        assert set(r["stages"]) == set(B.VARIANTS[r["method"]])
        assert all(t["epochs_run"] == 1 for t in r["stages"].values())
        assert 0.0 <= r["foscttm"] <= 1.0


def test_gene_link_hides_half_the_panel(cohort):
    adata, panel = cohort
    rows = B.run_gene_link(adata, panel, seed=1, epochs=1)
    hidden = rows[0]["hidden"]
    assert len(hidden) == len(panel) // 2 and set(hidden) <= set(panel)
    assert [r["method"] for r in rows] == ["coding_gene", *B.VARIANTS]
    for r in rows:
        assert set(r["pearson"]) <= set(hidden)
    for r in rows[1:]:
        assert set(r["encoder_reads_coding_gene"]) == set(hidden)


def test_section_reports_t_interval_and_paired_gain():
    vals = {"all stages": [0.5, 0.6, 0.7], "no stage 1": [0.4, 0.6, 0.5]}
    results = [{"setting": "few-shot, 50 paired", "seed": s, "method": m, "pearson": {"A": v[s]},
                "foscttm": 0.2, "seconds": 10.0} for m, v in vals.items() for s in range(3)]
    text = B.section(results, {"command": "cmd", "machine": "m", "cpu_count": 2})
    half = stats.t.ppf(0.975, 2) * 0.1 / np.sqrt(3)
    assert f"| all stages | 0.600 ± {half:.3f} |" in text
    d = np.array([0.1, 0.0, 0.2])
    se = d.std(ddof=1) / np.sqrt(3)
    assert f"{d.mean():+.3f} ± {stats.t.ppf(0.975, 2) * se:.3f} (SE {se:.3f})" in text


def test_simulated_atlas_scores_the_query_against_its_held_back_protein(one_torch_thread):
    rows = B.run_sim(seed=0, epochs=1, n_paired=20, n_cells=150, n_query=60)  # 20 < the 22 validation cells
    assert [r["method"] for r in rows] == list(B.VARIANTS)
    for r in rows:
        assert all(t["epochs_run"] == 1 for t in r["stages"].values())  # no stage skipped for want of cells
        assert len(r["pearson"]) >= 5
        assert np.isfinite(list(r["pearson"].values())).any()
