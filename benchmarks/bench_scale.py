"""Atlas scale: wall time and peak memory of every pipeline step as the number of cells grows.

Each step is one `scprospatial` command run in a fresh process (peak RSS from wait4's rusage of that
child); sizes are simulated cohorts of realistic shape (`scprospatial.simulate`, seeded, the query and
the image both of N cells, filler genes named after the protein vocabulary's coding genes so every
vocabulary protein is predictable as on real data), generated once under --data-dir and reused. One
small model is trained once on the simulated CITE-seq cohort and used for every size. Growth exponents
are least-squares fits on log-log axes; 10^7 is projected from the two largest sizes. Results merge into
benchmarks/results/scale.json (a run of some sizes keeps the others) and the README section is rebuilt.

    python benchmarks/bench_scale.py --sizes 1e4,1e5,1e6      # everything (about 1.5 h on 2 idle cores)
    python benchmarks/bench_scale.py --readme-only            # rebuild the README section from the JSON
    python benchmarks/bench_scale.py --add-profiles DIR       # merge GPU runs of scale/device_impute.sh
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from scale.measure import run_measured  # noqa: E402
from scale.report import write_readme  # noqa: E402
from scale.steps import SCP, STEPS, Ctx  # noqa: E402

RESULTS = HERE / "results" / "scale.json"
TRAIN_CELLS, REFERENCE_CELLS, SEED, EPOCHS = 2000, 10_000, 0, 5
N_PROTEINS = 300


def simulate_cohort(path: Path, n: int) -> dict | None:
    """Simulate N query + N imaged cells (2,000 CITE-seq cells) once; None when already there."""
    stamp = path / "truth" / "params.json"
    if stamp.is_file():
        return None
    code = ("from scprospatial.simulate import simulate; "
            f"simulate({str(path)!r}, n_cells={TRAIN_CELLS}, n_query={n}, n_spatial={n}, seed={SEED}, "
            "filler_names='vocabulary')")
    return run_measured([sys.executable, "-c", code], path.parent / f"simulate_{n}.log")


def train_model(data: Path, work: Path) -> tuple[Path, dict | None]:
    model = work / "model" / "model.pt"
    if model.is_file():
        return model, None
    cmd = SCP + ["train", data / "citeseq.h5ad", "--outdir", model.parent, "--seed", str(SEED),
                 "--epochs", str(EPOCHS)]
    return model, run_measured(cmd, work / "logs" / "train.log")


def model_info(model_path: Path) -> dict:
    from scale.panel import first_predictable
    from scprospatial.model import ScProSpatial
    from scprospatial.model._predict import resolve_proteins

    model = ScProSpatial.load(model_path, device="cpu")
    return {"n_genes": len(model.vocab.genes), "n_measured": len(model.vocab.measured),
            "n_predictable": len(resolve_proteins(model.vocab, None, True)),
            "n_vocabulary_proteins": len(model.vocab.proteins),
            "first_proteins": first_predictable(model, N_PROTEINS)}


def runner_trace(run_dir: Path) -> dict[str, float]:
    """Seconds per runner step, from pipeline_info/trace.tsv, summed by kind of step."""
    trace = run_dir / "pipeline_info" / "trace.tsv"
    out: dict[str, float] = {}
    for line in trace.read_text().splitlines()[1:]:
        step, _, seconds = line.split("\t")
        kind = step.split(":")[0] + (":" + step.split(":")[1] if step.startswith("prepare:") else "")
        out[kind] = round(out.get(kind, 0.0) + float(seconds), 3)
    return out


def load_results() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"records": []}


def save_results(results: dict) -> None:
    """Merge `results` into the JSON on disk under a lock (runs of other sizes may write at the same time):
    records by (step, n), the later date winning; profiles and commands by key; the rest from `results`."""
    import fcntl

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        disk = load_results()
        records = {(r["step"], r["n"]): r for r in disk.get("records", [])}
        for r in results.get("records", []):
            key = (r["step"], r["n"])
            if key not in records or r.get("date", "") >= records[key].get("date", ""):
                records[key] = r
        merged = {**disk, **results, "records": sorted(records.values(), key=lambda r: (r["n"], r["step"])),
                  "impute_profile": {**disk.get("impute_profile", {}), **results.get("impute_profile", {})},
                  "commands": list(dict.fromkeys(disk.get("commands", []) + results.get("commands", [])))}
        tmp = RESULTS.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(merged, indent=1) + "\n")
        os.replace(tmp, RESULTS)
    results.update(merged)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def add_record(results: dict, record: dict) -> None:
    record = {**record, "date": record.get("date") or _now()}
    results["records"] = [r for r in results["records"] if (r["step"], r["n"]) != (record["step"], record["n"])]
    results["records"].append(record)
    save_results(results)


def machine() -> dict:
    import torch

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "memory_gib": round(mem, 1), "python": platform.python_version(), "torch": torch.__version__}


def measure_size(n: int, args, model: Path, info: dict, reference: Path, results: dict) -> None:
    data = args.data_dir / f"n{n}"
    sim = simulate_cohort(data, n)
    if sim is not None:
        add_record(results, {"step": "simulate", "n": n, **sim})
    ctx = Ctx(n=n, data=data, work=args.work_dir / f"n{n}", model=model, reference=reference,
              proteins=info["first_proteins"], max_map_pairs=args.max_map_pairs,
              max_all_proteins_cells=args.max_all_proteins_cells)
    wanted = set(args.steps.split(",")) if args.steps else None
    for step in STEPS:
        if wanted is not None and step.name not in wanted:
            continue
        why = step.skip(ctx)
        if why:
            print(f"[{n:.0e}] {step.name}: skipped ({why})", flush=True)
            continue
        record = {"step": step.name, "n": n, **run_measured(step.command(ctx), ctx.work / "logs" / f"{step.name}.log"),
                  "date": _now()}
        if step.name == "impute_300":
            record["n_proteins"] = len(ctx.proteins)
        if step.name == "impute_all":
            record["n_proteins"] = info["n_predictable"]
        if step.name == "run":
            record["runner_steps_s"] = runner_trace(ctx.out("run"))
        print(f"[{n:.0e}] {step.name}: {record['seconds']:.1f} s, {record['peak_rss_mb']:.0f} MB", flush=True)
        add_record(results, record)
        step.cleanup(ctx)


def profile_impute(n: int, args, model: Path, results: dict) -> None:
    """cProfile split of impute (300 proteins and all) at size n, on this machine's CPU."""
    work = args.work_dir / f"n{n}"
    prepared = work / "prepared" / "query_rna.h5ad"
    if not prepared.is_file():
        print(f"[{n:.0e}] profile: {prepared} missing (run prepare_rna first); skipped")
        return
    for which, flag in (("300", ["--n-proteins", str(N_PROTEINS)]), ("all", ["--all-proteins"])):
        parts = work / f"profile_{which}.json"
        out = work / f"profile_{which}.h5ad"
        run_measured([sys.executable, HERE / "scale" / "profile_impute.py", "--model", model, "--input", prepared,
                      "--out", out, "--json", parts, *flag], work / "logs" / f"profile_{which}.log")
        results.setdefault("impute_profile", {})[f"cpu_{which}"] = json.loads(parts.read_text())
        out.unlink(missing_ok=True)
        save_results(results)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1e4,1e5,1e6", help="comma-separated cell counts (default 1e4,1e5,1e6)")
    ap.add_argument("--steps", default=None, help="comma-separated step names (default: all)")
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "scale_data",
                    help="simulated cohorts, generated once (default ../scale_data beside the repository)")
    ap.add_argument("--work-dir", type=Path, default=None, help="outputs (default <data-dir>/work)")
    ap.add_argument("--max-map-pairs", type=float, default=2e10,
                    help="skip N x N mapping (and the runner, which maps N x N) beyond this many pairs")
    ap.add_argument("--max-all-proteins-cells", type=float, default=1e5,
                    help="largest size imputed with --all-proteins (its forward pass costs ~10x that of 300)")
    ap.add_argument("--profile-size", type=float, default=1e4, help="size of the impute profile (0: none)")
    ap.add_argument("--add-profiles", type=Path, default=None,
                    help="merge the <name>.json files of scale/device_impute.sh (GPU runs) and rebuild the README")
    ap.add_argument("--readme-only", action="store_true")
    args = ap.parse_args(argv)
    if args.add_profiles or args.readme_only:
        results = load_results()
        for path in sorted(args.add_profiles.glob("*.json")) if args.add_profiles else []:
            results.setdefault("impute_profile", {})[path.stem] = json.loads(path.read_text())
        save_results(results)
        write_readme(results)
        return
    args.work_dir = args.work_dir or args.data_dir / "work"
    sizes = sorted(int(float(s)) for s in args.sizes.split(","))
    results = load_results()
    results["machine"] = machine()
    results["commands"] = ["python benchmarks/bench_scale.py " + " ".join(argv if argv is not None else sys.argv[1:])]

    train_data = args.data_dir / f"n{REFERENCE_CELLS}"
    sim = simulate_cohort(train_data, REFERENCE_CELLS)
    if sim is not None:
        add_record(results, {"step": "simulate", "n": REFERENCE_CELLS, **sim})
    model, train = train_model(train_data, args.work_dir)
    info = model_info(model)
    results["model"] = {k: v for k, v in info.items() if k != "first_proteins"}
    if train is not None:
        results["model"]["train"] = train
    reference = args.work_dir / "reference" / "query_rna.h5ad"
    if not reference.is_file():
        run_measured(SCP + ["prepare", train_data / "query_rna.h5ad", "--outdir", reference.parent, "--kind", "rna"],
                     args.work_dir / "logs" / "reference.log")
    save_results(results)
    for n in sizes:
        measure_size(n, args, model, info, reference, results)
        if args.profile_size and n == int(args.profile_size):
            profile_impute(n, args, model, results)
    write_readme(results)


if __name__ == "__main__":
    main()
