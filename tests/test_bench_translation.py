"""The peer adapter's plumbing with fake peer scripts run by this Python (no peers venv needed).

The real peers (totalVI, sciPENN) run in benchmarks/bench_translation.py --peers; here the same adapter drives
small scripts that speak the same file protocol, through the same evaluation loop.
"""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from peers import adapter as A  # noqa: E402
from scprospatial import _constants as K  # noqa: E402
from scprospatial import evaluate as E  # noqa: E402
from scprospatial.preprocess import clr_transform  # noqa: E402

PROTEINS = ["CD3", "CD4", "CD19", "CD14"]
HEADER = f"""\
import sys
sys.path.insert(0, {str(A.PEERS_DIR)!r})
import numpy as np
import pandas as pd
import _exchange as X
args = X.parser("fake peer").parse_args()
train, val, test = X.read_inputs(args.workdir)
"""


def paired(n: int = 150, seed: int = 0) -> ad.AnnData:
    """Prepared-layout CITE-seq whose ADT counts follow 3 cell types; obsm['protein'] is their CLR."""
    rng = np.random.default_rng(seed)
    types = rng.integers(0, 3, n)
    rate = rng.gamma(1.0, 1.0, (3, 40)) + 0.1
    counts = rng.poisson(rate[types] * 3).astype(np.float32)
    x = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4).astype(np.float32)
    adt = rng.poisson(np.array([[200, 150, 5, 10], [10, 5, 300, 20], [5, 20, 10, 250]])[types]).astype(np.float32)
    names = [f"c{i}" for i in range(n)]
    a = ad.AnnData(X=sp.csr_matrix(x), obs=pd.DataFrame(index=names),
                   var=pd.DataFrame(index=[f"G{i}" for i in range(40)]))
    a.layers[K.COUNTS_LAYER] = sp.csr_matrix(counts)
    a.obsm[K.PROTEIN_RAW] = pd.DataFrame(adt, index=names, columns=PROTEINS)
    a.obsm[K.PROTEIN] = pd.DataFrame(clr_transform(adt), index=names, columns=PROTEINS)
    a.uns[K.UNS] = {K.KIND: "citeseq", K.DATASET: "toy", "panel": PROTEINS,
                    K.NORMALISATION: {"rna": {"method": "log1p_library_size"},
                                      "protein": {"method": "clr", "axis": "cell", "pseudocount": 1.0}}}
    return a


def fake(tmp_path: Path, name: str, body: str) -> A.PeerMethod:
    script = tmp_path / f"run_{name}.py"
    script.write_text(HEADER + textwrap.dedent(body))
    return A.PeerMethod(name, script, python=sys.executable, seed=3, threads=1, timeout_s=120)


NEAREST_COUNTS = """\
cells = pd.concat([train.to_df(X.LOGNORM), val.to_df(X.LOGNORM)])
counts = pd.concat([train.obsm[X.PROTEIN_COUNTS], val.obsm[X.PROTEIN_COUNTS]])
q = test.to_df(X.LOGNORM).to_numpy()
nearest = ((q[:, None, :] - cells.to_numpy()[None]) ** 2).sum(-1).argmin(1)
assert "protein_counts" not in test.obsm and args.seed == 0  # the repeat's seed (evaluate sets it), not 3
X.write_outputs(args.workdir, pd.DataFrame(counts.to_numpy()[nearest], index=test.obs_names,
                columns=counts.columns), scale=X.SCALE_COUNTS, peer="nearest", version="0")
"""


def test_counts_peer_goes_through_the_same_loop_on_the_truth_scale(tmp_path):
    a = paired()
    split = E.random_splits(a, n_seeds=1)[0]
    peer = fake(tmp_path, "nearest", NEAREST_COUNTS)
    out = E.run_splits([a], [split], [peer, E.MeanPredictor()], keep_predictions=True)
    row = out["per_split"].set_index("method").loc["nearest"]
    assert row["n_proteins"] == len(PROTEINS) and row["pearson"] > 0.8
    assert peer.runs and peer.runs[0]["scale"] == "counts" and peer.runs[0]["wall_s"] >= 0
    # counts came back as the nearest training cell's ADT counts: after the adapter's CLR they are exactly that
    # cell's prepared protein values, i.e. the truth's scale
    fitted = a[np.concatenate([split.train, split.val])]
    lognorm = fitted.X.toarray()
    pred = out["predictions"].query("method == 'nearest'").pivot(index="cell", columns="protein", values="predicted")
    for cell in pred.index[:5]:
        q = a[cell].X.toarray()
        nearest = fitted.obs_names[((lognorm - q) ** 2).sum(1).argmin()]
        np.testing.assert_allclose(pred.loc[cell, PROTEINS], fitted.obsm[K.PROTEIN].loc[nearest, PROTEINS], atol=1e-5)


def test_one_fit_serves_test_cohorts_with_different_genes(tmp_path):
    a, b, c = paired(120), paired(40, seed=1), paired(40, seed=2)
    b, c = b[:, b.var_names[:30]].copy(), c[:, c.var_names[15:]].copy()  # each shares other genes with a
    for x, name in ((b, "b"), (c, "c")):
        x.obs_names = [f"{name}{i}" for i in range(x.n_obs)]
    peer = fake(tmp_path, "nearest", NEAREST_COUNTS)
    out = E.run_splits([a, b, c], E.cross_cohort_splits(a, [b, c], n_seeds=1), [peer])
    assert "error" not in out["per_split"] or out["per_split"]["error"].isna().all()
    assert len(out["per_split"]) == 2 and len(peer.runs) == 2


def test_normalised_peer_is_not_transformed(tmp_path):
    a = paired(80)
    split = E.random_splits(a, n_seeds=1)[0]
    peer = fake(tmp_path, "meanclr", """\
        clr = pd.concat([train.obsm[X.PROTEIN_CLR], val.obsm[X.PROTEIN_CLR]])
        pred = pd.DataFrame(np.tile(clr.mean().to_numpy(), (test.n_obs, 1)), index=test.obs_names,
                            columns=clr.columns)
        X.write_outputs(args.workdir, pred.iloc[::-1], scale=X.SCALE_NORMALISED, peer="meanclr", version="0")
        """)
    peer.fit(a[split.train].copy(), a[split.val].copy())
    test = a[split.test].copy()
    pred = peer.predict(test, ["CD4", "CD3", "CD99"])  # a protein outside the panel is left out
    assert list(pred.columns) == ["CD4", "CD3"] and list(pred.index) == list(test.obs_names)
    expected = a[np.concatenate([split.train, split.val])].obsm[K.PROTEIN][["CD4", "CD3"]].mean()
    np.testing.assert_allclose(pred.iloc[0], expected, rtol=1e-5)


def test_failures_show_in_the_table_with_their_reason(tmp_path):
    a = paired(90)
    crash = fake(tmp_path, "crash", 'raise ValueError("no usable genes in " + str(test.n_obs) + " cells")\n')
    partial = fake(tmp_path, "partial", """\
        pred = pd.DataFrame(1.0, index=test.obs_names[:3], columns=["CD3"])
        X.write_outputs(args.workdir, pred, scale=X.SCALE_COUNTS, peer="partial", version="0")
        """)
    silent = fake(tmp_path, "silent", "pass\n")
    absent = A.PeerMethod("absent", tmp_path / "run_absent.py", python=tmp_path / "no-venv" / "bin" / "python")
    out = E.run_splits([a], E.random_splits(a, n_seeds=2), [crash, partial, silent, absent, E.MeanPredictor()])
    summary = E.summarise(out["per_split"]).set_index("method")
    assert summary.loc["mean", "n_repeats"] == 2
    reasons = summary["error"]
    assert reasons["crash"] == "exit 1: ValueError: no usable genes in 18 cells"
    assert reasons["partial"].startswith("no prediction for 15 of 18 test cells")
    assert "without writing meta.json" in reasons["silent"]
    assert reasons["absent"].startswith("peers venv not found")
    md = E.summary_markdown(summary.reset_index())
    assert "| crash | 0 | failed: exit 1: ValueError: no usable genes in 18 cells |" in md


def test_reason_picks_the_exception_line():
    stderr = "Traceback (most recent call last):\n  File x\nKeyError: 'protein_counts'\n[progress] 100%\n"
    assert A._reason(stderr, 1) == "exit 1: KeyError: 'protein_counts'"
    assert A._reason("", 137) == "exit 137: no message"


def test_bench_readme_section_renders_failures_and_paper_table():
    from _translation_readme import section

    summary = E.summarise(pd.DataFrame([
        {"split": "random", "setting": "seed=0", "method": "krr_svd", "pearson": 0.8},
        {"split": "random", "setting": "seed=0", "method": "totalvi", "error": "exit 1: boom"}]))
    record = {"split": "random", "cohorts": ["malt"], "wall_s": 1.0, "command": "scprospatial evaluate x",
              "bench_command": "bench --splits random --peers", "machine": {
                  "cpu": "cpu", "cores": 2, "gpu": None, "python": "3", "torch": "t", "sklearn": "s", "scanpy": "c",
                  "anndata": "a"}, "run": {"versions": {"scprospatial": "0"}},
              "method_seconds": {"krr_svd": {"fit_s": 1.0, "predict_s": 0.5}},
              "peers": {"versions": {"scvi-tools": "1.4.2", "sciPENN": "0.9.6"}, "runs": {"totalvi": []}},
              "summary_md": "### random\n\n" + E.summary_markdown(summary)}
    text = section([record], "<!-- s -->", "<!-- e -->")
    assert text.startswith("<!-- s -->") and text.endswith("<!-- e -->")
    assert "| totalvi | 0 | failed: exit 1: boom |" in text and "scvi-tools 1.4.2" in text
    assert "Reported by the scProSpatial authors" in text and "NOT measured here" in text


def _bar_record(split: str, rows: list[dict], command: str = "scprospatial evaluate x", per_seed=None) -> dict:
    summary = E.summarise(pd.DataFrame([{"split": split, **r} for r in rows]))
    return {"split": split, "command": command, "summary": summary.to_dict(orient="records"), "per_seed": per_seed}


def test_issue_bar_verdicts_compare_the_model_with_the_best_baseline_and_peers():
    from _translation_readme import verdicts

    rows = [{"setting": f"seed={s}", "method": m, "pearson": v + 0.01 * s}
            for s in range(3) for m, v in (("scprospatial", 0.80), ("krr_svd", 0.78), ("ridge_hvg", 0.70),
                                           ("totalvi", 0.72), ("scipenn", 0.79))]
    met = verdicts(_bar_record("random", rows))
    assert len(met) == 1 and "MET" in met[0] and "best baseline krr_svd 0.790" in met[0] and "✗" not in met[0]
    beaten = [r for r in rows if r["method"] != "scipenn"] + [
        {"setting": f"seed={s}", "method": "scipenn", "pearson": 0.85} for s in range(3)]
    line = verdicts(_bar_record("random", beaten))[0]
    assert "NOT MET" in line and "peer scipenn 0.850" in line and line.count("✗") == 1
    failed = [r for r in rows if r["method"] != "totalvi"] + [
        {"setting": f"seed={s}", "method": "totalvi", "error": "exit 1: boom"} for s in range(3)]
    assert "not judged" in verdicts(_bar_record("random", failed))[0] and "totalvi (failed)" in \
        verdicts(_bar_record("random", failed))[0]
    smoke = verdicts(_bar_record("random", rows, command="scprospatial evaluate x --epochs 10"))
    assert smoke == ["**Issue bar (above the best baseline and every peer): not judged: the model ran with "
                     "`--epochs 10` (smoke run).**"]
    assert "not run" in verdicts(_bar_record("random", [r for r in rows if r["method"] != "scprospatial"]))[0]


def test_cross_cohort_bar_needs_a_clear_margin_on_every_seed():
    from _translation_readme import verdicts

    def rows(model):
        return [{"setting": "test=b", "method": m, "pearson": v, "seed": s}
                for s, mv in enumerate(model) for m, v in (("scprospatial", mv), ("ridge_hvg", 0.45),
                                                             ("coding_gene", 0.46))]
    clear = rows([0.55, 0.56, 0.54])
    per_seed = [{k: r[k] for k in ("method", "setting", "seed", "pearson")} for r in clear]
    line = verdicts(_bar_record("cross-cohort", clear, per_seed=per_seed))
    assert len(line) == 1 and "(test=b): MET" in line[0] and "higher on 3 of 3 seeds" in line[0]
    close = rows([0.47, 0.52, 0.44])  # mean above coding_gene, but within the sds and lower on one seed
    per_seed = [{k: r[k] for k in ("method", "setting", "seed", "pearson")} for r in close]
    line = verdicts(_bar_record("cross-cohort", close, per_seed=per_seed))[0]
    assert "NOT MET" in line and "higher on 2 of 3 seeds" in line and "coding_gene 0.460" in line


def test_reuse_peers_carries_the_stored_peer_rows_of_the_same_seeds_only(tmp_path, monkeypatch):
    import json

    import bench_translation as B

    stored = {"run": {"seed": [0, 1]}, "finished": "2026-11-20 10:00 UTC", "bench_command": "bench --peers",
              "summary": [{"method": m, "setting": "seed=0", "pearson_mean": v} for m, v in
                          (("scprospatial", 0.8), ("totalvi", 0.7), ("scipenn", 0.75))],
              "per_seed": [{"method": m, "setting": "x", "seed": s, "pearson": 0.7} for m in
                           ("scprospatial", "totalvi", "scipenn") for s in (0, 1)],
              "per_protein_pearson": {"scprospatial": {"CD3": 0.9}, "totalvi": {"CD3": 0.8}, "scipenn": {"CD3": 0.7}},
              "method_seconds": {"totalvi": {"fit_s": 0.0, "predict_s": 9.0}},
              "peers": {"versions": {"scvi-tools": "1.4.2"}, "runs": {"totalvi": [{}]}}}
    monkeypatch.setattr(B, "RESULTS", tmp_path)
    (tmp_path / "translation_random.json").write_text(json.dumps(stored))
    got = B.reused_peers("random", [0, 1])
    assert {r["method"] for r in got["summary"]} == {"totalvi", "scipenn"}
    assert len(got["per_seed"]) == 4 and {r["method"] for r in got["per_seed"]} == {"totalvi", "scipenn"}
    assert set(got["pearson"]) == {"totalvi", "scipenn"} and got["seconds"] == stored["method_seconds"]
    assert got["peers"]["reused_from"] == {"finished": "2026-11-20 10:00 UTC", "command": "bench --peers"}
    with pytest.raises(SystemExit, match="no peer rows for exactly seeds"):
        B.reused_peers("random", [0, 1, 2])
    again = {**stored, "finished": "2026-12-01 09:00 UTC", "bench_command": "bench --reuse-peers",
             "peers": got["peers"]}   # a run that itself reused them: the source stays the run that fitted them
    (tmp_path / "translation_random.json").write_text(json.dumps(again))
    assert B.reused_peers("random", [0, 1])["peers"]["reused_from"]["command"] == "bench --peers"
    from _translation_readme import _peer_runs

    assert "run finished 2026-11-20 10:00 UTC" in _peer_runs({"peers": got["peers"]})[0]


def test_ablation_records_run_the_model_without_each_stage_on_a_named_split():
    import argparse

    import bench_translation as B
    from scprospatial.evaluate import METHODS

    assert B.ABLATIONS == {"ablation-random": "random", "ablation-cross-cohort": "cross-cohort"}
    assert set(B.ABLATION_METHODS) <= set(METHODS) and "scprospatial_no_pretrain" in B.ABLATION_METHODS
    assert B.PLAN["ablation-cross-cohort"] == B.PLAN["cross-cohort"] and "ablation-random" in B.NO_PEERS
    args = argparse.Namespace(seeds=5, seed=0, methods=["mean"], epochs=None, threads=1, peers=False,
                              reuse_peers=False, totalvi_epochs=100)
    assert "--methods" not in B.bench_command(args, "ablation-random")
    assert "--methods mean" in B.bench_command(args, "random")
