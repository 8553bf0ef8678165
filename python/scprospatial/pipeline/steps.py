"""Steps of the single-machine runner and their up-to-date checks.

A step is complete when all its outputs exist, are newer than its inputs, and its stamp records the
same parameters. A re-run after a crash therefore continues at the first incomplete step. A step that
keeps partial work of its own (training checkpoints) continues it only when that work was started with
the same parameters and inputs; otherwise its `on_stale` hook discards it first.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .._logging import logger
from ..io import write_text


@dataclass
class Step:
    name: str                      # unique, e.g. "prepare:malt"
    action: Callable[[], object]   # does the work; writes `outputs` atomically
    inputs: list[Path] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    on_stale: Callable[[], object] | None = None   # discards partial work left by a run with other parameters

    def stamp_path(self, info_dir: Path) -> Path:
        safe = self.name.replace(":", "__").replace("/", "_")
        return info_dir / "steps" / f"{safe}.json"

    def fingerprint(self) -> str:
        payload = json.dumps({"params": self.params, "inputs": [str(p) for p in self.inputs]},
                             sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def recorded(self, info_dir: Path) -> dict:
        """The step's stamp ({} when none or unreadable): status 'running' or 'done', fingerprint, params."""
        try:
            return json.loads(self.stamp_path(info_dir).read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def up_to_date(self, info_dir: Path) -> bool:
        if not all(p.exists() for p in self.outputs):
            return False
        recorded = self.recorded(info_dir)
        if recorded.get("status", "done") != "done" or recorded.get("fingerprint") != self.fingerprint():
            return False
        newest_input = max((_mtime(p) for p in self.inputs), default=0.0)
        oldest_output = min((_mtime(p) for p in self.outputs), default=0.0)
        return newest_input <= oldest_output


def _mtime(path: Path) -> float:
    """Modification time; for a folder, its newest file."""
    if path.is_dir():
        times = [f.stat().st_mtime for f in path.rglob("*") if f.is_file()]
        return max(times, default=path.stat().st_mtime)
    return path.stat().st_mtime


def _partial_is_current(step: Step, info_dir: Path) -> bool:
    """Whether work the step left behind was started with its current parameters, after its inputs last changed."""
    stamp = step.stamp_path(info_dir)
    if step.recorded(info_dir).get("fingerprint") != step.fingerprint():
        return False
    return max((_mtime(p) for p in step.inputs), default=0.0) <= stamp.stat().st_mtime


def _stamp(step: Step, info_dir: Path, **fields) -> None:
    stamp = step.stamp_path(info_dir)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    write_text(json.dumps({"step": step.name, "fingerprint": step.fingerprint(), "params": step.params, **fields},
                          indent=2, default=str), stamp)


def run_steps(steps: list[Step], info_dir: Path, *, force: bool = False) -> list[dict]:
    """Run steps in order, skipping complete ones; record a trace under `info_dir`."""
    info_dir.mkdir(parents=True, exist_ok=True)
    trace = []
    for i, step in enumerate(steps, start=1):
        prefix = f"[{i}/{len(steps)}] {step.name}"
        if not force and step.up_to_date(info_dir):
            logger.info("%s: up to date, skipped", prefix)
            trace.append({"step": step.name, "status": "cached", "seconds": 0.0})
            continue
        logger.info("%s: running", prefix)
        if step.on_stale is not None and (force or not _partial_is_current(step, info_dir)):
            step.on_stale()
        _stamp(step, info_dir, status="running")
        start = time.perf_counter()
        step.action()
        seconds = time.perf_counter() - start
        missing = [str(p) for p in step.outputs if not p.exists()]
        if missing:
            raise RuntimeError(f"step {step.name} finished without writing {', '.join(missing)}")
        _stamp(step, info_dir, status="done", seconds=round(seconds, 3),
               finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
        logger.info("%s: done in %.1f s", prefix, seconds)
        trace.append({"step": step.name, "status": "completed", "seconds": round(seconds, 3)})
    lines = ["step\tstatus\tseconds"] + [f"{t['step']}\t{t['status']}\t{t['seconds']}" for t in trace]
    write_text("\n".join(lines) + "\n", info_dir / "trace.tsv")
    return trace
