"""Faults as a user meets them (issue 13): `kill -9` of `train` in each stage and of `run` in its steps, then
resume, ends where an uninterrupted run with the same seed and threads ends; temporaries of killed writes are
removed by the next successful run; a second `run` on a locked folder is refused naming the holder's pid, a
lock left by a killed run is taken over; `--resume` with another seed or epochs is refused."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from .conftest import run_cli
from .test_nextflow_run import assert_same_results
from .test_outputs import _dead_pid

EPOCHS = "3"
TRAIN = ("--epochs", EPOCHS, "--seed", "0", "--threads", "1", "-q")
RUN = ("--epochs", "2", "--seed", "0", "--threads", "1", "--n-perms", "20", "-q")


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    from scprospatial.simulate import simulate

    out = tmp_path_factory.mktemp("faults") / "sim"
    simulate(out, n_cells=60, n_genes=200, n_cell_types=3, seed=0)
    return out


def _start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "scprospatial", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 300) -> bool:
    """SIGKILL `proc` as soon as ready() holds; False when it finished first."""
    end = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < end:
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.005)  # an epoch of the tiny cohort takes ~0.1 s
    proc.wait()
    return False


def _stage_in_checkpoint(folder: Path) -> tuple[int, int] | None:
    try:
        ck = torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=True)
        return ck["training"]["stage_i"], ck["training"]["epoch"]
    except Exception:  # noqa: BLE001 - absent, or being replaced right now
        return None


def _weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _temporaries(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*.tmp*"))


def test_train_killed_in_each_stage_resumes_to_the_uninterrupted_model(sim, tmp_path, capsys):
    cite = sim / "citeseq.h5ad"
    ref, out = tmp_path / "ref", tmp_path / "out"
    run_cli("train", cite, "--outdir", ref, *TRAIN, check=True)
    for stage_i in range(3):  # pretrain, align, translate: each killed after one of its epochs
        proc = _start("train", cite, "--outdir", out, *TRAIN, *(("--resume",) if stage_i else ()))
        killed = _kill_when(proc, lambda: (_stage_in_checkpoint(out) or (-1, 0)) >= (stage_i, 1))
        assert killed, f"training finished before stage {stage_i} could be interrupted"
        assert not (out / "model.pt").exists()
        if stage_i == 1:  # a checkpoint goes on only with its own seed and epochs: one line, nothing changed
            from scprospatial.cli import main

            before = (out / "checkpoint.pt").read_bytes()
            for flags, said in ((("--seed", "1", "--epochs", EPOCHS), "got --seed 1"),
                                (("--seed", "0", "--epochs", "5"), "asks for 5")):
                capsys.readouterr()
                assert main(["train", str(cite), "--outdir", str(out), "--resume", "--threads", "1", *flags]) == 2
                err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
                assert len(err) == 1 and "checkpoint.pt" in err[0] and said in err[0], err
            assert (out / "checkpoint.pt").read_bytes() == before
    run_cli("train", cite, "--outdir", out, *TRAIN, "--resume", check=True)
    a, b = _weights(ref / "model.pt"), _weights(out / "model.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (out / "checkpoint.pt").exists() and not _temporaries(out)


STEPS = ["prepare:citeseq", "prepare:query", "prepare:spatial", "train:pretrain", "train:align", "train:translate",
         "impute:query", "spatial-graph:spatial", "map:spatial:query", "spatial-stats:spatial__query", "report"]


def _held_by(lock: Path, pid: int) -> bool:
    try:
        return lock.read_text().strip() == str(pid)
    except OSError:
        return False


def _step_running(out: Path, step: str) -> bool:
    stamp = out / "pipeline_info" / "steps" / f"{step.replace(':', '__')}.json"
    try:
        return json.loads(stamp.read_text()).get("status") in ("running", "done")
    except (OSError, ValueError):
        return False


def test_run_killed_in_its_steps_resumes_to_the_uninterrupted_results(sim, tmp_path, capsys):
    from scprospatial.cli import main

    ref, out = tmp_path / "ref", tmp_path / "out"
    bom = sim / "bom_samplesheet.csv"  # as Excel saves it: a byte-order mark before 'id'
    bom.write_bytes(b"\xef\xbb\xbf" + (sim / "samplesheet.csv").read_bytes())
    run_cli("run", "--samplesheet", bom, "--outdir", ref, *RUN, check=True)
    kills = 0
    for i, step in enumerate(STEPS):
        proc = _start("run", "--samplesheet", sim / "samplesheet.csv", "--outdir", out, *RUN)
        lock = out / ".scprospatial.lock"
        if i == 0:  # a second run on the same folder is refused, naming the holder
            assert _wait_for(proc, lambda: _held_by(lock, proc.pid))
            capsys.readouterr()
            code = main(["run", "--samplesheet", str(sim / "samplesheet.csv"), "--outdir", str(out), *RUN])
            err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
            assert code == 2 and len(err) == 1 and f"pid {proc.pid}" in err[0], err
        if not _kill_when(proc, lambda: _held_by(lock, proc.pid) and _step_running(out, step)):
            break
        kills += 1
        assert lock.read_text().strip() == str(proc.pid)  # left by the killed run: stale, taken over next time
    assert kills >= 8, f"only {kills} steps could be interrupted"
    stale = out / "imputed" / f".query.imputed.h5ad.{_dead_pid()}.abcdefgh.tmp.h5ad"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"half-written")
    live = out / "imputed" / f".other.h5ad.{os.getpid()}.abcdefgh.tmp.h5ad"
    live.write_bytes(b"being written by a live process")
    run_cli("run", "--samplesheet", sim / "samplesheet.csv", "--outdir", out, *RUN, check=True)
    assert not stale.exists() and live.exists()
    live.unlink()
    assert not _temporaries(out) and not (out / ".scprospatial.lock").exists()
    assert_same_results(out, ref)


def _wait_for(proc: subprocess.Popen, ready, timeout: float = 120) -> bool:
    """Whether ready() comes to hold while `proc` still runs (it is left running)."""
    end = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < end:
        if ready():
            return True
        time.sleep(0.02)
    return False
