"""Output locations: checked before a command starts, rolled back when it fails, locked while a run writes.

- `check_output` refuses, before any work, an output location that cannot be written (a file where a
  folder is needed or the reverse, a name too long for the file system, a parent that is not a folder or
  not writable) or that would overwrite one of the command's inputs.
- `Rollback` removes what a failed command created under its output locations, so a command that exits
  with an error leaves nothing of its own behind (files that were there before stay).
- `folder_lock` holds an exclusive lock on a results folder (`.scprospatial.lock`, with the holder's pid)
  while `scprospatial run` writes into it; a lock left by a killed process is taken over.
- `remove_stale_temporaries` deletes the temporary files of `atomic_path` whose writer was killed.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from .._logging import logger
from ..errors import InputError

NAME_MAX = 255          # bytes in one file name on Linux file systems
TMP_SLACK = 32          # what atomic_path adds around a name: '.' + name + '.<pid>.<8 chars>.tmp<suffix>'
LOCK_NAME = ".scprospatial.lock"
_TMP = re.compile(r"^\..+?\.(?:(?P<pid>\d+)\.)?[A-Za-z0-9_]{8}\.tmp(\.[^/]*)?$")
_HELD: set[str] = set()  # lock files this process holds (a nested run in `demo` takes the same one)


def _inputs(inputs: Iterable) -> list[Path]:
    out = []
    for item in inputs:
        if item is None:
            continue
        parts = item if isinstance(item, (list, tuple)) else str(item).split(",")
        out += [Path(str(p).strip()) for p in parts if str(p).strip()]
    return out


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def check_output(path: str | os.PathLike, *, folder: bool = False, inputs: Sequence = (),
                 what: str | None = None) -> Path:
    """Raise InputError (naming `path`, or `what` such as '--out') if `path` cannot be this command's output."""
    path = Path(path)
    label = f"{what} {path}" if what else str(path)
    for i, part in enumerate(path.parts):
        limit = NAME_MAX - (TMP_SLACK if i == len(path.parts) - 1 and not folder else 0)
        if len(os.fsencode(part)) > limit:
            raise InputError(f"file name too long for the file system ({len(os.fsencode(part))} bytes; "
                             f"at most {limit})", label)
    if folder and path.exists() and not path.is_dir():
        raise InputError("exists and is not a folder; give a folder for the results", label)
    if not folder and path.is_dir():
        raise InputError("is a folder; give a file name for the output", label)
    anc = path if folder and path.is_dir() else path.parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise InputError(f"cannot create the output: {anc} is not a folder", label)
    if not os.access(anc, os.W_OK | os.X_OK):
        raise InputError(f"cannot write the output: {anc} is not writable", label)
    for inp in _inputs(inputs):
        if _same(path, inp):
            raise InputError(f"would overwrite the input {inp}; choose another output", label)
    return path


def check_outputs(files: Sequence = (), folders: Sequence = (), inputs: Sequence = ()) -> None:
    """`check_output` on every output file and folder of one command, before any work starts."""
    for f in folders:
        check_output(f, folder=True, inputs=inputs)
    for f in files:
        check_output(f, inputs=inputs)


class Rollback:
    """On failure, remove what was created in `roots` (output files or folders) since entering.

    A folder is looked at one level deep (a folder the command created inside it goes whole), so an
    output folder such as '.' costs nothing to watch. `keep`: file names never removed (a training
    checkpoint, which `--resume` continues from).
    """

    def __init__(self, roots: Sequence, keep: Sequence[str] = ()):
        self.roots = [Path(r).absolute() for r in roots]
        self.keep = set(keep)
        self.before: set[Path] = set()
        self.tops: list[Path] = []

    def __enter__(self) -> Rollback:
        for root in self.roots:
            top = root
            while not top.exists() and top != top.parent:
                top = top.parent
            self.tops.append(top)
            self.before.add(top)
            if root.is_dir():
                self.before.update(root.iterdir())
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.undo()

    def undo(self) -> None:
        emptied = []
        for root, top in zip(self.roots, self.tops):
            found = list(root.iterdir()) if root.is_dir() else [root] if root.exists() else []
            for p in found:
                if p in self.before or p.name in self.keep:
                    continue
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
            folder = root if root.is_dir() else root.parent
            while folder != top and top in folder.parents:  # folders made for the output on the way down
                emptied.append(folder)
                folder = folder.parent
        for d in sorted(set(emptied), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                d.rmdir()  # only when empty: a kept checkpoint keeps its folder


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(fd: int) -> int:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 64).decode(errors="replace").strip()
    return int(text) if text.isdigit() else 0


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, flag: str = "--outdir") -> Iterator[Path]:
    """Hold `folder/.scprospatial.lock` exclusively (flock) with this pid in it; InputError naming the holder's
    pid if another process holds it. A lock file left by a killed process is not locked: it is taken over."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    key = str(path.resolve())
    if key in _HELD:
        yield path
        return
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN) or _alive(holder):
                os.close(fd)
                raise InputError(f"is in use by another scprospatial run (pid {holder or 'unknown'}); wait for it "
                                 f"to finish or give another {flag}", folder) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file between our open and our lock: take the new one
    previous = _read_pid(fd)
    if previous and previous != os.getpid():
        logger.warning("%s: taking over the lock of pid %d, which is no longer running", folder, previous)
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"{os.getpid()}\n".encode())
    _HELD.add(key)
    try:
        yield path
    finally:
        _HELD.discard(key)
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


def remove_stale_temporaries(folder: str | os.PathLike, *, recursive: bool = True, name: str | None = None) -> int:
    """Delete temporary files of `atomic_path` whose writing process is gone (killed mid-write); returns the count.

    name: only the temporaries of that output file. A temporary without a pid (older versions) is removed
    only while this process holds the folder's run lock."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    locked = any(str((p / LOCK_NAME).resolve()) in _HELD for p in (folder, *folder.parents))
    found = folder.rglob(".*.tmp*") if recursive else folder.glob(f".{glob.escape(name)}.*.tmp*" if name else ".*.tmp*")
    removed = 0
    for p in list(found):
        m = _TMP.match(p.name)
        if m is None or (name is not None and not p.name.startswith(f".{name}.")):
            continue
        pid = int(m["pid"]) if m["pid"] else None
        if pid == os.getpid() or (pid is not None and _alive(pid)) or (pid is None and not locked):
            continue
        with contextlib.suppress(OSError):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            removed += 1
    if removed:
        logger.info("%s: removed %d temporary file(s) left by an interrupted run", folder, removed)
    return removed
