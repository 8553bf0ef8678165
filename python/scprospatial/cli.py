"""The `scprospatial` command: one subcommand per pipeline step.

Exit codes: 0 success, 2 bad input or usage (one line naming the file or flag), 1 internal error. Logs go
to stderr. Before a command works, its output locations are checked; when it fails, what it wrote there is
removed again (docs/failures.md).
Each subcommand parses its flags here and calls one function of the package, so everything the
command does is importable and tested; `bin/` scripts and the Nextflow modules call this.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import re
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__
from ._logging import configure, logger
from ._step_options import DEFAULTS as STEP
from ._step_options import MAP_IMPUTE_METHODS
from .errors import InputError

# ----------------------------------------------------------------------------------------------
# Shared flag groups (one definition each, attached as argparse parents).


def _common_parser() -> _Parser:
    p = _Parser(add_help=False)
    g = p.add_argument_group("common options")
    g.add_argument("--seed", type=_seed, default=0,
                   help="random seed; the same seed and --threads give the same result (default 0)")
    g.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch and the C++ core (default: all cores)")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="compute device: auto picks CUDA when a GPU is visible (default auto)")
    g.add_argument("-v", "--verbose", action="count", default=0,
                   help="debug logging, with tracebacks of internal errors")
    g.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    return p


def _spatial_format_parser() -> _Parser:
    """Overrides for cell-table layouts the auto-detection does not know."""
    p = _Parser(add_help=False)
    g = p.add_argument_group("format overrides (spatial tables and CITE-seq layouts)")
    g.add_argument("--x-col", help="column holding x coordinates (default: detected, e.g. X, X_position, x)")
    g.add_argument("--y-col", help="column holding y coordinates")
    g.add_argument("--z-col", help="column holding z coordinates (3-D tables)")
    g.add_argument("--marker-cols", type=_csv_list, help="comma-separated marker columns (default: detected)")
    g.add_argument("--cell-type-col", help="column holding cell-type labels (default: detected)")
    g.add_argument("--id-col", help="column holding cell ids (default: detected, else row numbers)")
    g.add_argument("--protein-key", help="obsm key holding protein counts in a CITE-seq .h5ad (default: detected)")
    g.add_argument("--table-name", help="SpatialData store: the table of cells to read (default: its only table)")
    g.add_argument("--coordinate-system", help="SpatialData store: coordinate system of the cell centroids "
                   "(default: 'global', else the element's only one)")
    g.add_argument("--imaging-norm", choices=("arcsinh", "quantile"), default=None,
                   help="normalisation of imaging intensities (default arcsinh)")
    g.add_argument("--cofactor", default=None,
                   help="arcsinh cofactor, a number or 'auto' "
                        "(default auto: 5 on count scales, else the panel's background)")
    return p


def _spatialdata_out_parser() -> _Parser:
    """Results written back into a SpatialData store, as a table annotating the cells' shapes or labels."""
    p = _Parser(add_help=False)
    g = p.add_argument_group("SpatialData output (needs the 'spatialdata' extra)")
    g.add_argument("--spatialdata-out", default=None, metavar="STORE.zarr",
                   help="also write the result as a table of this SpatialData store: an existing store (the input "
                        "store, for example) gets the table added; a new path gets a store of the table and the "
                        "elements it annotates")
    g.add_argument("--spatialdata-table", default=None, metavar="NAME",
                   help="name of that table (default: scprospatial_mapped for map, scprospatial_stats for "
                        "spatial-stats)")
    return p


def _write_spatialdata(args, result, default_table: str) -> None:
    """--spatialdata-out: the result .h5ad written as a SpatialData table (checked first by `_check_spatialdata`)."""
    if args.spatialdata_out is None:
        return
    import anndata as ad

    from .io import write_spatialdata

    print(write_spatialdata(ad.read_h5ad(result), args.spatialdata_out,
                            table_name=args.spatialdata_table or default_table))


def _check_spatialdata(args) -> None:
    if args.spatialdata_out is None:
        if args.spatialdata_table is not None:
            raise InputError("--spatialdata-table needs --spatialdata-out")
        return
    from .io import check_spatialdata_out

    check_spatialdata_out(args.spatialdata_out, args.spatialdata_table or _SD_TABLES[args.command])


_SD_TABLES = {"map": "scprospatial_mapped", "spatial-stats": "scprospatial_stats"}


def _whole(low: int, high: int | None = None, what: str = "") -> Callable[[str], int]:
    """An argparse type: a whole number in [low, high]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {what or f'at least {low}'}, got {value}")
        return value

    return parse


_count = _whole(1)                                          # epochs, cells, neighbours, permutations ...
_seed = _whole(0, 2**32 - 1, "between 0 and 2**32 - 1")    # what numpy's generators accept


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _csv_list(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def _format_overrides(args: argparse.Namespace) -> dict:
    keys = ("x_col", "y_col", "z_col", "marker_cols", "cell_type_col", "id_col", "protein_key", "table_name",
            "coordinate_system")
    out = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
    if getattr(args, "imaging_norm", None):
        out["imaging_method"] = args.imaging_norm
    if getattr(args, "cofactor", None):
        out["cofactor"] = args.cofactor if args.cofactor == "auto" else _positive_float(args.cofactor)
    return out


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise InputError(f"--cofactor must be a positive number or 'auto', got {text!r}")
    return value


# ----------------------------------------------------------------------------------------------
# Handlers: each imports what it needs lazily so `--help` stays fast.


def _simulate(args):
    from .simulate import simulate

    paths = simulate(args.outdir, n_cells=args.n_cells, n_query=args.n_query, n_spatial=args.n_spatial,
                     n_genes=args.n_genes, n_cell_types=args.n_cell_types, seed=args.seed,
                     spatial_layout=args.spatial_layout, chunk_size=args.chunk_size)
    for name, path in paths.items():
        print(f"{name}\t{path}")


def _prepare(args):
    from .io import prepare_files

    paths = prepare_files(args.inputs, args.outdir, kind=args.kind, dataset=args.dataset, batch=args.batch,
                          **_format_overrides(args))
    for path in paths:
        print(path)


def _train(args):
    from .model import train_files

    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    path = train_files(args.inputs, args.outdir, stages=stages, resume=args.resume, seed=args.seed,
                       device=args.device, threads=args.threads, epochs=args.epochs, ppi=args.ppi,
                       init_from=args.init_from, ensemble=args.ensemble)
    print(path)


def _impute(args):
    from .model import impute_file

    proteins = args.proteins if args.proteins else None
    path = impute_file(args.model, args.input, args.out, proteins=proteins, all_proteins=args.all_proteins,
                       device=args.device, batch_size=args.batch_size, min_support=args.min_support)
    print(path)


def _spatial_graph(args):
    from .spatial import graph_file

    path = graph_file(args.input, args.out, method=args.method, k=args.k, radius=args.radius,
                      library_key=args.library_key, backend=args.backend, threads=args.threads,
                      device=args.device, **_format_overrides(args))
    print(path)


def _map(args):
    from .spatial import map_files

    _check_spatialdata(args)
    path = map_files(args.model, args.rna, args.spatial, args.out, k=args.k, proteins=args.proteins,
                     all_proteins=args.all_proteins, device=args.device, threads=args.threads,
                     backend=args.backend, seed=args.seed, min_support=args.min_support,
                     ivf=None if args.nprobe is None else {"nprobe": args.nprobe, "seed": args.seed},
                     impute=args.impute, **_format_overrides(args))
    print(path)
    _write_spatialdata(args, path, _SD_TABLES["map"])


def _spatial_stats(args):
    from .spatial import spatial_stats_file

    _check_spatialdata(args)
    path = spatial_stats_file(args.input, args.out, cluster_key=args.cluster_key, proteins=args.proteins,
                              n_perms=args.n_perms, library_key=args.library_key, seed=args.seed,
                              threads=args.threads)
    print(path)
    _write_spatialdata(args, path, _SD_TABLES["spatial-stats"])


def _evaluate(args):
    from .evaluate import evaluate_files

    path = evaluate_files(args.inputs, args.outdir, split=args.split, seeds=args.n_seeds, methods=args.methods,
                          seed=args.seed, device=args.device, threads=args.threads, epochs=args.epochs,
                          predictions=args.predictions, cell_type_key=args.cell_type_key)
    print(path)


def _run(args):
    from ._step_options import StepOptions
    from .pipeline import run_samplesheet

    options = StepOptions(graph_method=args.graph_method, graph_k=args.graph_k, graph_radius=args.graph_radius,
                          map_k=args.map_k, map_impute=args.map_impute, n_perms=args.n_perms)
    path = run_samplesheet(args.samplesheet, args.outdir, model=args.model, seed=args.seed, device=args.device,
                           threads=args.threads, epochs=args.epochs, force=args.force, evaluate=args.evaluate,
                           evaluate_split=args.evaluate_split, evaluate_seeds=args.evaluate_seeds, options=options)
    print(path)


def _report(args):
    from .report import build_report

    out = args.out or f"{args.results}/report/report.html"
    print(build_report(args.results, out, truth=args.truth))


def _demo(args):
    from .pipeline import run_demo

    path = run_demo(args.outdir, n_cells=args.n_cells, seed=args.seed, device=args.device, threads=args.threads,
                    epochs=args.epochs)
    print(path)


# ----------------------------------------------------------------------------------------------
# Subcommand table: name -> (handler, one-line help, worked example, argument adder, extra parents)


def _add_simulate(p):
    p.add_argument("--outdir", required=True, help="folder to write the cohort into")
    p.add_argument("--n-cells", type=_count, default=2000, help="paired CITE-seq cells (default 2000)")
    p.add_argument("--n-query", type=_count, default=None, help="RNA-only query cells (default: half of --n-cells)")
    p.add_argument("--n-spatial", type=_count, default=None,
                   help="imaged cells in the spatial table (default: 2 x --n-cells)")
    p.add_argument("--spatial-layout", choices=("codex", "cycif"), default="codex",
                   help="column layout of the cell table")
    p.add_argument("--n-genes", type=_count, default=3000, help="genes per cell (default 3000)")
    p.add_argument("--n-cell-types", type=int, default=8, help="cell types, 2-12 (default 8)")
    p.add_argument("--chunk-size", type=_count, default=50_000,
                   help="cells generated at a time; bounds memory, never changes the result (default 50000)")


def _add_prepare(p):
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help=".h5ad, RNA,PROTEIN .h5ad pair (comma-joined), .h5mu, 10x folder or .h5, a cell table, "
                        "a steinbock folder or a SpatialData .zarr store")
    p.add_argument("--outdir", required=True, help="folder for the prepared <dataset>.h5ad files")
    p.add_argument("--kind", choices=("citeseq", "rna", "spatial"), default=None, help="input kind (default: detected)")
    p.add_argument("--dataset", default=None, help="dataset id (default: the file name without suffix; one input only)")
    p.add_argument("--batch", default=None, help="batch label written to obs['batch'] (default: the dataset id)")


def _add_train(p):
    p.add_argument("inputs", nargs="+", metavar="CITESEQ_OR_RNA", help="prepared or raw cohorts (any supported layout)")
    p.add_argument("--outdir", required=True, help="folder for model.pt, metrics.json and training curves")
    p.add_argument("--stages", default="pretrain,align,translate", help="comma-separated stages to run")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --outdir")
    p.add_argument("--init-from", default=None, metavar="MODEL_PT",
                   help="model.pt of earlier stages to go on from (e.g. --stages align --init-from pretrain/model.pt); "
                        "same cohorts and seed, ends where one run of all stages ends")
    p.add_argument("--epochs", type=_count, default=None, help="override the epochs of every stage")
    p.add_argument("--ppi", default=None, help="TSV edge list (gene_a, gene_b, weight) to initialise gene embeddings")
    p.add_argument("--ensemble", type=_count, default=1, metavar="K",
                   help="train K models with seeds SEED..SEED+K-1 into one checkpoint; predictions are their mean, "
                        "SDs include their spread (default 1; see benchmarks/README.md for the measured gain and cost)")


def _add_impute(p):
    p.add_argument("input", metavar="RNA_INPUT", help="RNA-only cells (any supported layout)")
    p.add_argument("--model", required=True, help="checkpoint written by `scprospatial train` (model.pt)")
    p.add_argument("--out", required=True, help="output .h5ad")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--proteins", type=_csv_list, default=None,
                   help="comma-separated proteins (default: training panel)")
    g.add_argument("--all-proteins", action="store_true", help="every vocabulary protein linked to a model gene")
    p.add_argument("--batch-size", type=_count, default=4096, help="cells per inference chunk (default 4096)")
    _add_min_support(p)


def _add_min_support(p):
    p.add_argument("--min-support", choices=("measured", "detected", "any"), default="any",
                   help="keep only proteins measured in training ('measured'), or also those predicted through a "
                        "coding gene detected in the input, count > 0 in >= 10%% of its cells ('detected'); default "
                        "any. Every protein's support and expected accuracy are in "
                        "uns['protein_predicted']['proteins']")


def _add_spatial_graph(p):
    p.add_argument("input", metavar="SPATIAL_INPUT",
                   help="cell table, steinbock folder, SpatialData .zarr store or prepared spatial .h5ad")
    p.add_argument("--out", required=True, help="output .h5ad with obsp graphs (squidpy-compatible keys)")
    p.add_argument("--method", choices=("knn", "radius", "delaunay"), default=STEP.graph_method,
                   help=f"graph kind (default {STEP.graph_method})")
    p.add_argument("--k", type=_count, default=STEP.graph_k,
                   help=f"neighbours per cell for knn (default {STEP.graph_k})")
    p.add_argument("--radius", type=_positive, default=None, help="radius for method=radius, or pruning distance")
    p.add_argument("--library-key", default=None, help="obs column of samples: one block-diagonal graph per sample "
                   "(default: the input's image column, e.g. a steinbock folder's library_id)")
    p.add_argument("--backend", choices=("auto", "cpp", "cuda", "scipy"), default="auto", help="kernel backend")


def _add_map(p):
    p.add_argument("--model", required=True, help="checkpoint written by `scprospatial train` (model.pt)")
    p.add_argument("--rna", required=True, help="scRNA-seq cells to map (any supported layout)")
    p.add_argument("--spatial", required=True, help="spatial proteomics cell table, steinbock folder, SpatialData "
                   ".zarr store or prepared .h5ad")
    p.add_argument("--out", required=True, help="output .h5ad: imaged cells with the imputed proteome")
    p.add_argument("--k", type=_count, default=STEP.map_k,
                   help=f"scRNA-seq neighbours per imaged cell (default {STEP.map_k})")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--proteins", type=_csv_list, default=None,
                   help="comma-separated proteins (default: training panel plus every imaged marker the model "
                        "predicts)")
    g.add_argument("--all-proteins", action="store_true", help="every vocabulary protein linked to a model gene")
    p.add_argument("--backend", choices=("auto", "cpp", "cuda", "torch", "faiss-ivf", "faiss-flat"), default="auto",
                   help="top-k search: auto (approximate faiss-ivf for large maps, else exact), an exact kernel "
                        "(cpp, cuda, torch, faiss-flat) or faiss-ivf")
    p.add_argument("--nprobe", type=_count, default=None,
                   help="faiss-ivf: lists searched per imaged cell (more: closer to exact, slower; default 32)")
    p.add_argument("--impute", choices=MAP_IMPUTE_METHODS, default=STEP.map_impute,
                   help="imaged cells' proteome: knn (the mapped scRNA-seq cells' predictions), regression (ridge "
                        "from the predicted panel, applied to the measured one) or blend (their equal mixture; "
                        f"default {STEP.map_impute})")
    _add_min_support(p)


def _add_spatial_stats(p):
    p.add_argument("input", metavar="INPUT", help=".h5ad with coordinates (a graph is built if none is stored)")
    p.add_argument("--out", required=True, help="folder for tables and figures")
    p.add_argument("--cluster-key", default=None, help="obs column of cell types (default: the detected one)")
    p.add_argument("--proteins", type=_csv_list, default=None, help="proteins for Moran's I and figures (default: all)")
    p.add_argument("--n-perms", type=_count, default=STEP.n_perms,
                   help=f"permutations for neighbourhood enrichment (default {STEP.n_perms})")
    p.add_argument("--library-key", default=None, help="obs column of samples (statistics per sample; default: "
                   "the input's image column, e.g. a steinbock folder's library_id)")


def _add_evaluate(p):
    p.add_argument("inputs", nargs="+", metavar="CITESEQ", help="paired cohorts; cross-cohort trains on the first")
    p.add_argument("--outdir", required=True, help="folder for metrics tables")
    p.add_argument("--split", default="random",
                   choices=("random", "few-shot", "leave-type-out", "cross-cohort", "leave-protein-out"))
    p.add_argument("--n-seeds", type=_count, default=5, help="repeats of the random split (default 5)")
    p.add_argument("--methods", type=_csv_list, default=None, help="methods to run (default: model and all baselines)")
    p.add_argument("--epochs", type=_count, default=None, help="override the model's epochs")
    p.add_argument("--cell-type-key", default=None,
                   help="obs column of cell types for leave-type-out (default: Leiden clusters of the RNA)")
    p.add_argument("--predictions", action="store_true", help="also write every prediction (predictions.csv.gz)")


def _add_run(p):
    p.add_argument("--samplesheet", required=True, help="CSV: id,kind,path,batch[,x_col,y_col,cell_type_col]")
    p.add_argument("--outdir", required=True, help="results folder (same layout as the Nextflow pipeline)")
    p.add_argument("--model", default=None, help="start from a trained checkpoint: only impute and map")
    p.add_argument("--epochs", type=_count, default=None, help="override the model's epochs")
    p.add_argument("--force", action="store_true", help="re-run every step even when its outputs are up to date")
    p.add_argument("--evaluate", action="store_true",
                   help="also benchmark the model against the baselines on the citeseq rows (evaluate/)")
    p.add_argument("--evaluate-split", default="random",
                   choices=("random", "few-shot", "leave-type-out", "cross-cohort", "leave-protein-out"),
                   help="held-out split of --evaluate (default random)")
    p.add_argument("--evaluate-seeds", type=_count, default=5, help="repeats of the random split (default 5)")
    g = p.add_argument_group("step options "
                             "(as the pipeline's --graph_method, --graph_k, --graph_radius, --map_k, --map_impute, "
                             "--n_perms)")
    g.add_argument("--graph-method", choices=("knn", "radius", "delaunay"), default=STEP.graph_method,
                   help=f"spatial graph of each imaged sample (default {STEP.graph_method})")
    g.add_argument("--graph-k", type=_count, default=STEP.graph_k,
                   help=f"neighbours of the knn graph (default {STEP.graph_k})")
    g.add_argument("--graph-radius", type=_positive, default=STEP.graph_radius,
                   help="radius graph: the radius (or pruning)")
    g.add_argument("--map-k", type=_count, default=STEP.map_k,
                   help=f"scRNA-seq neighbours per imaged cell (default {STEP.map_k})")
    g.add_argument("--map-impute", choices=MAP_IMPUTE_METHODS, default=STEP.map_impute,
                   help=f"imaged cells' proteome in map, as map --impute (default {STEP.map_impute})")
    g.add_argument("--n-perms", type=_count, default=STEP.n_perms,
                   help=f"enrichment permutations (default {STEP.n_perms})")


def _add_report(p):
    p.add_argument("results", metavar="RESULTS_DIR", help="an output folder of `scprospatial run` or the pipeline")
    p.add_argument("--out", default=None, help="HTML file to write (default RESULTS_DIR/report/report.html)")
    p.add_argument("--truth", default=None, help="ground-truth folder of a simulated cohort (adds accuracy tables)")


def _versions(args):
    """nf-core's versions.yml of one pipeline task: the package and the libraries its results depend on."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    lines = [f'"{args.process}":', f"    python: {platform.python_version()}"]
    for name in ("scprospatial", "torch", "numpy", "anndata", "scanpy"):
        try:
            lines.append(f"    {name}: {version(name)}")
        except PackageNotFoundError:
            lines.append(f"    {name}: not installed")
    print("\n".join(lines))


def _add_versions(p):
    p.add_argument("--process", required=True, help="the Nextflow task's process name (task.process)")


def _add_demo(p):
    p.add_argument("--outdir", default="demo_results", help="results folder (default demo_results)")
    p.add_argument("--n-cells", type=_count, default=1500, help="simulated CITE-seq cells (default 1500)")
    p.add_argument("--epochs", type=_count, default=None, help="override the model's epochs")


SUBCOMMANDS: dict[str, tuple[Callable, str, str, Callable, tuple[str, ...]]] = {
    "simulate": (_simulate, "write a seeded simulated cohort (CITE-seq, RNA-only query, spatial table)",
                 "scprospatial simulate --outdir sim --n-cells 2000 --seed 1", _add_simulate, ()),
    "prepare": (_prepare, "read, validate and normalise inputs into the scprospatial AnnData layout",
                "scprospatial prepare malt.h5ad pbmc_10x/filtered_feature_bc_matrix codex.csv --outdir prepared",
                _add_prepare, ("format",)),
    "train": (_train, "train the RNA->protein model (pretrain, align, translate)",
              "scprospatial train prepared/malt.h5ad prepared/pbmc.h5ad --outdir model --seed 0", _add_train, ()),
    "impute": (_impute, "predict protein abundance (with uncertainty) for RNA-only cells",
               "scprospatial impute --model model/model.pt query.h5ad --out query_imputed.h5ad --all-proteins",
               _add_impute, ()),
    "spatial-graph": (_spatial_graph, "build a spatial neighbour graph over cell coordinates",
                      "scprospatial spatial-graph codex.csv --out codex_graph.h5ad --method knn --k 10",
                      _add_spatial_graph, ("format",)),
    "map": (_map, "map scRNA-seq cells onto a spatial proteomics sample and impute its proteome",
            "scprospatial map --model model/model.pt --rna query.h5ad --spatial codex.csv "
            "--out codex_mapped.h5ad --k 10",
            _add_map, ("format", "spatialdata")),
    "spatial-stats": (_spatial_stats, "neighbourhood enrichment, Moran's I and niche composition on one graph",
                      "scprospatial spatial-stats codex_mapped.h5ad --out codex_stats --cluster-key ClusterName",
                      _add_spatial_stats, ("spatialdata",)),
    "evaluate": (_evaluate, "benchmark the model against baselines on held-out cells",
                 "scprospatial evaluate prepared/malt.h5ad --outdir eval --split random --n-seeds 5",
                 _add_evaluate, ()),
    "run": (_run, "run every step of a samplesheet on this machine (no Nextflow needed)",
            "scprospatial run --samplesheet samplesheet.csv --outdir results", _add_run, ()),
    "report": (_report, "write the self-contained HTML report of a results folder",
               "scprospatial report results --out results/report/report.html", _add_report, ()),
    "demo": (_demo, "simulate a small cohort and run the whole pipeline on it",
             "scprospatial demo --outdir demo_results", _add_demo, ()),
    "versions": (_versions, "print the versions.yml of a pipeline task (python, scprospatial, torch, numpy, ...)",
                 'scprospatial versions --process "SCPROSPATIAL:IMPUTE" > versions.yml', _add_versions, ()),
}


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (exit 2), like every other bad input; --help shows the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="scprospatial",
        description="Infer and impute single-cell spatial proteomics from scRNA-seq.",
        epilog="Run `scprospatial COMMAND --help` for a worked example of each command.",
    )
    parser.add_argument("--version", action="version", version=f"scprospatial {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parents = {"common": _common_parser(), "format": _spatial_format_parser(),
               "spatialdata": _spatialdata_out_parser()}
    for name, (handler, help_text, example, add_args, extra) in SUBCOMMANDS.items():
        p = sub.add_parser(
            name, help=help_text, description=help_text,
            parents=[parents["common"], *(parents[e] for e in extra)],
            formatter_class=argparse.RawDescriptionHelpFormatter,
            epilog="example:\n" + textwrap.indent(example, "  "),
        )
        add_args(p)
        p.set_defaults(handler=handler)
    return parser


# ----------------------------------------------------------------------------------------------
# Output locations of each command: checked before it starts, rolled back when it fails.


def _output_plan(args) -> tuple[list, list, list, bool]:
    """(output files, output folders, inputs, roll back on failure) of one command."""
    c = args.command
    if c == "prepare":
        from .io import prepared_paths

        return prepared_paths(args.inputs, args.outdir, args.dataset), [args.outdir], args.inputs, True
    if c == "train":
        out = Path(args.outdir)
        files = [out / "model.pt", out / "metrics.json", out / "training_curves.csv"]
        return files, [out], [*args.inputs, args.init_from, args.ppi], True
    if c in ("impute", "spatial-graph"):
        return [args.out], [], [args.input, getattr(args, "model", None)], True
    if c == "map":
        from .spatial import rna_output_path

        return [args.out, rna_output_path(args.out)], [], [args.model, args.rna, args.spatial], True
    if c == "spatial-stats":
        from .spatial import stats_path

        return [stats_path(args.input, args.out)], [args.out], [args.input], True
    if c == "evaluate":
        return [], [args.outdir], args.inputs, True
    if c == "report":
        for flag, folder in (("RESULTS_DIR", args.results), ("--truth", args.truth)):
            if folder is not None and not Path(folder).is_dir():
                raise InputError("not found" if not Path(folder).exists() else "is not a folder", f"{flag} {folder}")
        args.out = args.out or str(Path(args.results) / "report" / "report.html")
        return [args.out], [], [], True
    if c in ("run", "demo"):  # resumable: finished steps stay; `run` locks the folder instead
        return [], [args.outdir], [getattr(args, "samplesheet", None), getattr(args, "model", None)], False
    if c == "simulate":
        return [], [args.outdir], [], True
    return [], [], [], False


_USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG,
                errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.ENOENT}


def _one_line(text: object) -> str:
    return re.sub(r"\s*\n\s*", " ", str(text)).strip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on usage errors
    configure(-1 if args.quiet else args.verbose)
    try:
        guard: contextlib.AbstractContextManager = contextlib.nullcontext()
        if args.command != "versions":  # versions.yml of a pipeline task: no torch import, no thread pools
            from ._settings import set_threads
            from .io import Rollback, check_outputs

            set_threads(args.threads)
            files, folders, inputs, undo = _output_plan(args)
            check_outputs(files, folders, inputs)
            if undo:  # a training checkpoint stays for --resume
                guard = Rollback([*files, *folders], keep=("checkpoint.pt",) if args.command == "train" else ())
        with guard:
            args.handler(args)
    except InputError as exc:
        logger.error("%s", _one_line(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        logger.error("interrupted")
        return 130
    except OSError as exc:  # the file system refused (read-only, full, permissions): the user's to fix
        if exc.errno not in _USER_ERRNOS:
            return _internal(exc)
        where = exc.filename if exc.filename is not None else ""
        logger.error("%s", _one_line(f"{where}: {exc.strerror}" if where else f"{exc.strerror or exc}"))
        return 2
    except Exception as exc:  # noqa: BLE001 - an internal error: one line, the traceback with -v
        return _internal(exc)
    return 0


def _internal(exc: BaseException) -> int:
    logger.error("internal error: %s: %s", type(exc).__name__, _one_line(exc),
                 exc_info=logger.isEnabledFor(logging.DEBUG))
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
