"""The command line as a user runs it (subprocess): help, usage errors, exit codes."""
from __future__ import annotations

import pytest

from scprospatial.cli import SUBCOMMANDS, build_parser

DESIGN_COMMANDS = ["simulate", "prepare", "train", "impute", "spatial-graph", "map", "spatial-stats", "evaluate",
                   "run", "demo", "report"]


def test_every_design_subcommand_is_registered():
    assert set(DESIGN_COMMANDS) <= set(SUBCOMMANDS)


@pytest.mark.parametrize("command", DESIGN_COMMANDS)
def test_help_has_worked_example_and_common_flags(cli, command):
    proc = cli(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "example:" in proc.stdout and f"scprospatial {command}" in proc.stdout
    for flag in ("--seed", "--threads", "--device"):
        assert flag in proc.stdout


def test_version_and_top_level_help(cli):
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("scprospatial ")
    assert "COMMAND" in cli("--help").stdout


def test_usage_errors_exit_2(cli):
    assert cli("no-such-command").returncode == 2
    assert cli("impute").returncode == 2  # missing --model/--out
    proc = cli("impute", "x.h5ad", "--model", "m.pt", "--out", "o.h5ad", "--device", "tpu")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_missing_samplesheet_is_input_error(cli, tmp_path):
    proc = cli("run", "--samplesheet", str(tmp_path / "nope.csv"), "--outdir", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "nope.csv: samplesheet not found" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_parser_rejects_both_protein_selections():
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["impute", "q.h5ad", "--model", "m.pt", "--out", "o.h5ad",
                                   "--proteins", "CD3", "--all-proteins"])
    assert exc.value.code == 2


def test_prepare_every_real_file_as_a_user_would(cli, shared_data, tmp_path):
    import anndata as ad

    inputs = sorted(str(p) for p in (shared_data / "citeseq").glob("*.h5ad"))
    inputs += [str(shared_data / "citeseq" / "pbmc_10x_v3_1024cells" / "filtered_feature_bc_matrix")]
    inputs += sorted(str(p) for p in (shared_data / "spatial").glob("*.csv"))
    proc = cli("prepare", *inputs, "--outdir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = proc.stdout.split()
    assert len(written) == len(inputs)
    for path in written:
        a = ad.read_h5ad(path, backed="r")
        meta = a.uns["scprospatial"]
        assert meta["normalisation"] and meta["kind"] in ("citeseq", "rna", "spatial")
        assert ("spatial" in a.obsm) == (meta["kind"] == "spatial")
        assert (meta["kind"] == "rna") or a.obsm["protein"].shape[1] > 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_bad_input_exits_2_naming_the_file_and_leaves_no_output(cli, tmp_path):
    bad = tmp_path / "cells.csv"
    bad.write_text("a,b\n1,2\n")
    out = tmp_path / "out"
    proc = cli("prepare", str(bad), "--outdir", str(out), "--kind", "spatial")
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert "cells.csv" in last and "Traceback" not in proc.stderr
    assert not out.exists() or not any(out.iterdir())
