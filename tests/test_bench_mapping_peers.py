"""bench_mapping.py's peer registry with fake peer scripts (no peers' venv needed), and Tangram's top-k reduction."""
from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
import _mapping_peers as mp  # noqa: E402
import bench_mapping as bm  # noqa: E402
from _mapping_tables import _held_out_table  # noqa: E402


def _held_out_module():
    """benchmarks/peers/_held_out.py (what the peers' runners share; it needs only numpy)."""
    spec = importlib.util.spec_from_file_location("_held_out", BENCH / "peers" / "_held_out.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_top_k_keeps_each_imaged_cells_most_probable_rna_cells():
    rng = np.random.default_rng(0)
    probs = rng.random((30, 7))  # scRNA-seq cells x imaged cells
    rna, cell, w = _held_out_module().top_k(probs, 4)
    assert len(rna) == len(cell) == len(w) == 4 * 7
    for j in range(7):
        sel = cell == j
        assert set(rna[sel]) == set(np.argsort(-probs[:, j])[:4])
        assert np.isclose(w[sel].sum(), 1.0)
        np.testing.assert_allclose(w[sel], probs[rna[sel], j] / probs[rna[sel], j].sum())


def test_held_out_loop_caches_each_marker_and_resumes(tmp_path):
    hold = _held_out_module()
    d = {"markers": np.array(["A", "B", "C"]), "held_out": np.array([hold.FULL_PANEL, "B"])}
    seen = []

    def fit(keep):
        seen.append(keep)
        return np.random.default_rng(len(keep)).random((12, 5)), {"converged": True}

    hold.each_held_out(d, str(tmp_path), 3, "fake", fit)
    assert seen == [[0, 1, 2], [0, 2]]  # the held-out marker is left out of the fit
    out = np.load(tmp_path / "1.npz")
    assert str(out["marker"]) == "B" and len(out["rna"]) == 3 * 5 and bool(out["converged"])
    hold.each_held_out(d, str(tmp_path), 3, "fake", fit)
    assert len(seen) == 2  # cached markers are not fitted again


FAKE = textwrap.dedent('''
    import sys
    from pathlib import Path
    import numpy as np
    src, dst, mode = sys.argv[1:4]
    d = np.load(src)
    n_rna, n_cells = d["rna_shared"].shape[0], d["protein"].shape[0]
    if mode == "fail":
        sys.exit("fake peer: no shared features")
    Path(dst).mkdir(parents=True, exist_ok=True)
    for i, m in enumerate(d["held_out"]):
        cell = np.arange(n_cells)
        if mode == "weights":   # imaged cell j: rna j (0.75) and rna j+1 (0.25)
            np.savez(Path(dst) / f"{i}.npz", rna=np.r_[cell, cell + 1], cell=np.r_[cell, cell],
                     weight=np.r_[np.full(n_cells, 0.75), np.full(n_cells, 0.25)], seconds=np.array(2.0))
        else:                   # a matching: imaged cell j matched to rna j and j+2; the last cell unmatched
            keep = cell[:-1]
            np.savez(Path(dst) / f"{i}.npz", rna=np.r_[keep, keep + 2], cell=np.r_[keep, keep], seconds=np.array(1.0))
''')


@pytest.fixture
def toy(tmp_path, monkeypatch):
    script = tmp_path / "fake_peer.py"
    script.write_text(FAKE)
    for mode in ("weights", "matching", "fail"):
        monkeypatch.setitem(bm.PEER_RUNNERS, f"fake_{mode}", (str(script), f"sub_{mode}", [mode]))
    n_rna, n_cells = 12, 8
    rng = np.random.default_rng(1)
    rna = SimpleNamespace(var_names=pd.Index(["GA", "GB", "GC", "GX"]), n_obs=n_rna,
                          X=sparse.csr_matrix(rng.random((n_rna, 4))))
    protein = pd.DataFrame(rng.random((n_cells, 3)), columns=list("ABC"))
    spatial = SimpleNamespace(n_obs=n_cells, obsm={"protein": protein})
    model = SimpleNamespace(vocab=SimpleNamespace(gene_links={"A": ["GA"], "B": ["GB"], "C": ["GC", "GMISSING"]}))
    return model, rna, spatial, tmp_path


def test_weighted_peer_output_is_used_as_given_and_cached_per_panel(toy):
    model, rna, spatial, tmp = toy
    order = [bm.FULL_PANEL, "B"]
    out = bm.run_peer("fake_weights", model, rna, spatial, list("ABC"), order, tmp / "cache",
                      python=Path(sys.executable))
    assert out["seconds"] == 4.0 and set(out) == {"seconds", *order}
    w = out["B"].toarray()
    assert w.shape == (8, 12)
    np.testing.assert_allclose(w[3, 3], 0.75)
    np.testing.assert_allclose(w[3, 4], 0.25)
    np.testing.assert_allclose(w.sum(1), 1.0)
    d = np.load(tmp / "cache" / "sub_weights" / "in.npz")
    assert list(d["markers"]) == list("ABC") and list(d["held_out"]) == order
    # the imputation every method shares: weights x the predicted marker on the scRNA-seq cells
    pred = pd.DataFrame({"B": np.arange(12.0)})
    truth = 0.75 * np.arange(8.0) + 0.25 * np.arange(1.0, 9.0)
    sp = SimpleNamespace(obsm={"protein": pd.DataFrame({"B": truth})})
    rows = [{"marker": "A"}, {"marker": "B"}]
    bm.add_peer(rows, sp, pred, out, "fake")
    assert "fake" not in rows[0] and rows[1]["fake"]["pearson"] == pytest.approx(1.0)
    assert rows[1]["fake"]["unmatched"] == 0


def test_matching_peer_output_gets_equal_weights_and_unmatched_cells(toy):
    model, rna, spatial, tmp = toy
    out = bm.run_peer("fake_matching", model, rna, spatial, list("ABC"), [bm.FULL_PANEL], None,
                      python=Path(sys.executable))
    w = out[bm.FULL_PANEL].toarray()
    np.testing.assert_allclose(w[2, [2, 4]], 0.5)
    assert w[-1].sum() == 0 and np.allclose(w[:-1].sum(1), 1.0)


def test_failing_peer_reports_its_last_error_line(toy):
    model, rna, spatial, tmp = toy
    out = bm.run_peer("fake_fail", model, rna, spatial, list("ABC"), [bm.FULL_PANEL], None, python=Path(sys.executable))
    assert out == {"error": "fake peer: no shared features"}
    assert bm.run_peer("fake_fail", model, rna, spatial, list("ABC"), [], None, python=tmp / "missing")["error"]


def test_readme_table_has_a_tangram_column_and_median():
    rows = [{"marker": m, "measured_in_training": True, "model": {"pearson": 0.1 * i, "spearman": 0.0},
             "tangram": {"pearson": 0.2 * i, "spearman": 0.1}} for i, m in enumerate("AB")]
    d = {"n_cells": 5, "n_markers": 2, "rows": rows, "validation": ["A"], "test": ["B"], "seconds": 1.0,
         "maxfuse": "skipped", "tangram": "3.0 s of fitting"}
    lines = _held_out_table("toy", d)
    def cells(line):
        return [c.strip() for c in line.strip().strip("|").split("|")]

    head = cells(lines[2])
    assert "tangram r" in head and "tangram ρ" in head
    assert "Tangram: 3.0 s of fitting" in lines[0]
    test_median = cells(next(line for line in lines if "median, test" in line))
    assert test_median[head.index("tangram r")] == "0.200"
    assert all(line.count("|") == lines[2].count("|") for line in lines[2:] if line.startswith("|"))


def test_peer_input_carries_coordinates_when_the_panel_has_them(toy, tmp_path):
    model, rna, spatial, _ = toy
    mp.maxfuse_inputs(model, rna, spatial, list("ABC"), [bm.FULL_PANEL], tmp_path / "a.npz")
    assert "spatial" not in np.load(tmp_path / "a.npz")
    spatial.obsm["spatial"] = np.arange(16.0).reshape(8, 2)
    mp.maxfuse_inputs(model, rna, spatial, list("ABC"), [bm.FULL_PANEL], tmp_path / "b.npz")
    d = np.load(tmp_path / "b.npz")
    np.testing.assert_array_equal(d["spatial"], spatial.obsm["spatial"])
    np.testing.assert_array_equal(d["protein"], spatial.obsm["protein"].to_numpy())


def test_no_peers_marks_every_peer_skipped_without_fitting(monkeypatch):
    import argparse

    monkeypatch.setattr(bm, "run_peer", lambda *a, **k: pytest.fail("--no-peers must not fit a peer"))
    d = {"rows": [{"marker": "CD3"}], "test": ["CD3"]}
    args = argparse.Namespace(peers=["maxfuse", "tangram"], peer_features=["rna"], no_peers=True, peer_cache=None)
    out = bm.fit_peers(d, None, None, None, [], None, "toy", args)
    assert d["maxfuse"] == d["tangram"] == "skipped" and out == {"maxfuse": {"error": "skipped"},
                                                                 "tangram": {"error": "skipped"}}
    assert d["rows"] == [{"marker": "CD3"}]   # no column added


def test_predicted_features_replace_the_shared_rna_and_keep_everything_else(toy, tmp_path):
    model, rna, spatial, _ = toy
    pred = pd.DataFrame(np.arange(36.0).reshape(12, 3), columns=list("ABC"))
    mp.maxfuse_inputs(model, rna, spatial, list("ABC"), [bm.FULL_PANEL], tmp_path / "raw.npz")
    mp.maxfuse_inputs(model, rna, spatial, list("ABC"), [bm.FULL_PANEL], tmp_path / "pred.npz", pred)
    raw, got = np.load(tmp_path / "raw.npz"), np.load(tmp_path / "pred.npz")
    np.testing.assert_array_equal(got["rna_shared"], pred.to_numpy())
    np.testing.assert_allclose(raw["rna_shared"][:, 0], rna.X[:, 0].toarray().ravel())
    for key in ("rna_active", "protein", "markers", "held_out"):
        np.testing.assert_array_equal(raw[key], got[key])


def test_fit_peers_names_predicted_columns_caches_them_apart_and_refuses_a_stale_cache(toy, monkeypatch):
    import argparse

    model, rna, spatial, tmp = toy
    monkeypatch.setitem(bm.PEER_RUNNERS, "fake", bm.PEER_RUNNERS["fake_weights"])
    pred = pd.DataFrame(np.random.default_rng(2).random((12, 3)), columns=list("ABC"))
    sp = SimpleNamespace(n_obs=spatial.n_obs, obsm={"protein": spatial.obsm["protein"]})
    d = {"rows": [{"marker": "B"}], "test": ["B"]}
    args = argparse.Namespace(peers=["fake"], peer_features=["predicted", "rna"], no_peers=False,
                              peer_cache=str(tmp / "cache"))
    monkeypatch.setattr(bm, "run_peer", lambda *a, **k: mp.run_peer(*a, **k, python=Path(sys.executable)))
    out = bm.fit_peers(d, model, rna, sp, list("ABC"), pred, "toy", args)
    assert set(out) == {"fake", "fake (pred)"} and {"fake", "fake (pred)"} <= set(d["rows"][0])
    assert d["fake (pred)"] == "4.0 s of fitting" and bm.rna_peers(out) == {"fake": out["fake"]}
    cached = np.load(tmp / "cache" / "toy" / "predicted" / "sub_weights" / "in.npz")
    np.testing.assert_array_equal(cached["rna_shared"], pred.to_numpy())
    stale = mp.run_peer("fake_weights", model, rna, sp, list("ABC"), [bm.FULL_PANEL, "B"], tmp / "cache" / "toy",
                        python=Path(sys.executable), pred=pred + 1)   # another model's predictions
    assert "holds fits of other inputs" in stale["error"]


def test_keep_stored_peers_keeps_only_the_columns_this_run_did_not_fit(tmp_path, monkeypatch):
    import json

    old = {"model_id": "old", "maxfuse": "5.0 s of fitting", "moscot": "6.0 s of fitting",
           "rows": [{"marker": "B", "maxfuse": {"pearson": 0.1}, "moscot": {"pearson": 0.2}}],
           "labels": {"agreement": {"maxfuse": 0.3, "moscot": 0.4}}}
    (tmp_path / "mapping_toy.json").write_text(json.dumps(old))
    monkeypatch.setattr(mp, "RESULTS", tmp_path)
    d = {"model_id": "new", "maxfuse": "1.0 s of fitting", "rows": [{"marker": "B", "maxfuse": {"pearson": 0.9}}],
         "labels": {"agreement": {"maxfuse": 0.8}, "scores": {}}}
    mp.keep_stored_peers(d, "toy", fitted=["maxfuse"])
    assert d["rows"][0]["maxfuse"] == {"pearson": 0.9} and d["rows"][0]["moscot"] == {"pearson": 0.2}
    assert d["maxfuse"] == "1.0 s of fitting" and d["moscot"] == "6.0 s of fitting, stored from the run of model old"
    assert d["labels"]["agreement"] == {"maxfuse": 0.8, "moscot": 0.4}


def test_features_section_compares_each_peer_on_rna_and_predicted_panel():
    from _mapping_tables import _features_section

    rows = [{"marker": m, "supported": m == "C", "model": {"pearson": 0.5}, "maxfuse": {"pearson": 0.1},
             "maxfuse (pred)": {"pearson": 0.3}} for m in "ABC"]
    d = {"rows": rows, "test": ["B", "C"], "maxfuse": "2.0 s of fitting, stored from the run of model x",
         "maxfuse (pred)": "3.0 s of fitting", "labels": {"scores": {"maxfuse (pred)": {"balanced_accuracy": 0.6}}}}
    text = "\n".join(_features_section({"datasets": {"toy": d}}))
    assert "| maxfuse | rna | stored | 0.100 | 0.100 | 0.100 | – |" in text
    assert "| maxfuse | predicted | refitted | 0.300 | 0.300 | 0.300 | 0.600 |" in text
    assert "maxfuse: predicted panel minus raw RNA +0.200 / +0.200 / +0.200" in text
    assert _features_section({"datasets": {"toy": {**d, "rows": [{"marker": "B"}]}}}) == []


def _rows(grid_vals: dict, model_vals: dict, shared_vals: dict) -> list[dict]:
    return [{"marker": m, "measured_in_training": False, "grid": {k: v[i] for k, v in grid_vals.items()},
             "model": {"pearson": model_vals[m]}, "shared": {"pearson": shared_vals[m]}}
            for i, m in enumerate("ABCD")]


def test_selection_averages_the_validation_medians_over_training_seeds():
    # seed 0 alone would pick "a" (validation A, B: 0.5 vs 0.4); over both seeds "b" wins (0.45 vs 0.30)
    zeros = dict(A=0, B=0, C=0, D=0)
    seed0 = _rows({"a": [0.5, 0.5, 0.0, 0.0], "b": [0.4, 0.4, 0.9, 0.9]}, zeros, zeros)
    seed1 = _rows({"a": [0.1, 0.1, 0.0, 0.0], "b": [0.5, 0.5, 0.1, 0.1]}, zeros, zeros)
    d = {"rows": seed0, "replicates": [{"seed": 1, "rows": seed1}], "validation": ["A", "B"], "test": ["C", "D"]}
    sel = bm.select_weight({"toy": d})
    assert sel["selected"] == "b" and sel["n_models"] == 2
    assert sel["grid"]["b"]["toy"]["validation"] == pytest.approx(0.45)
    assert sel["grid"]["b"]["toy"]["test"] == pytest.approx(0.5)
    assert bm.select_weight({"toy": {**d, "replicates": []}})["selected"] == "a"


def test_seeds_section_reports_each_seeds_test_median_and_paired_counts():
    from _mapping_tables import _seeds_section

    zero = {"a": [0, 0, 0, 0]}
    seed0 = _rows(zero, dict(A=0.9, B=0.9, C=0.3, D=0.1), dict(A=0, B=0, C=0.2, D=0.2))
    seed1 = _rows(zero, dict(A=0.0, B=0.0, C=0.1, D=0.1), dict(A=0, B=0, C=0.3, D=0.3))
    d = {"rows": seed0, "replicates": [{"seed": 7, "rows": seed1}], "validation": ["A", "B"], "test": ["C", "D"]}
    text = "\n".join(_seeds_section({"seed": 0, "replicate_seeds": [7], "datasets": {"toy": d}}))
    assert "| 0 | test | 0.200 | 0.200 |" in text and "| 7 | test | 0.100 | 0.300 |" in text
    assert "| 0 | validation | 0.900 | 0.000 |" in text
    assert "0.150 ± 0.071 [-0.485, 0.785]" in text   # mean ± SD [95% t-interval over the 2 seeds]
    assert "model above shared on 1 of 4 (test marker, seed) pairs." in text
    assert _seeds_section({"datasets": {"toy": {**d, "replicates": []}}}) == []


def test_selection_note_reports_the_defaults_gap_with_its_standard_error():
    from _mapping_tables import _selection_note

    grid = {"adapted 0.0": [0.3, 0.3, 0.1, 0.1], "adapted 0.4": [0.2, 0.2, 0.2, 0.2]}
    grid1 = {"adapted 0.0": [0.3, 0.3, 0.1, 0.1], "adapted 0.4": [0.4, 0.4, 0.2, 0.2]}
    zeros = dict(A=0, B=0, C=0, D=0)
    d = {"rows": _rows(grid, zeros, zeros), "replicates": [{"seed": 1, "rows": _rows(grid1, zeros, zeros)}],
         "validation": ["A", "B"], "test": ["C", "D"]}
    record = {"datasets": {"toy": d}, "defaults": {"fuse_weight": 0.4, "adapt_epochs": 10},
              "selection": {"selected": "adapted 0.0", "grid": {"adapted 0.0": {}, "adapted 0.4": {}}}}
    note = _selection_note(record)
    # validation differences per seed: -0.1 and +0.1 -> mean 0.000, SE 0.100; test: +0.1, +0.1 -> 0.100 ± 0.000
    assert "select `adapted 0.0`, not the default `adapted 0.4`" in note
    assert "validation +0.000 ± 0.100" in note and "test +0.100 ± 0.000" in note and "n = 2" in note
    record["selection"]["selected"] = "adapted 0.4"
    assert _selection_note(record) == ""


def test_label_scores_by_hand():
    from _mapping_tables import label_scores

    got = label_scores(np.array(["A", "A", "B", "B", "unassigned"]), np.array(["A", "B", "B", "B", "A"]))
    # accuracy 3/5; recall A 1/2, B 2/3; F1 A 2*1/(2+2), B 2*2/(3+2) ('unassigned' is wrong, not a class)
    assert got["accuracy"] == pytest.approx(0.6)
    assert got["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert got["macro_f1"] == pytest.approx((0.5 + 0.8) / 2)


def test_no_model_baseline_finds_the_scrna_cell_with_the_same_profile():
    """Imaged cells that are the scRNA-seq cells' coding-gene profiles, each marker on its own scale (z-scoring
    removes it): each imaged cell's best-correlated scRNA-seq cell is its own."""
    from scprospatial.spatial._fuse import baseline_neighbours

    rng = np.random.default_rng(0)
    coding = rng.gamma(2.0, 1.0, (40, 6))
    perm = rng.permutation(40)
    measured = coding[perm] * rng.uniform(0.5, 3, 6) + rng.normal(0, 5, 6)
    idx = baseline_neighbours(measured, coding, 3)
    assert idx.shape == (40, 3) and (idx[:, 0] == perm).all()
