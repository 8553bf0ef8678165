"""The command line as a user runs it (subprocess): help, usage errors, exit codes."""
from __future__ import annotations

import pytest

from scprospatial.cli import SUBCOMMANDS, build_parser

DESIGN_COMMANDS = ["simulate", "prepare", "train", "impute", "spatial-graph", "evaluate", "run", "demo"]


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
