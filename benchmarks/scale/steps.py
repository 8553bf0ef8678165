"""The measured steps of the atlas-scale benchmark: each one `scprospatial` command on files of N cells.

A step gets a `Ctx` (where the data, the work folder, the model and the 10^4-cell scRNA-seq reference
are) and returns the command to time; `skip` says why a size is left out (None: run it).
"""
from __future__ import annotations

import csv
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SCP = [sys.executable, "-m", "scprospatial"]   # the `scprospatial` command of this interpreter
SPATIAL_CELL_TYPE_COL = "ClusterName"   # the CODEX layout's cell-type column (simulate's default layout)
K = "10"


@dataclass
class Ctx:
    n: int
    data: Path        # the simulated cohort of n query and n imaged cells
    work: Path        # outputs of this size
    model: Path
    reference: Path   # prepared 10^4-cell RNA-only query (fixed-size scRNA-seq side of map_ref)
    proteins: list[str]
    max_map_pairs: float
    max_all_proteins_cells: float

    @property
    def query(self) -> Path:
        return self.work / "prepared" / "query_rna.h5ad"

    @property
    def spatial(self) -> Path:
        return self.work / "prepared" / "spatial.h5ad"

    def out(self, name: str) -> Path:
        return self.work / name


@dataclass
class ScaleStep:
    name: str
    label: str                                   # README row
    command: Callable[[Ctx], list]
    skip: Callable[[Ctx], str | None] = lambda ctx: None
    cleanup: Callable[[Ctx], None] = lambda ctx: None   # drop outputs no later step reads (disk)


def _unlink(*names: str) -> Callable[[Ctx], None]:
    def cleanup(ctx: Ctx) -> None:
        for name in names:
            path = ctx.out(name)
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    return cleanup


def _quadratic(ctx: Ctx) -> str | None:
    pairs = float(ctx.n) ** 2
    if pairs > ctx.max_map_pairs:
        return f"{ctx.n:.0e} x {ctx.n:.0e} = {pairs:.0e} similarity pairs > --max-map-pairs {ctx.max_map_pairs:.0e}"
    return None


def _all_proteins(ctx: Ctx) -> str | None:
    if ctx.n > ctx.max_all_proteins_cells:
        return f"more than --max-all-proteins-cells {ctx.max_all_proteins_cells:.0e}"
    return None


def samplesheet(ctx: Ctx) -> Path:
    """The simulated cohort's RNA-only and spatial rows (the model is given, so no CITE-seq row)."""
    path = ctx.out("samplesheet.csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "kind", "path", "batch", "cell_type_col"])
        w.writerow(["query", "rna", ctx.data / "query_rna.h5ad", "query", ""])
        w.writerow(["spatial", "spatial", ctx.data / "spatial.csv", "", SPATIAL_CELL_TYPE_COL])
    return path


def _run(ctx: Ctx) -> list:
    shutil.rmtree(ctx.out("run"), ignore_errors=True)  # a fresh run: nothing cached
    return SCP + ["run", "--samplesheet", samplesheet(ctx), "--outdir", ctx.out("run"), "--model", ctx.model]


def _impute(ctx: Ctx, out: str, *which) -> list:
    return SCP + ["impute", "--model", ctx.model, ctx.query, "--out", ctx.out(out), *which]


STEPS: tuple[ScaleStep, ...] = (
    ScaleStep("prepare_rna", "read + prepare the RNA-only query (`prepare --kind rna`)",
              lambda c: SCP + ["prepare", c.data / "query_rna.h5ad", "--outdir", c.work / "prepared", "--kind", "rna"]),
    ScaleStep("impute_300", "impute 300 proteins (`impute --proteins <300>`)",
              lambda c: _impute(c, "impute_300.h5ad", "--proteins", ",".join(c.proteins)),
              cleanup=_unlink("impute_300.h5ad")),
    ScaleStep("impute_all", "impute every predictable protein (`impute --all-proteins`)",
              lambda c: _impute(c, "impute_all.h5ad", "--all-proteins"), skip=_all_proteins,
              cleanup=_unlink("impute_all.h5ad")),
    ScaleStep("prepare_spatial", "read + prepare the imaged cell table (`prepare --kind spatial`)",
              lambda c: SCP + ["prepare", c.data / "spatial.csv", "--outdir", c.work / "prepared", "--kind", "spatial",
                               "--cell-type-col", SPATIAL_CELL_TYPE_COL]),
    ScaleStep("spatial_graph", "spatial kNN graph, k = 10 (`spatial-graph`)",
              lambda c: SCP + ["spatial-graph", c.spatial, "--out", c.out("graph.h5ad"), "--method", "knn", "--k", K]),
    ScaleStep("map_ref", "map N imaged cells x 10^4 scRNA-seq cells (`map`)",
              lambda c: SCP + ["map", "--model", c.model, "--rna", c.reference, "--spatial", c.out("graph.h5ad"),
                               "--out", c.out("mapped_ref.h5ad"), "--k", K]),
    ScaleStep("map_full", "map N imaged cells x N scRNA-seq cells (`map`)",
              lambda c: SCP + ["map", "--model", c.model, "--rna", c.query, "--spatial", c.out("graph.h5ad"),
                               "--out", c.out("mapped.h5ad"), "--k", K],
              skip=_quadratic, cleanup=_unlink("mapped.h5ad", "mapped.rna.h5ad")),
    ScaleStep("spatial_stats", "spatial statistics of the measured markers, 1,000 permutations (`spatial-stats`)",
              lambda c: SCP + ["spatial-stats", c.out("graph.h5ad"), "--out", c.out("stats")]),
    ScaleStep("run", "runner end to end: N query + N imaged cells, model given (`run`)", _run, skip=_quadratic,
              cleanup=_unlink("run")),
)
