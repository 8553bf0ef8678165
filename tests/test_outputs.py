"""Output locations (scprospatial.io._outputs): roll back a failed command, sweep stale temporaries, lock a
results folder; and a file system that refuses a write mid-command (read-only, full) gives exit 2."""
from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from scprospatial.errors import InputError
from scprospatial.io import Rollback, atomic_path, folder_lock, remove_stale_temporaries, write_text


def test_rollback_removes_only_what_the_failed_command_created(tmp_path):
    old = tmp_path / "out" / "old.csv"
    old.parent.mkdir()
    old.write_text("kept")
    new_file = tmp_path / "deep" / "er" / "x.h5ad"
    with pytest.raises(RuntimeError), Rollback([tmp_path / "out", new_file], keep=("checkpoint.pt",)):
        write_text("new", tmp_path / "out" / "new.csv")
        write_text("kept for --resume", tmp_path / "out" / "checkpoint.pt")
        (tmp_path / "out" / "figures" / "a").mkdir(parents=True)
        write_text("x", new_file)
        raise RuntimeError("failed half-way")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["checkpoint.pt", "old.csv"]
    assert old.read_text() == "kept" and not (tmp_path / "deep").exists()


def test_rollback_keeps_everything_on_success(tmp_path):
    with Rollback([tmp_path / "out"]):
        write_text("x", tmp_path / "out" / "a.csv")
    assert (tmp_path / "out" / "a.csv").exists()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_write_sweeps_the_temporaries_of_killed_writers_of_the_same_file(tmp_path):
    dead, live = _dead_pid(), os.getpid()
    stale = tmp_path / f".a.h5ad.{dead}.abcd1234.tmp.h5ad"
    mine = tmp_path / f".a.h5ad.{live}.abcd1234.tmp.h5ad"   # a write in progress in this process
    other = tmp_path / f".b.h5ad.{dead}.abcd1234.tmp.h5ad"  # another output's: left to its own writer
    legacy = tmp_path / ".a.h5ad.abcd1234.tmp.h5ad"           # no pid: only swept under the run lock
    for p in (stale, mine, other, legacy):
        p.write_bytes(b"half")
    with atomic_path(tmp_path / "a.h5ad") as tmp:
        tmp.write_bytes(b"whole")
    assert not stale.exists() and mine.exists() and other.exists() and legacy.exists()
    assert remove_stale_temporaries(tmp_path) == 1 and not other.exists() and legacy.exists()
    with folder_lock(tmp_path):
        assert remove_stale_temporaries(tmp_path) == 1 and not legacy.exists()
    assert mine.exists() and not (tmp_path / ".scprospatial.lock").exists()


def test_lock_refuses_a_second_holder_and_takes_over_a_dead_ones(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from scprospatial.io import folder_lock\n"
        f"with folder_lock({str(tmp_path)!r}):\n    print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match=f"in use by another scprospatial run \\(pid {holder.pid}\\)"):
            with folder_lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / ".scprospatial.lock").read_text().strip() == str(holder.pid)  # killed: left behind
    with folder_lock(tmp_path) as lock:  # stale: taken over
        assert lock.read_text().strip() == str(os.getpid())


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES, errno.ENOSPC])
def test_a_refused_write_is_one_line_exit_2_and_rolled_back(tmp_path, capsys, monkeypatch, code):
    """Root ignores permissions, so the file system's refusal is simulated at the write."""
    import scprospatial.io._prepare_files as files
    from scprospatial.cli import main
    from scprospatial.simulate import simulate

    sim = simulate(tmp_path / "sim", n_cells=20, n_genes=200, n_cell_types=2, seed=0)
    written = []

    def refuse(adata, path, **_):
        if written:
            raise OSError(code, os.strerror(code), str(path))
        written.append(write_text("first", path))

    monkeypatch.setattr(files, "write_h5ad", refuse)
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["prepare", str(sim["citeseq"]), str(sim["spatial"]), "--outdir", str(out), "-q"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and os.strerror(code) in err[0] and "spatial.h5ad" in err[0], err
    assert not out.exists()
