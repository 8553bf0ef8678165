#!/usr/bin/env python
"""RNA -> protein translation benchmark on the real CITE-seq cohorts in ../shared/data.

One command runs every split (random, few-shot, leave-type-out, leave-protein-out on MALT; cross-cohort
MALT -> PBMC 10k and MALT -> PBMC 5k on the shared panel) through `scprospatial.evaluate.evaluate_files`,
writes benchmarks/results/translation_<split>.json and regenerates the translation section of benchmarks/README.md.
With --peers, totalVI and sciPENN (benchmarks/.venv-peers, set up by benchmarks/peers/setup.sh) run in the same
evaluation through benchmarks/peers/adapter.py: same splits, seeds and metric code as the model and the baselines.

    python benchmarks/bench_translation.py --peers              # model + baselines + totalVI + sciPENN
    python benchmarks/bench_translation.py --methods mean,ridge_hvg,ridge_pca50,knn_pca50,krr_svd,coding_gene
    python benchmarks/bench_translation.py --reuse-peers        # after a model change: the peers' stored rows
    python benchmarks/bench_translation.py --splits ablation-random,ablation-cross-cohort   # without stage 1 / 2
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from _readme import replace_section  # noqa: E402  (benchmarks/ is on sys.path when run)
from _translation_readme import section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "citeseq"
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "benchmarks" / "README.md"
START, END = "<!-- bench_translation:start -->", "<!-- bench_translation:end -->"
COHORTS = {"malt": "malt_10k_train_1000cells.h5ad", "pbmc10k": "pbmc_10k_protein_v3_200cells.h5ad",
           "pbmc5k": "pbmc_5k_protein_v3_200cells.h5ad"}
# split -> cohorts (the first trains; cross-cohort tests on the others)
PLAN = {"random": ["malt"], "few-shot": ["malt"], "leave-type-out": ["malt"], "leave-protein-out": ["malt"],
        "cross-cohort": ["malt", "pbmc10k", "pbmc5k"]}
PEERS = ("totalvi", "scipenn")
TOTALVI_EPOCHS = 200
NO_PEERS = {"leave-protein-out": "a peer cannot predict a protein absent from its training panel"}
PER_SEED = ("random", "few-shot", "cross-cohort")  # splits whose repeats are seeds: one evaluate call per seed
# the ablations: the model without stage 1 (pretraining) and without stage 2 (alignment), on a split's cells
ABLATIONS = {"ablation-random": "random", "ablation-cross-cohort": "cross-cohort"}
ABLATION_METHODS = ["scprospatial", "scprospatial_no_pretrain", "scprospatial_no_align"]
PLAN.update({name: PLAN[split] for name, split in ABLATIONS.items()})
NO_PEERS.update({name: "ablation of the model's own stages" for name in ABLATIONS})


def cohort_paths() -> dict[str, Path]:
    raw = {k: (DATA / f).resolve() for k, f in COHORTS.items()}
    missing = [str(p) for p in raw.values() if not p.is_file()]
    if missing:
        sys.exit(f"bench_translation: data not found: {', '.join(missing)} (needs ../shared/data)")
    return raw


def machine() -> dict:
    from importlib.metadata import version

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "os": platform.platform(),
            "python": platform.python_version(),
            **{k: version(p) for k, p in (("torch", "torch"), ("sklearn", "scikit-learn"), ("scanpy", "scanpy"),
                                          ("anndata", "anndata"), ("numpy", "numpy"))}}


def peer_methods(args, split: str, seed: int) -> list:
    """The peers' adapters for a split (none where they cannot run it), seeded with `seed`."""
    if not args.peers or split in NO_PEERS:
        return []
    from peers.adapter import PeerMethod

    threads = args.threads or os.cpu_count()
    extra = {"totalvi": ["--max-epochs", str(args.totalvi_epochs)], "scipenn": []}
    return [PeerMethod(name, seed=seed, threads=threads, args=extra[name]) for name in PEERS]


def seed_runs(args, split: str) -> list[int]:
    """The --seed of each evaluate call: one per seed where the repeats are seeds, else one call.

    One call per seed s (`--n-seeds 1 --seed s`) draws the same split as repeat s of `--n-seeds N` and seeds
    the model, the peers and the baselines with s. (Before commit f51cc53, `evaluate --n-seeds N --seed S` seeded
    every fit with S; it now seeds each repeat's fits with the repeat's seed, so both give the same runs.)
    """
    if split in PER_SEED:
        return list(range(args.seed, args.seed + args.seeds))
    return [args.seed]


def run(args) -> None:
    from scprospatial._logging import configure
    from scprospatial.evaluate import evaluate_files, summarise, summary_markdown

    configure(0)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-translation-") as tmp:
        paths = cohort_paths()
        for name in args.splits:
            split, methods = ABLATIONS.get(name, name), ABLATION_METHODS if name in ABLATIONS else args.methods
            inputs = [paths[c] for c in PLAN[name]]
            seeds = seed_runs(args, split)
            n_seeds = 1 if split in PER_SEED else args.seeds
            cmd = ["scprospatial", "evaluate", *[f"../shared/data/citeseq/{COHORTS[c]}" for c in PLAN[split]],
                   "--outdir", f"eval_{split}" + ("_SEED" if split in PER_SEED else ""), "--split", split,
                   "--n-seeds", str(n_seeds), "--seed", "SEED" if split in PER_SEED else str(args.seed),
                   "--threads", str(args.threads or os.cpu_count())]
            if methods:
                cmd += ["--methods", ",".join(methods)]
            if args.epochs:
                cmd += ["--epochs", str(args.epochs)]
            command = shlex.join(cmd)
            if split in PER_SEED:
                command = f"for s in {' '.join(map(str, seeds))}; do {command.replace('SEED', '$s')}; done"
            peers, per_split, per_protein, runs = [], [], [], []
            t0 = time.perf_counter()
            for s in seeds:
                outdir = Path(tmp) / f"{split}_{s}"
                seed_peers = peer_methods(args, name, s)
                evaluate_files(inputs, outdir, split=split, seeds=n_seeds, methods=methods, seed=s,
                               device=args.device, threads=args.threads, epochs=args.epochs,
                               extra_methods=seed_peers)
                peers += seed_peers
                per_split.append(pd.read_csv(outdir / "metrics_per_split.csv"))
                per_protein.append(pd.read_csv(outdir / "metrics_per_protein.csv"))
                runs.append(json.loads((outdir / "run.json").read_text()))
                print(f"{name} seed {s}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
            wall = time.perf_counter() - t0
            per_split, per_protein = pd.concat(per_split, ignore_index=True), pd.concat(per_protein, ignore_index=True)
            summary = summarise(per_split)
            reused = reused_peers(split, seeds) if args.reuse_peers and name not in NO_PEERS else None
            if reused:
                summary = pd.concat([summary, pd.DataFrame(reused["summary"])], ignore_index=True)
            run_info = {**runs[0], "seed": seeds[0] if len(seeds) == 1 else seeds,
                        "n_splits": sum(r.get("n_splits", 0) for r in runs),
                        "model_seed": "the repeat's seed" if split in PER_SEED else args.seed}
            keep = [c for c in ("method", "setting", "seed", "pearson", "spearman", "ccc", "rmse", "coverage90",
                                "n_proteins", "error") if c in per_split]
            per_seed = per_split[keep].round(4).to_dict(orient="records") + (reused["per_seed"] if reused else [])
            pearson = per_protein.groupby(["method", "protein"])["pearson"].mean().unstack(0).round(4).to_dict()
            seconds = per_split.groupby("method", sort=False)[["fit_s", "predict_s"]].sum().round(1)
            record = {"split": name, "cohorts": PLAN[name], "wall_s": round(wall, 1),
                      "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                      "command": command, "bench_command": bench_command(args, name),
                      "run": run_info, "machine": machine(), "summary": summary.to_dict(orient="records"),
                      "per_seed": per_seed if split in PER_SEED else None,
                      "method_seconds": {**seconds.to_dict(orient="index"), **(reused["seconds"] if reused else {})},
                      "peers": reused["peers"] if reused else
                      {"versions": peer_versions(), "runs": {n: [m for p in peers if p.name == n for m in p.runs]
                                                             for n in PEERS} if peers else {},
                       "not_run": NO_PEERS.get(name) if args.peers else "not requested (--peers)"},
                      "per_protein_pearson": {**pearson, **(reused["pearson"] if reused else {})},
                      "summary_md": f"### {name}\n\n" + summary_markdown(summary)}
            (RESULTS / f"translation_{name}.json").write_text(json.dumps(record, indent=1, default=str))
            print(f"{name}: {wall:.0f} s", file=sys.stderr)
    write_readme()


def reused_peers(split: str, seeds: list[int]) -> dict:
    """The peers' rows of the stored results of `split`, for --reuse-peers: the peers never see the model, so a
    run of the same split and seeds gives the same rows; refused unless every seed has a row of every peer."""
    path = RESULTS / f"translation_{split}.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    rows = [r for r in old.get("per_seed") or [] if r["method"] in PEERS and r["seed"] in seeds]
    missing = [(p, s) for p in PEERS for s in seeds if not any(r["method"] == p and r["seed"] == s for r in rows)]
    stored = old.get("run", {}).get("seed")
    if missing or split not in PER_SEED or sorted(stored if isinstance(stored, list) else [stored]) != seeds:
        sys.exit(f"bench_translation: --reuse-peers: {path} has no peer rows for exactly seeds {seeds} "
                 f"(missing {missing[:3]}...); run with --peers instead")
    finished = old.get("finished") or time.strftime("%Y-%m-%d %H:%M UTC (file time)", time.gmtime(path.stat().st_mtime))
    source = old["peers"].get("reused_from") or {"finished": finished, "command": old.get("bench_command")}
    peers = {**old["peers"], "reused_from": source}  # always the run that fitted the peers
    return {"summary": [r for r in old["summary"] if r["method"] in PEERS], "per_seed": rows, "peers": peers,
            "pearson": {p: v for p, v in old["per_protein_pearson"].items() if p in PEERS},
            "seconds": {p: v for p, v in old.get("method_seconds", {}).items() if p in PEERS}}


def peer_versions() -> dict:
    from peers.adapter import peer_versions as versions

    return versions()


def bench_command(args, split: str) -> str:
    """The command line that reruns this split alone with the same settings."""
    cmd = [".venv/bin/python", "benchmarks/bench_translation.py", "--splits", split, "--seeds", str(args.seeds),
           "--seed", str(args.seed)]
    methods = [] if split in ABLATIONS else args.methods or []  # an ablation runs its own three methods
    for flag, value in (("--methods", ",".join(methods)), ("--epochs", args.epochs),
                        ("--threads", args.threads)):
        if value:
            cmd += [flag, str(value)]
    if args.peers:
        cmd += ["--peers", "--totalvi-epochs", str(args.totalvi_epochs)]
    if args.reuse_peers:
        cmd += ["--reuse-peers"]
    return shlex.join(cmd)


def write_readme() -> None:
    """Regenerate the translation section of benchmarks/README.md from every results/translation_*.json."""
    records = []
    for split in PLAN:
        path = RESULTS / f"translation_{split}.json"
        if path.is_file():
            record = json.loads(path.read_text())
            if "finished" not in record:  # older results: the file's time (written once, at the end of the run)
                record["finished"] = time.strftime("%Y-%m-%d %H:%M UTC (file time)", time.gmtime(path.stat().st_mtime))
            records.append(record)
    if records:
        replace_section(section(records, START, END), START, END, README)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--splits", default=",".join(PLAN), type=lambda s: [x for x in s.split(",") if x],
                   help="comma-separated splits (default: all)")
    p.add_argument("--methods", default=None, type=lambda s: [x for x in s.split(",") if x],
                   help="comma-separated methods (default: model when importable + all baselines)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="override the model's epochs")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--peers", action="store_true", help="also run totalVI and sciPENN (benchmarks/.venv-peers)")
    p.add_argument("--totalvi-epochs", type=int, default=TOTALVI_EPOCHS, help="totalVI's max_epochs")
    p.add_argument("--reuse-peers", action="store_true",
                   help="keep the peers' rows of the stored results of each split (same splits and seeds) instead "
                        "of rerunning them; the section says which run they come from")
    p.add_argument("--readme-only", action="store_true", help="only regenerate README.md from results/*.json")
    args = p.parse_args(argv)
    if args.peers and args.reuse_peers:
        p.error("--peers reruns the peers, --reuse-peers keeps their stored rows: give one")
    unknown = [s for s in args.splits if s not in PLAN]
    if unknown:
        p.error(f"unknown split(s) {unknown}; choose from {list(PLAN)}")
    write_readme() if args.readme_only else run(args)


if __name__ == "__main__":
    main()
