#!/usr/bin/env python
"""Do stages 1 (masked-value pretraining) and 2 (contrastive alignment) earn their place? (issue 15, item 7)

The random and cross-cohort ablations of bench_translation.py found no gain from either stage for the proteins the
translator head predicts. This benchmark looks where the stages could matter, on development data only
(benchmarks/PROTOCOL.md: the MALT cohort; PBMC 5k, the test cohort, is never read):

- ``gene-link``: proteins never measured in training. Each seed holds out 20% of the MALT cells and half of the
  panel; the model trains on the rest of the cells with the other half of the panel, then predicts the hidden
  proteins for the held-out cells through the gene link (a + b x coding-gene RNA; for coding genes the encoder does
  not read, the RNA value is the gene decoder's denoised one, which only stage 1 trains). Control: ``coding_gene``
  (the coding gene's observed RNA).
- ``few-shot``: few paired cells, many unpaired ones. Each seed holds out 20% of the MALT cells; of the rest,
  ``--n-paired`` cells keep their protein and the others are given as RNA-only cells (their protein hidden), which
  only stage 1 can use. Control: ``ridge_hvg`` fitted on the paired cells.

Every variant of a seed is set up from the same cells with the same seed (same vocabulary, same initial weights);
only the stages run differ. Figures: per-protein Pearson on the held-out cells, averaged over proteins; FOSCTTM of
the joint embeddings (RNA vs measured protein of the same held-out cells; 0.5 = chance) for stage 2's joint space.

    python benchmarks/bench_stages.py --seeds 3 --threads 1                # both settings, default epochs
    python benchmarks/bench_stages.py --settings few-shot --n-paired 50,200 --seeds 3
    python benchmarks/bench_stages.py --readme-only                         # the README section from the JSON
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from _readme import merge_results, put_section  # noqa: E402  (benchmarks/ is on sys.path when run)

ROOT = Path(__file__).resolve().parents[1]
MALT = ROOT / ".." / "shared" / "data" / "citeseq" / "malt_10k_train_1000cells.h5ad"
OUT = ROOT / "benchmarks" / "results" / "stages.json"
START, END = "<!-- bench_stages:start -->", "<!-- bench_stages:end -->"
VARIANTS = {"all stages": ("pretrain", "align", "translate"), "no stage 1": ("align", "translate"),
            "no stage 2": ("pretrain", "translate")}
TEST_FRACTION = 0.2
NOTES = {  # what each setting measures (README)
    "gene-link": "MALT, 20% of the cells held out; half of the 14-protein panel hidden from training (a seeded draw "
                 "per seed) and predicted for the held-out cells through the gene link. The translator head never "
                 "sees these proteins, so stage 1's contribution is the gene decoder's denoised RNA of the coding "
                 "genes the encoder does not read (output-only).",
    "few-shot": "MALT, 20% of the cells held out; of the other 800, the stated number keep their protein and the "
                "rest enter training as RNA-only cells (protein hidden), which stage 1 uses and stages 2 and 3 "
                "cannot. Pearson over the 14 panel proteins on the held-out cells.",
    "simulated": "`scprospatial.simulate` (seeded by the seed): a 1,500-cell CITE-seq cohort in two batches, of which "
                 "the stated number keep their protein (the rest RNA-only), and a 1,500-cell RNA-only query cohort in "
                 "a third batch, both given to training; scored on the query against its held-back protein "
                 "(CLR of the simulated counts). Truth known, batch effects present.",
}


def load_malt():
    from scprospatial import _constants as K
    from scprospatial.evaluate._files import load_cohort

    if not MALT.is_file():
        sys.exit(f"bench_stages: data not found: {MALT.resolve()} (needs ../shared/data)")
    adata = load_cohort(MALT)
    return adata, list(adata.obsm[K.PROTEIN].columns)


def load_query():
    from scprospatial.io import load

    path = MALT.with_name("malt_10k_query_1100cells_rna_only.h5ad")
    if not path.is_file():
        sys.exit(f"bench_stages: data not found: {path.resolve()} (needs ../shared/data)")
    return load(path, kind="rna")


def with_panel(adata, keep, paired_rows=None):
    """A copy whose protein table holds `keep` only; rows outside `paired_rows` (positions) lose their protein."""
    from scprospatial import _constants as K

    out = adata.copy()
    table = out.obsm[K.PROTEIN][list(keep)].astype(np.float32).copy()
    if paired_rows is not None:
        unpaired = np.setdiff1d(np.arange(out.n_obs), paired_rows)
        table.iloc[unpaired] = np.nan
    out.obsm[K.PROTEIN] = table
    return out


def train_variant(train, stages, *, seed, epochs, extra):
    from scprospatial.evaluate.baselines import coding_gene_links
    from scprospatial.model import ModelConfig, ScProSpatial, vocabulary_proteins

    config = ModelConfig().with_epochs(epochs)
    cohorts = train if isinstance(train, list) else [train]
    model = ScProSpatial.setup(cohorts, config=config, gene_links=coding_gene_links,
                               extra_proteins=[*vocabulary_proteins(), *extra], seed=seed)
    clock = {"last": time.perf_counter()}
    spent: dict[str, float] = {}
    run: dict[str, int] = {}

    def tick(state) -> bool:  # after every epoch: its seconds go to its stage (the computation is unchanged)
        now, stage = time.perf_counter(), state.stages[state.stage_i]
        spent[stage] = spent.get(stage, 0.0) + now - clock["last"]
        run[stage] = state.epoch
        clock["last"] = now
        return False

    t0 = time.perf_counter()
    metrics = model.train(cohorts, stages=stages, outdir=None, seed=seed, device="cpu", stop=tick)
    timing = {stage: {"seconds": round(spent.get(stage, 0.0), 1), "epochs_run": run.get(stage, 0),
                      "best_epoch": metrics.get(stage, {}).get("epoch")} for stage in stages}
    return model, time.perf_counter() - t0, timing


def pearsons(truth: pd.DataFrame, pred: pd.DataFrame) -> dict[str, float]:
    from scprospatial.evaluate.metrics import pearson

    return {p: float(pearson(truth[p].to_numpy(), pred[p].to_numpy())) for p in pred.columns}


def foscttm_of(model, test, panel_) -> float:
    import torch

    from scprospatial.train._metrics import foscttm

    e_r = torch.from_numpy(model.embed_rna(test))
    e_p = torch.from_numpy(model.embed_protein(with_panel(test, panel_)))
    e_r, e_p = torch.nn.functional.normalize(e_r, dim=1), torch.nn.functional.normalize(e_p, dim=1)
    return foscttm(e_r, e_p)


def predicted(model, test, proteins) -> pd.DataFrame:
    from scprospatial import _constants as K

    return model.predict(test, proteins=list(proteins)).obsm[K.PROTEIN_PREDICTED][list(proteins)]


def run_gene_link(adata, panel_, seed, epochs) -> list[dict]:
    from scprospatial import _constants as K
    from scprospatial.evaluate.baselines import CodingGene

    rng = np.random.default_rng(seed)
    order = rng.permutation(adata.n_obs)
    n_test = int(round(TEST_FRACTION * adata.n_obs))
    test, train_rows = adata[np.sort(order[:n_test])].copy(), np.sort(order[n_test:])
    hidden = sorted(rng.permutation(panel_)[:len(panel_) // 2])
    shown = [p for p in panel_ if p not in hidden]
    train = with_panel(adata[train_rows], shown)
    truth = test.obsm[K.PROTEIN]
    rows = []
    base = pearsons(truth, CodingGene().predict(test, hidden))
    rows.append({"setting": "gene-link", "seed": seed, "method": "coding_gene", "pearson": base,
                 "hidden": hidden})
    for name, stages in VARIANTS.items():
        model, secs, timing = train_variant(train, stages, seed=seed, epochs=epochs, extra=hidden)
        read = set(model.vocab.inputs or [])
        reads = {p: all(g in read for g in model.vocab.gene_links.get(p, [])) for p in hidden}
        rows.append({"setting": "gene-link", "seed": seed, "method": name, "seconds": round(secs, 1),
                     "stages": timing, "pearson": pearsons(truth, predicted(model, test, hidden)), "hidden": hidden,
                     "encoder_reads_coding_gene": reads,
                     "pearson_measured": float(np.nanmean(list(pearsons(truth, predicted(model, test,
                                                                                             shown)).values()))),
                     "foscttm": foscttm_of(model, test, shown)})
        print(f"gene-link seed {seed} {name}: {secs:.0f} s", file=sys.stderr, flush=True)
    return rows


def run_few_shot(adata, panel_, seed, epochs, n_paired, query=None) -> list[dict]:
    from scprospatial import _constants as K
    from scprospatial.evaluate.baselines import Ridge

    rng = np.random.default_rng(seed)
    order = rng.permutation(adata.n_obs)
    n_test = int(round(TEST_FRACTION * adata.n_obs))
    test, train_rows = adata[np.sort(order[:n_test])].copy(), np.sort(order[n_test:])
    pick = rng.permutation(len(train_rows))[:n_paired]
    train = with_panel(adata[train_rows], panel_, paired_rows=np.sort(pick))
    truth, rows = test.obsm[K.PROTEIN], []
    setting = f"few-shot, {n_paired} paired" + (" + MALT query (RNA-only cohort)" if query is not None else "")
    paired = adata[train_rows[np.sort(pick)]]
    n_val = max(2, int(round(0.2 * n_paired)))
    ridge = Ridge()
    ridge.fit(paired[n_val:].copy(), paired[:n_val].copy())
    rows.append({"setting": setting, "seed": seed, "method": "ridge_hvg (paired cells)",
                 "pearson": pearsons(truth, ridge.predict(test, panel_))})
    for name, stages in VARIANTS.items():
        cohorts = [train] if query is None else [train, query]
        model, secs, timing = train_variant(cohorts, stages, seed=seed, epochs=epochs, extra=[])
        rows.append({"setting": setting, "seed": seed, "method": name, "seconds": round(secs, 1), "stages": timing,
                     "pearson": pearsons(truth, predicted(model, test, panel_)),
                     "foscttm": foscttm_of(model, test, panel_)})
        print(f"{setting} seed {seed} {name}: {secs:.0f} s", file=sys.stderr, flush=True)
    return rows


def run_sim(seed, epochs, n_paired, n_cells=1500, n_query=1500) -> list[dict]:
    """Simulated atlas (truth known): a CITE-seq cohort of two batches of which `n_paired` cells keep their protein,
    and an RNA-only query cohort in a third batch whose held-back protein is the truth."""
    import tempfile

    from scprospatial import _constants as K
    from scprospatial.io import load
    from scprospatial.preprocess import clr_transform
    from scprospatial.simulate import simulate
    from scprospatial.vocab import normalise_protein_name

    with tempfile.TemporaryDirectory() as tmp:
        paths = simulate(tmp, n_cells=n_cells, n_query=n_query, n_spatial=100, seed=seed)
        cite, query = load(paths["citeseq"], kind="citeseq"), load(paths["rna"], kind="rna")
        counts = pd.read_csv(paths["query_protein"], index_col=0)
    truth = pd.DataFrame(clr_transform(counts.to_numpy(float)), index=counts.index,
                         columns=[normalise_protein_name(c).canonical for c in counts.columns])
    truth = truth.loc[:, ~truth.columns.duplicated()].reindex(query.obs_names)
    panel_ = [p for p in cite.obsm[K.PROTEIN].columns if p in truth.columns]
    # a stream of its own: default_rng(seed) is the model's, whose first permutation carves its validation cells
    # (the same draw put every paired cell into the validation part)
    rng = np.random.default_rng([seed, 1])
    pick = np.sort(rng.permutation(cite.n_obs)[:n_paired])
    train = with_panel(cite, list(cite.obsm[K.PROTEIN].columns), paired_rows=pick)
    setting = f"simulated atlas, {n_paired} paired + RNA-only cells and query cohort"
    rows = []
    for name, stages in VARIANTS.items():
        model, secs, timing = train_variant([train, query], stages, seed=seed, epochs=epochs, extra=[])
        rows.append({"setting": setting, "seed": seed, "method": name, "seconds": round(secs, 1), "stages": timing,
                     "pearson": pearsons(truth, predicted(model, query, panel_))})
        print(f"{setting} seed {seed} {name}: {secs:.0f} s", file=sys.stderr, flush=True)
    return rows


def _interval(values) -> str:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return f"{v.mean():.3f} (n={len(v)})" if len(v) else "–"
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return f"{v.mean():.3f} ± {half:.3f}"


def _paired_gain(frame: pd.DataFrame, col: str, name: str) -> str:
    """all stages minus `name`, per seed: mean ± t-interval (SE)."""
    wide = frame.pivot_table(index="seed", columns="method", values=col)
    if name not in wide or "all stages" not in wide:
        return "–"
    d = (wide["all stages"] - wide[name]).dropna().to_numpy()
    if len(d) < 2:
        return "–"
    se = d.std(ddof=1) / np.sqrt(len(d))
    return f"{d.mean():+.3f} ± {stats.t.ppf(0.975, len(d) - 1) * se:.3f} (SE {se:.3f})"


def _verdict(block: pd.DataFrame) -> str:
    """Per stage: does leaving it out cost more than twice the SE of the paired difference (PROTOCOL.md's rule)?"""
    wide = block.pivot_table(index="seed", columns="method", values="mean_pearson")
    parts = []
    for stage, name in (("stage 1", "no stage 1"), ("stage 2", "no stage 2")):
        if name not in wide or "all stages" not in wide:
            continue
        d = (wide["all stages"] - wide[name]).dropna().to_numpy()
        if len(d) < 2:
            continue
        se = d.std(ddof=1) / np.sqrt(len(d))
        word = ("helps" if d.mean() > 2 * se else "hurts" if d.mean() < -2 * se
                else "no difference beyond noise")
        parts.append(f"{stage}: {d.mean():+.3f} (SE {se:.3f}, n = {len(d)} seeds): **{word}**")
    return ("Pearson gain of all stages over leaving a stage out (counted when beyond twice its SE, "
            "benchmarks/PROTOCOL.md): " + "; ".join(parts) + ".") if parts else ""


def section(results: list[dict], meta: dict) -> str:
    frame = pd.DataFrame(results)
    frame["mean_pearson"] = [np.nanmean(list(p.values())) for p in frame["pearson"]]
    lines = ["## Do stages 1 and 2 help? (`bench_stages.py`)", "",
             "Commands: " + ", ".join(f"`{c}`" for c in dict.fromkeys(frame.get("command", [meta["command"]])))
             + f"; machine: {meta['machine']}, {meta['cpu_count']} CPUs (shared with other "
             "jobs: the seconds are provisional). Development data only (MALT; PBMC 5k is never read). Each figure: "
             "mean over seeds ± the 95% t-interval of the mean; the gain of all stages over a variant is the per-seed "
             "difference (same cells, same seed, same initial weights), mean ± t-interval (SE). FOSCTTM: joint "
             "embedding of a held-out cell's RNA vs its measured protein, fraction of cells closer than the true "
             "match (0.5 = chance, lower is better).", ""]
    for setting, block in frame.groupby("setting", sort=False):
        seeds = sorted(block["seed"].unique())
        lines += [f"### {setting} ({len(seeds)} seeds: {', '.join(map(str, seeds))})", ""]
        note = next((text for prefix, text in NOTES.items() if setting.startswith(prefix)), "")
        lines += [note, ""] if note else []
        extra = "hidden proteins, via the gene link" if setting == "gene-link" else "panel"
        lines += [f"| method | Pearson ({extra}) | gain of all stages | FOSCTTM | seconds to train |",
                  "|---|---|---|---|---|"]
        for method, rows in block.groupby("method", sort=False):
            gain = "" if method == "all stages" else _paired_gain(block, "mean_pearson", method)
            fos = _interval(rows["foscttm"]) if "foscttm" in rows and rows["foscttm"].notna().any() else "–"
            secs = f"{rows['seconds'].mean():.0f}" if "seconds" in rows and rows["seconds"].notna().any() else "–"
            lines.append(f"| {method} | {_interval(rows['mean_pearson'])} | {gain} | {fos} | {secs} |")
        lines += ["", _verdict(block)]
        if setting == "gene-link":
            lines += [*_gene_link_detail(block)]
        lines.append("")
    lines += _cost(frame)
    return "\n".join(lines).rstrip() + "\n"


def _cost(frame: pd.DataFrame) -> list[str]:
    """Seconds, epochs run and best epoch of each stage in the all-stages models (their defaults unless --epochs)."""
    rows = frame[(frame["method"] == "all stages")]
    if "stages" not in rows or rows["stages"].isna().all():
        return []
    out = ["### What each stage costs (the all-stages models above)", "",
           "| setting | stage | seconds (mean) | share of training | epochs run | best epoch |",
           "|---|---|---|---|---|---|"]
    for setting, block in rows.groupby("setting", sort=False):
        timings = [t for t in block["stages"] if isinstance(t, dict)]
        total = np.mean([sum(v["seconds"] for v in t.values()) for t in timings])
        for stage in VARIANTS["all stages"]:
            secs = np.mean([t[stage]["seconds"] for t in timings])
            run = "/".join(str(t[stage]["epochs_run"]) for t in timings)
            best = "/".join(str(t[stage]["best_epoch"]) for t in timings)
            out.append(f"| {setting} | {stage} | {secs:.0f} | {secs / total:.0%} | {run} | {best} |")
    return [*out, ""]


def _gene_link_detail(block: pd.DataFrame) -> list[str]:
    """Hidden proteins split by whether the encoder reads their coding gene (observed RNA) or not (decoded)."""
    out = []
    models = block[block["method"].isin(list(VARIANTS))]
    for label, want in (("coding gene read by the encoder (observed RNA)", True),
                        ("coding gene output-only (the stage-1 gene decoder's value)", False)):
        cells = []
        for method, rows in models.groupby("method", sort=False):
            vals = [np.nanmean([r["pearson"][p] for p in r["hidden"] if r["encoder_reads_coding_gene"][p] == want])
                    if any(r["encoder_reads_coding_gene"][p] == want for p in r["hidden"]) else np.nan
                    for _, r in rows.iterrows()]
            cells.append(f"{method} {_interval(vals)}")
        n = int(sum(sum(v == want for v in r["encoder_reads_coding_gene"].values()) for _, r in
                    models[models["method"] == "all stages"].iterrows()))
        out.append(f"- Hidden proteins with the {label}, {n} (protein, seed) pairs: " + "; ".join(cells) + ".")
    measured = [f"{m} {_interval(r['pearson_measured'])}" for m, r in models.groupby("method", sort=False)]
    out.append("- The shown half of the panel (translator head), same models: " + "; ".join(measured) + ".")
    return out


def write_section() -> None:
    """The README section from every results file (benchmarks/results/stages*.json)."""
    import json

    files = sorted(OUT.parent.glob("stages*.json"))
    if not files:
        sys.exit(f"bench_stages: no results in {OUT.parent} (run the benchmark first)")
    saved = [json.loads(f.read_text()) for f in files]
    put_section(section([r for s in saved for r in s["results"]], saved[0]["meta"]), START, END)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", default="gene-link,few-shot")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0, help="first seed")
    ap.add_argument("--n-paired", default="50,200", help="few-shot: paired cells (comma-separated)")
    ap.add_argument("--with-query", action="store_true",
                    help="few-shot: add the MALT query (1,100 RNA-only cells, development) as an RNA-only cohort")
    ap.add_argument("--epochs", type=int, default=None, help="epochs of every stage (default: the model's)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=OUT,
                    help="results file (default benchmarks/results/stages.json); the README section reads every "
                         "benchmarks/results/stages*.json, so runs in parallel write files of their own")
    ap.add_argument("--readme-only", action="store_true")
    args = ap.parse_args(argv)
    if args.readme_only:
        write_section()
        return
    from scprospatial._settings import threads

    adata, panel_ = load_malt()
    query = load_query() if args.with_query else None
    out = args.out
    command = "python benchmarks/bench_stages.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    settings = args.settings.split(",")
    unknown = [s for s in settings if s not in ("gene-link", "few-shot", "sim")]
    if unknown:
        sys.exit(f"bench_stages: unknown setting(s) {', '.join(unknown)} (choose from gene-link, few-shot, sim)")
    with threads(args.threads):
        for seed in range(args.seed, args.seed + args.seeds):
            for setting in settings:
                if setting == "gene-link":
                    rows = run_gene_link(adata, panel_, seed, args.epochs)
                elif setting == "sim":
                    rows = [r for n in map(int, args.n_paired.split(",")) for r in run_sim(seed, args.epochs, n)]
                else:
                    rows = [r for n in map(int, args.n_paired.split(","))
                            for r in run_few_shot(adata, panel_, seed, args.epochs, n, query)]
                for row in rows:  # saved as each seed finishes: an interrupted run keeps what it measured
                    row["command"] = command
                merge_results(out, rows, lambda r: (r["setting"], r["seed"], r["method"]), command)
    write_section()


if __name__ == "__main__":
    main()
