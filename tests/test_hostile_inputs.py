"""Hostile inputs across every subcommand: exit 2, one stderr line naming the file or flag, no traceback,
nothing left in the output location, inputs untouched (issue 13).

Most cases call `scprospatial.cli.main` in-process (a subprocess costs seconds of imports); a subset
runs again as a real subprocess, which also sees warnings and crashes the in-process call cannot.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from ._hostile_fixtures import build, tree_digest
from .conftest import run_cli

# (id, arguments with {placeholders}, expected exit code). {out}: a fresh location in an empty folder.
LOCATION = [  # output locations that cannot be written, or would overwrite an input
    ("prepare-outdir-is-file", "prepare {csv} --outdir {afile}"),
    ("prepare-outdir-under-file", "prepare {csv} --outdir {afile}/sub"),
    ("prepare-dataset-too-long", "prepare {csv} --dataset {long} --outdir {out}"),
    ("prepare-outdir-too-long", "prepare {csv} --outdir {out}/{long}/x"),
    ("prepare-over-raw-input", "prepare {rna} --outdir {simdir}"),
    ("prepare-over-prepared-input", "prepare {psp} --outdir {prepdir}"),
    ("train-outdir-is-file", "train {cite} --outdir {afile} --epochs 1"),
    ("train-outdir-under-file", "train {cite} --outdir {afile}/sub --epochs 1"),
    ("train-outdir-too-long", "train {cite} --outdir {out}/{long} --epochs 1"),
    ("train-init-from-is-output", "train {cite} --outdir {modeldir} --stages translate --init-from {model}"),
    ("impute-out-is-dir", "impute {prna} --model {model} --out {adir}"),
    ("impute-out-under-file", "impute {prna} --model {model} --out {afile}/x.h5ad"),
    ("impute-out-too-long", "impute {prna} --model {model} --out {out}/{long}"),
    ("impute-out-is-input", "impute {prna} --model {model} --out {prna}"),
    ("impute-out-is-model", "impute {prna} --model {model} --out {model}"),
    ("graph-out-is-dir", "spatial-graph {csv} --out {adir}"),
    ("graph-out-under-file", "spatial-graph {csv} --out {afile}/g.h5ad"),
    ("graph-out-too-long", "spatial-graph {csv} --out {out}/{long}"),
    ("graph-out-is-input-csv", "spatial-graph {csv} --out {csv}"),
    ("graph-out-is-input-h5ad", "spatial-graph {psp} --out {psp}"),
    ("map-out-is-dir", "map --model {model} --rna {prna} --spatial {psp} --out {adir}"),
    ("map-out-under-file", "map --model {model} --rna {prna} --spatial {psp} --out {afile}/m.h5ad"),
    ("map-out-too-long", "map --model {model} --rna {prna} --spatial {psp} --out {out}/{long}"),
    ("map-out-is-spatial-input", "map --model {model} --rna {prna} --spatial {psp} --out {psp}"),
    ("map-out-is-rna-input", "map --model {model} --rna {prna} --spatial {psp} --out {prna}"),
    ("stats-out-is-file", "spatial-stats {graph} --out {afile}"),
    ("stats-out-under-file", "spatial-stats {graph} --out {afile}/s"),
    ("stats-out-too-long", "spatial-stats {graph} --out {out}/{long}"),
    ("evaluate-outdir-is-file", "evaluate {cite} --outdir {afile} --n-seeds 1"),
    ("evaluate-outdir-under-file", "evaluate {cite} --outdir {afile}/e --n-seeds 1"),
    ("evaluate-outdir-too-long", "evaluate {cite} --outdir {out}/{long} --n-seeds 1"),
    ("run-outdir-is-file", "run --samplesheet {sheet} --outdir {afile}"),
    ("run-outdir-under-file", "run --samplesheet {sheet} --outdir {afile}/r"),
    ("run-outdir-too-long", "run --samplesheet {sheet} --outdir {out}/{long}"),
    ("report-out-is-dir", "report {adir} --out {adir}"),
    ("report-out-under-file", "report {adir} --out {afile}/r.html"),
    ("report-out-too-long", "report {adir} --out {out}/{long}"),
    ("demo-outdir-is-file", "demo --outdir {afile}"),
    ("demo-outdir-under-file", "demo --outdir {afile}/d"),
    ("simulate-outdir-is-file", "simulate --outdir {afile}"),
    ("simulate-outdir-under-file", "simulate --outdir {afile}/s"),
    ("simulate-outdir-too-long", "simulate --outdir {out}/{long}"),
]

READERS = ["noise_h5ad", "noise_csv", "noise_h5mu", "noise_h5", "noise_parquet", "noise_tsv", "noise_pt",
           "empty_h5ad", "empty_csv", "empty_h5mu", "empty_h5", "empty_parquet", "empty_tsv", "trunc_h5ad",
           "t_header_only", "t_no_coords", "t_nan_coord", "t_text_coord", "t_stray_text", "t_dup_header",
           "t_ragged", "t_only_text", "t_one_column", "t_markers_missing", "t_inf_coord", "t_nul", "t_latin1",
           "t_commas", "t_trunc_gz", "zero_cells", "tenx_empty", "tenx_bad", "missing", "adir"]
CONTENT = [(f"prepare-{r}", f"prepare {{{r}}} --outdir {{out}}") for r in READERS]
CONTENT += [(f"graph-{r}", f"spatial-graph {{{r}}} --out {{out}}.h5ad") for r in READERS[::3]]
CONTENT += [
    ("prepare-second-input-bad", "prepare {csv} {noise_csv} --outdir {out}"),
    ("prepare-same-dataset-twice", "prepare {csv} {csv} --outdir {out}"),
    ("prepare-dataset-for-two", "prepare {csv} {rna} --dataset d --outdir {out}"),
    ("prepare-dataset-slash", "prepare {csv} --dataset a/b --outdir {out}"),
    ("prepare-dataset-dotdot", "prepare {csv} --dataset .. --outdir {out}"),
    ("prepare-kind-citeseq-on-rna", "prepare {rna} --kind citeseq --outdir {out}"),
    ("prepare-kind-spatial-on-rna", "prepare {rna} --kind spatial --outdir {out}"),
    ("prepare-pair-with-table", "prepare {cite},{csv} --outdir {out}"),
    ("prepare-three-way-pair", "prepare {cite},{rna},{cite} --outdir {out}"),
    ("prepare-pair-missing", "prepare {cite},{missing} --outdir {out}"),
    ("prepare-x-col-missing", "prepare {csv} --x-col NOPE --y-col Y --outdir {out}"),
    ("prepare-marker-missing", "prepare {csv} --marker-cols NOPE1,NOPE2 --outdir {out}"),
    ("prepare-marker-not-numeric", "prepare {csv} --marker-cols ClusterName --outdir {out}"),
    ("prepare-id-col-missing", "prepare {csv} --id-col NOPE --outdir {out}"),
    ("prepare-cell-type-missing", "prepare {csv} --cell-type-col NOPE --outdir {out}"),
    ("prepare-z-col-missing", "prepare {csv} --z-col NOPE --outdir {out}"),
    ("prepare-cofactor-negative", "prepare {csv} --cofactor -1 --outdir {out}"),
    ("prepare-cofactor-text", "prepare {csv} --cofactor abc --outdir {out}"),
    ("prepare-protein-key-missing", "prepare {cite} --protein-key NOPE --outdir {out}"),
    ("prepare-unknown-kind", "prepare {csv} --kind protein --outdir {out}"),
    ("prepare-threads-0", "prepare {csv} --outdir {out} --threads 0"),
    ("prepare-threads-negative", "prepare {csv} --outdir {out} --threads -3"),
    ("prepare-seed-negative", "prepare {csv} --outdir {out} --seed -1"),
    ("prepare-seed-text", "prepare {csv} --outdir {out} --seed abc"),
    ("prepare-device-tpu", "prepare {csv} --outdir {out} --device tpu"),
    ("prepare-no-input", "prepare --outdir {out}"),
    ("graph-k-0", "spatial-graph {csv} --out {out}.h5ad --k 0"),
    ("graph-k-negative", "spatial-graph {csv} --out {out}.h5ad --k -1"),
    ("graph-radius-negative", "spatial-graph {csv} --out {out}.h5ad --method radius --radius -1"),
    ("graph-radius-text", "spatial-graph {csv} --out {out}.h5ad --radius far"),
    ("graph-library-missing", "spatial-graph {csv} --out {out}.h5ad --library-key NOPE"),
    ("graph-rna-input", "spatial-graph {prna} --out {out}.h5ad"),
    ("graph-method-bogus", "spatial-graph {csv} --out {out}.h5ad --method voronoi"),
    ("train-missing", "train {missing} --outdir {out} --epochs 1"),
    ("train-noise", "train {noise_h5ad} --outdir {out} --epochs 1"),
    ("train-spatial", "train {psp} --outdir {out} --epochs 1"),
    ("train-spatial-table", "train {csv} --outdir {out} --epochs 1"),
    ("train-one-cell", "train {one_cell} --outdir {out} --epochs 1"),
    ("train-four-cells", "train {four_cells} --outdir {out} --epochs 1"),
    ("train-rna-only", "train {prna} --outdir {out} --epochs 1"),
    ("train-nan-prepared", "train {nan_prep} --outdir {out} --epochs 1"),
    ("train-stages-bogus", "train {cite} --outdir {out} --stages pretrain,fly --epochs 1"),
    ("train-stages-empty", "train {cite} --outdir {out} --stages , --epochs 1"),
    ("train-epochs-0", "train {cite} --outdir {out} --epochs 0"),
    ("train-epochs-text", "train {cite} --outdir {out} --epochs many"),
    ("train-init-noise", "train {cite} --outdir {out} --stages align --init-from {noise_pt} --epochs 1"),
    ("train-init-truncated", "train {cite} --outdir {out} --stages align --init-from {trunc_pt} --epochs 1"),
    ("train-init-h5ad", "train {cite} --outdir {out} --stages align --init-from {h5ad_pt} --epochs 1"),
    ("train-init-missing", "train {cite} --outdir {out} --stages align --init-from {missing} --epochs 1"),
    ("train-init-finished", "train {cite} --outdir {out} --stages align --init-from {model} --epochs 1"),
    ("train-ppi-missing", "train {cite} --outdir {out} --ppi {missing} --epochs 1"),
    ("train-ppi-noise", "train {cite} --outdir {out} --ppi {noise_tsv} --epochs 1"),
    ("impute-model-missing", "impute {prna} --model {missing} --out {out}.h5ad"),
    ("impute-model-noise", "impute {prna} --model {noise_pt} --out {out}.h5ad"),
    ("impute-model-empty", "impute {prna} --model {empty_pt} --out {out}.h5ad"),
    ("impute-model-truncated", "impute {prna} --model {trunc_pt} --out {out}.h5ad"),
    ("impute-model-is-h5ad", "impute {prna} --model {h5ad_pt} --out {out}.h5ad"),
    ("impute-model-dir-without-model", "impute {prna} --model {adir} --out {out}.h5ad"),
    ("impute-input-missing", "impute {missing} --model {model} --out {out}.h5ad"),
    ("impute-input-noise", "impute {noise_h5ad} --model {model} --out {out}.h5ad"),
    ("impute-input-truncated", "impute {trunc_h5ad} --model {model} --out {out}.h5ad"),
    ("impute-input-spatial", "impute {psp} --model {model} --out {out}.h5ad"),
    ("impute-input-table", "impute {csv} --model {model} --out {out}.h5ad"),
    ("impute-no-shared-genes", "impute {no_genes} --model {model} --out {out}.h5ad"),
    ("impute-nan-prepared", "impute {nan_prep} --model {model} --out {out}.h5ad"),
    ("impute-unknown-proteins", "impute {prna} --model {model} --out {out}.h5ad --proteins NOPE1,NOPE2"),
    ("impute-empty-proteins", "impute {prna} --model {model} --out {out}.h5ad --proteins ,"),
    ("impute-batch-0", "impute {prna} --model {model} --out {out}.h5ad --batch-size 0"),
    ("impute-both-protein-flags", "impute {prna} --model {model} --out {out}.h5ad --proteins CD3 --all-proteins"),
    ("map-model-noise", "map --model {noise_pt} --rna {prna} --spatial {psp} --out {out}.h5ad"),
    ("map-model-truncated", "map --model {trunc_pt} --rna {prna} --spatial {psp} --out {out}.h5ad"),
    ("map-model-h5ad", "map --model {h5ad_pt} --rna {prna} --spatial {psp} --out {out}.h5ad"),
    ("map-rna-missing", "map --model {model} --rna {missing} --spatial {psp} --out {out}.h5ad"),
    ("map-spatial-missing", "map --model {model} --rna {prna} --spatial {missing} --out {out}.h5ad"),
    ("map-spatial-noise", "map --model {model} --rna {prna} --spatial {noise_csv} --out {out}.h5ad"),
    ("map-spatial-no-coords", "map --model {model} --rna {prna} --spatial {t_no_coords} --out {out}.h5ad"),
    ("map-swapped", "map --model {model} --rna {psp} --spatial {prna} --out {out}.h5ad"),
    ("map-k-0", "map --model {model} --rna {prna} --spatial {psp} --out {out}.h5ad --k 0"),
    ("map-k-too-large", "map --model {model} --rna {prna} --spatial {psp} --out {out}.h5ad --k 1000"),
    ("map-unknown-proteins", "map --model {model} --rna {prna} --spatial {psp} --out {out}.h5ad --proteins NOPE1"),
    ("map-no-shared-genes", "map --model {model} --rna {no_genes} --spatial {psp} --out {out}.h5ad"),
    ("map-nan-rna", "map --model {model} --rna {nan_prep} --spatial {psp} --out {out}.h5ad"),
    ("stats-input-missing", "spatial-stats {missing} --out {out}"),
    ("stats-input-noise", "spatial-stats {noise_h5ad} --out {out}"),
    ("stats-input-truncated", "spatial-stats {trunc_h5ad} --out {out}"),
    ("stats-input-rna", "spatial-stats {prna} --out {out}"),
    ("stats-cluster-missing", "spatial-stats {graph} --out {out} --cluster-key NOPE"),
    ("stats-unknown-proteins", "spatial-stats {graph} --out {out} --proteins NOPE1,NOPE2 --n-perms 5"),
    ("stats-n-perms-0", "spatial-stats {graph} --out {out} --n-perms 0"),
    ("stats-library-missing", "spatial-stats {graph} --out {out} --library-key NOPE --n-perms 5"),
    ("evaluate-missing", "evaluate {missing} --outdir {out} --n-seeds 1"),
    ("evaluate-one-cell", "evaluate {one_cell} --outdir {out} --n-seeds 1 --epochs 1"),
    ("evaluate-four-cells", "evaluate {four_cells} --outdir {out} --n-seeds 1 --epochs 1"),
    ("evaluate-rna-only", "evaluate {prna} --outdir {out} --n-seeds 1"),
    ("evaluate-spatial", "evaluate {psp} --outdir {out} --n-seeds 1"),
    ("evaluate-noise", "evaluate {noise_h5ad} --outdir {out} --n-seeds 1"),
    ("evaluate-split-bogus", "evaluate {cite} --outdir {out} --split sideways"),
    ("evaluate-seeds-0", "evaluate {cite} --outdir {out} --n-seeds 0"),
    ("evaluate-unknown-method", "evaluate {cite} --outdir {out} --n-seeds 1 --methods nope"),
    ("run-sheet-missing", "run --samplesheet {missing} --outdir {out}"),
    ("run-sheet-is-h5ad", "run --samplesheet {s_h5ad} --outdir {out}"),
    ("run-sheet-is-dir", "run --samplesheet {adir} --outdir {out}"),
    ("run-model-noise", "run --samplesheet {sheet} --outdir {out} --model {noise_pt}"),
    ("run-model-truncated", "run --samplesheet {sheet} --outdir {out} --model {trunc_pt}"),
    ("run-model-h5ad", "run --samplesheet {sheet} --outdir {out} --model {h5ad_pt}"),
    ("run-model-missing", "run --samplesheet {sheet} --outdir {out} --model {missing}"),
    ("run-epochs-0", "run --samplesheet {sheet} --outdir {out} --epochs 0"),
    ("run-graph-k-0", "run --samplesheet {sheet} --outdir {out} --graph-k 0"),
    ("run-map-k-0", "run --samplesheet {sheet} --outdir {out} --map-k 0"),
    ("run-n-perms-0", "run --samplesheet {sheet} --outdir {out} --n-perms 0"),
    ("run-evaluate-seeds-0", "run --samplesheet {sheet} --outdir {out} --evaluate --evaluate-seeds 0"),
    ("run-graph-radius-negative", "run --samplesheet {sheet} --outdir {out} --graph-radius -1"),
    ("run-threads-0", "run --samplesheet {sheet} --outdir {out} --threads 0"),
    ("run-evaluate-without-citeseq", "run --samplesheet {s_no_citeseq} --outdir {out} --model {model} --evaluate"),
    ("report-missing-folder", "report {out}"),
    ("report-file-not-folder", "report {afile}"),
    ("report-truth-missing", "report {adir} --out {out}.html --truth {missing}"),
    ("report-truth-is-file", "report {adir} --out {out}.html --truth {afile}"),
    ("demo-n-cells-0", "demo --outdir {out} --n-cells 0"),
    ("demo-n-cells-negative", "demo --outdir {out} --n-cells -5"),
    ("demo-epochs-0", "demo --outdir {out} --epochs 0"),
    ("demo-seed-negative", "demo --outdir {out} --seed -1"),
    ("demo-threads-0", "demo --outdir {out} --threads 0"),
    ("simulate-n-cells-0", "simulate --outdir {out} --n-cells 0"),
    ("simulate-n-cells-1", "simulate --outdir {out} --n-cells 1"),
    ("simulate-one-cell-type", "simulate --outdir {out} --n-cell-types 1"),
    ("simulate-99-cell-types", "simulate --outdir {out} --n-cell-types 99"),
    ("simulate-n-genes-0", "simulate --outdir {out} --n-genes 0"),
    ("simulate-n-query-0", "simulate --outdir {out} --n-query 0"),
    ("simulate-layout-bogus", "simulate --outdir {out} --spatial-layout merfish"),
    ("simulate-chunk-0", "simulate --outdir {out} --chunk-size 0"),
]
SHEETS = ["s_missing_col", "s_bad_kind", "s_dup_id", "s_missing_file", "s_header_only", "s_empty", "s_rna_pair",
          "s_three_files", "s_bad_id", "s_no_citeseq", "s_latin1", "s_nul", "s_spatial_as_rna"]
CONTENT += [(f"run-{s}", f"run --samplesheet {{{s}}} --outdir {{out}}") for s in SHEETS]
CONTENT += [
    ("run-row-shares-no-gene-with-model", "run --samplesheet {s_no_shared_genes} --outdir {out} --model {model}"),
    ("run-input-inside-its-results", "run --samplesheet {s_input_in_results} --outdir {modeldir}"),
]
CASES = [(name, args, 2) for name, args in LOCATION + CONTENT]
SUBPROCESS = [c for i, c in enumerate(CASES) if i % 10 == 0]  # every 10th case again as a real process


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    paths = build(root)
    paths.update(root=str(root), simdir=str(Path(paths["cite"]).parent), prepdir=str(Path(paths["psp"]).parent),
                 modeldir=str(Path(paths["model"]).parent))
    return root, paths


def _argv(args: str, paths: dict, tmp: Path) -> list[str]:
    return [a.format(out=tmp / "out", **paths) for a in args.split()]


def _check(name, code, expected, err, argv, before, root, tmp):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == expected, f"{name}: exit {code}, stderr: {err[-2000:]}"
    assert "Traceback" not in err, f"{name}: {err[-2000:]}"
    assert len(lines) == 1, f"{name}: {len(lines)} stderr lines: {err[-2000:]}"
    assert "internal error" not in lines[0], lines[0]
    named = [Path(a).name for a in argv if len(Path(a).name) > 2] + [a for a in argv if a.startswith("-") or "/" in a]
    assert any(n[:60] in lines[0] for n in named) or ": error: " in lines[0], f"{name}: names nothing: {lines[0]}"
    assert not list(tmp.iterdir()), f"{name}: left {sorted(p.name for p in tmp.iterdir())}"
    assert tree_digest(root) == before, f"{name}: changed the inputs or wrote beside them"


def _main(argv: list[str]) -> int:
    from scprospatial.cli import main

    try:
        return main(argv)
    except SystemExit as exc:  # argparse
        return exc.code


@pytest.mark.parametrize("name,args,expected", CASES, ids=[c[0] for c in CASES])
def test_hostile_input_in_process(world, tmp_path, capsys, name, args, expected):
    root, paths = world
    before = tree_digest(root)
    argv = _argv(args, paths, tmp_path)
    capsys.readouterr()
    code = _main(argv)
    _check(name, code, expected, capsys.readouterr().err, argv, before, root, tmp_path)


@pytest.mark.parametrize("name,args,expected", SUBPROCESS, ids=[c[0] for c in SUBPROCESS])
def test_hostile_input_as_a_process(world, tmp_path, name, args, expected):
    root, paths = world
    before = tree_digest(root)
    argv = _argv(args, paths, tmp_path)
    proc = run_cli(*argv, timeout=120)
    _check(name, proc.returncode, expected, proc.stderr, argv, before, root, tmp_path)


def test_case_count():
    assert len(CASES) >= 150
