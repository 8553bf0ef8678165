"""`scprospatial run`: the pipeline's steps, in dependency order, on one machine.

The same steps and the same output layout as the Nextflow pipeline (main.nf); beyond one machine,
use Nextflow. Output layout under OUTDIR:

    prepared/<id>.h5ad        validated, normalised input of every samplesheet row
    model/pretrain/model.pt   checkpoint after pretraining (+ metrics.json, training_curves.csv)
    model/align/model.pt      checkpoint after alignment, started from model/pretrain/model.pt
    model/model.pt            the trained model, translator trained from model/align/model.pt
                              (+ metrics.json, training_curves.csv of all three stages)
    imputed/<id>.imputed.h5ad RNA-only rows with obsm['protein_predicted'] and its SD
    spatial/<id>.graph.h5ad   spatial rows with squidpy-compatible neighbour graphs
    mapped/<sp>__<rna>.mapped.h5ad      imaged cells of spatial row <sp>, proteome imputed from RNA row <rna>
    mapped/<sp>__<rna>.mapped.rna.h5ad  the scRNA-seq cells of <rna> with their mapped locations

    stats/<sp>__<rna>/        spatial statistics of each mapped sample (stats/<sp>/ on the measured markers
                              when the samplesheet has no RNA-only cohort): CSVs, PNGs, .stats.h5ad
    evaluate/                 only with evaluate=True: `scprospatial evaluate` on the citeseq rows
                              (summary.csv, summary.md, metrics_per_protein.csv, metrics_per_split.csv, run.json)
    report/report.html        self-contained report (figures embedded)
    pipeline_info/            step stamps and trace.tsv

File names are those of the Nextflow pipeline, so both write the same layout.
"""
from __future__ import annotations

import functools
from pathlib import Path

from .._logging import logger
from .._step_options import DEFAULTS, StepOptions
from ..errors import InputError
from .samplesheet import Sample, read_samplesheet
from .steps import Step, run_steps

LAYOUT = {"prepared": "prepared", "model": "model", "imputed": "imputed", "spatial": "spatial",
          "mapped": "mapped", "stats": "stats", "evaluate": "evaluate", "report": "report", "info": "pipeline_info"}
STAGE_DIRS = {"pretrain": "pretrain", "align": "align", "translate": "."}  # under LAYOUT['model']


def _prepare_step(sample: Sample, outdir: Path) -> Step:
    from ..io import prepare_files

    out = outdir / LAYOUT["prepared"] / f"{sample.id}.h5ad"
    overrides = sample.read_overrides()

    def action():
        prepare_files([sample.input], out.parent, kind=sample.kind, dataset=sample.id, batch=sample.batch,
                      **overrides)

    return Step(f"prepare:{sample.id}", action, inputs=list(sample.paths), outputs=[out],
                params={"kind": sample.kind, "batch": sample.batch, **overrides})


def _train_steps(inputs: list[Path], outdir: Path, *, seed: int, device: str, threads: int | None,
                 epochs: int | None) -> list[Step]:
    """PRETRAIN -> ALIGN -> TRANSLATE, each started from the previous stage's model.pt (as the pipeline runs them).

    A step interrupted mid-stage continues from its checkpoint.pt; one whose inputs changed starts afresh.
    """
    from ..model import CHECKPOINT, MODEL_FILE, train_files

    steps, previous = [], None
    for stage, sub in STAGE_DIRS.items():
        folder = (outdir / LAYOUT["model"] / sub).resolve()

        def action(stage=stage, folder=folder, previous=previous):
            train_files([str(p) for p in inputs], folder, stages=(stage,), resume=(folder / CHECKPOINT).is_file(),
                        seed=seed, device=device, threads=threads, epochs=epochs, init_from=previous)

        steps.append(Step(f"train:{stage}", action, inputs=[*inputs, *([previous] if previous else [])],
                          outputs=[folder / MODEL_FILE], params={"seed": seed, "epochs": epochs},
                          on_stale=functools.partial((folder / CHECKPOINT).unlink, missing_ok=True)))
        previous = folder / MODEL_FILE
    return steps


def _evaluate_step(citeseq: list[Path], outdir: Path, *, seed: int, device: str, threads: int | None,
                   epochs: int | None, split: str, seeds: int) -> Step:
    from ..evaluate import evaluate_files

    folder = outdir / LAYOUT["evaluate"]
    return Step("evaluate", lambda: evaluate_files([str(p) for p in citeseq], folder, split=split, seeds=seeds,
                                                   seed=seed, device=device, threads=threads, epochs=epochs),
                inputs=citeseq, outputs=[folder / "summary.csv"],
                params={"split": split, "seeds": seeds, "seed": seed, "epochs": epochs})


def build_steps(samples: list[Sample], outdir: Path, *, model: str | Path | None = None, seed: int = 0,
                device: str = "auto", threads: int | None = None, epochs: int | None = None,
                truth: Path | None = None, evaluate: bool = False, evaluate_split: str = "random",
                evaluate_seeds: int = 5, options: StepOptions = DEFAULTS) -> list[Step]:
    """The runner's plan: prepare every row, train (unless a model is given), impute, graphs, map, statistics,
    evaluate (when asked) and the report, in the Nextflow workflow's order. options: the per-step options
    (graph, mapping k, permutations), the pipeline's parameters of the same names."""
    o = options
    from ..model import impute_file
    from ..report import build_report
    from ..spatial import graph_file, map_files, spatial_stats_file

    steps = [_prepare_step(s, outdir) for s in samples]
    prepared = {s.id: step.outputs[0] for s, step in zip(samples, steps)}
    by_kind = {k: [s for s in samples if s.kind == k] for k in ("citeseq", "rna", "spatial")}

    if model is None:
        if not by_kind["citeseq"]:
            raise InputError("the samplesheet has no citeseq row to train on; add one or pass --model")
        train_steps = _train_steps([prepared[s.id] for s in by_kind["citeseq"] + by_kind["rna"]], outdir,
                                   seed=seed, device=device, threads=threads, epochs=epochs)
        steps += train_steps
        model_path = train_steps[-1].outputs[0]
    else:
        from ..train import load_checkpoint

        model_path = Path(model)
        genes = load_checkpoint(model_path)["vocabulary"]["genes"]  # unreadable: refused before any step
        for s in by_kind["rna"]:
            _check_shares_genes(s, genes)

    for s in by_kind["rna"]:
        out = outdir / LAYOUT["imputed"] / f"{s.id}.imputed.h5ad"
        steps.append(Step(f"impute:{s.id}",
                          functools.partial(impute_file, model_path, prepared[s.id], out, device=device),
                          inputs=[model_path, prepared[s.id]], outputs=[out], params={}))

    for s in by_kind["spatial"]:
        graph = outdir / LAYOUT["spatial"] / f"{s.id}.graph.h5ad"
        steps.append(Step(f"spatial-graph:{s.id}",
                          functools.partial(graph_file, prepared[s.id], graph, method=o.graph_method, k=o.graph_k,
                                            radius=o.graph_radius, library_key=None, backend="auto", threads=threads,
                                            device=device),
                          inputs=[prepared[s.id]], outputs=[graph],
                          params={"method": o.graph_method, "k": o.graph_k, "radius": o.graph_radius}))
        for r in by_kind["rna"]:  # imaged cells receive the proteome of each RNA-only cohort
            out = outdir / LAYOUT["mapped"] / f"{s.id}__{r.id}.mapped.h5ad"
            steps.append(Step(f"map:{s.id}:{r.id}",
                              functools.partial(map_files, model_path, prepared[r.id], graph, out, k=o.map_k,
                                                impute=o.map_impute, device=device, threads=threads, seed=seed),
                              inputs=[model_path, prepared[r.id], graph], outputs=[out],
                              params={"k": o.map_k, "impute": o.map_impute, "seed": seed}))
        stats_inputs = [(st.name.split(":", 1)[1].replace(":", "__"), st.outputs[0])
                        for st in steps if st.name.startswith(f"map:{s.id}:")] or [(s.id, graph)]
        for name, src in stats_inputs:
            stats_dir = outdir / LAYOUT["stats"] / name
            steps.append(Step(f"spatial-stats:{name}",
                              functools.partial(spatial_stats_file, src, stats_dir, n_perms=o.n_perms, seed=seed,
                                                threads=threads),
                              inputs=[src], outputs=[stats_dir / "moran.csv"],
                              params={"n_perms": o.n_perms, "seed": seed}))

    if evaluate:
        if not by_kind["citeseq"]:
            raise InputError("evaluate needs a citeseq row (paired RNA and protein) in the samplesheet")
        steps.append(_evaluate_step([prepared[s.id] for s in by_kind["citeseq"]], outdir, seed=seed, device=device,
                                    threads=threads, epochs=epochs, split=evaluate_split,
                                    seeds=evaluate_seeds))

    report = outdir / LAYOUT["report"] / "report.html"
    upstream = [p for st in steps for p in st.outputs]
    steps.append(Step("report", lambda: build_report(outdir, report, truth=truth),
                      inputs=upstream + ([truth] if truth else []), outputs=[report], params={}))
    return steps


def run_samplesheet(samplesheet: str | Path, outdir: str | Path, *, model: str | Path | None = None, seed: int = 0,
                    device: str = "auto", threads: int | None = None, epochs: int | None = None,
                    force: bool = False, truth: Path | None = None, evaluate: bool = False,
                    evaluate_split: str = "random", evaluate_seeds: int = 5, options: StepOptions = DEFAULTS) -> Path:
    """Run every step of a samplesheet; returns the report's path.

    epochs: the same epoch count for every training stage (and evaluate's model), for smoke runs and
    tests; None keeps the model's defaults. evaluate: also benchmark on the citeseq rows (off by default;
    evaluate_split and evaluate_seeds as `scprospatial evaluate --split --n-seeds`), as the pipeline's
    --evaluate, --evaluate_split, --evaluate_seeds.
    """
    from ..io import check_output, folder_lock, remove_stale_temporaries

    samples = read_samplesheet(samplesheet)
    outdir = check_output(Path(outdir).resolve(), folder=True, inputs=[samplesheet, model], what="--outdir")
    try:
        steps = build_steps(samples, outdir, model=model, seed=seed, device=device, threads=threads, epochs=epochs,
                            truth=truth, evaluate=evaluate, evaluate_split=evaluate_split,
                            evaluate_seeds=evaluate_seeds, options=options)
        for s in samples:
            _check_not_inside(s, outdir)
    except InputError as exc:
        raise InputError(exc.problem, exc.path or samplesheet) from None
    with folder_lock(outdir):  # one run at a time writes into a results folder
        remove_stale_temporaries(outdir)
        logger.info("running %d steps for %d samplesheet rows into %s", len(steps), len(samples), outdir)
        run_steps(steps, outdir / LAYOUT["info"], force=force)
    return steps[-1].outputs[0]


def _check_shares_genes(sample: Sample, genes: list[str]) -> None:
    """An .h5ad RNA row sharing no gene with the model (var_names, or a gene-symbol column) cannot be imputed:
    refused before the first step, from its var table alone (other layouts are checked by their impute step)."""
    import anndata as ad

    from ..io import SYMBOL_COLUMNS

    path = sample.paths[0]
    if path.suffix != ".h5ad":
        return
    try:
        var = ad.read_h5ad(path, backed="r").var
    except Exception:  # noqa: BLE001 - unreadable: its prepare step says why, in one line
        return
    names = {str(v) for v in var.index}
    for col in (c for c in SYMBOL_COLUMNS if c in var.columns):
        names |= {str(v) for v in var[col]}
    if not names & set(genes):
        raise InputError(f"row {sample.id!r}: {path.name} shares no gene with the model's {len(genes)}-gene "
                         "vocabulary (gene symbols expected in var_names)")


def _check_not_inside(sample: Sample, outdir: Path) -> None:
    """An input inside the run's own output folders could be overwritten by a step."""
    managed = [outdir / sub for sub in LAYOUT.values()]
    for p in sample.paths:
        if any(p.resolve() == m or m in p.resolve().parents for m in managed):
            raise InputError(f"row {sample.id!r}: input {p} lies in the results folder the run writes; move it")


def run_demo(outdir: str | Path = "demo_results", *, n_cells: int = 1500, seed: int = 0, device: str = "auto",
             threads: int | None = None, epochs: int | None = None) -> Path:
    """Simulate a small cohort with ground truth and run the whole pipeline on it."""
    from ..io import folder_lock

    outdir = Path(outdir).resolve()
    with folder_lock(outdir):
        return _demo(outdir, n_cells=n_cells, seed=seed, device=device, threads=threads, epochs=epochs)


def _demo(outdir: Path, *, n_cells: int, seed: int, device: str, threads: int | None, epochs: int | None) -> Path:
    from ..simulate import simulate

    sim_dir = outdir / "simulated"
    simulate_step = Step("simulate", lambda: simulate(sim_dir, n_cells=n_cells, seed=seed),
                         outputs=[sim_dir / "samplesheet.csv"], params={"n_cells": n_cells, "seed": seed})
    run_steps([simulate_step], outdir / LAYOUT["info"] / "demo")
    truth = sim_dir / "truth"
    report = run_samplesheet(sim_dir / "samplesheet.csv", outdir, seed=seed, device=device, threads=threads,
                             epochs=epochs, truth=truth if truth.exists() else None)
    logger.info("demo finished: open %s", report)
    return report
