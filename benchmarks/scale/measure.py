"""Measuring one step: wall time and peak memory of a fresh subprocess, and growth fits on log-log axes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# A small launcher that spawns the command and reports its rusage. The measuring process cannot spawn the command
# itself: Linux carries the parent's peak RSS over fork and exec into the child's ru_maxrss, so a child of a large
# process (pytest, a benchmark holding data) would report at least the parent's peak. The launcher starts small
# (python -S, a few MB), so its child's peak is the command's own.
_LAUNCHER = """
import json, os, sys
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as fh:
    json.dump({"maxrss_kb": usage.ru_maxrss, "cpu": usage.ru_utime + usage.ru_stime}, fh)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(cmd: Sequence[str], log: Path, *, env: dict | None = None) -> dict:
    """Run `cmd` in a fresh process (output to `log`); its wall seconds, CPU seconds and peak RSS.

    Peak RSS comes from wait4's rusage of that one process (its largest resident set, and that of any process
    it waited for), taken by a small launcher so none of this process's memory is counted; it counts numpy,
    torch and C++ allocations alike. Raises RuntimeError naming the log when the command fails.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    usage_file = log.with_name(log.name + ".rusage.json")
    usage_file.unlink(missing_ok=True)
    with log.open("w") as fh:
        fh.write("$ " + " ".join(map(str, cmd)) + "\n")
        fh.flush()
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, str(usage_file), *map(str, cmd)],
                              stdout=fh, stderr=subprocess.STDOUT, env=env)
        seconds = time.perf_counter() - start
    if proc.returncode != 0 or not usage_file.is_file():
        raise RuntimeError(f"exit {proc.returncode}: {' '.join(map(str, cmd))} (log: {log})")
    usage = json.loads(usage_file.read_text())
    usage_file.unlink()
    return {"seconds": round(seconds, 3), "peak_rss_mb": round(usage["maxrss_kb"] / 1024, 1),
            "cpu_seconds": round(usage["cpu"], 2),
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}


def fit_growth(sizes: Sequence[float], values: Sequence[float]) -> dict | None:
    """Least-squares fit of log(value) = a + b log(size): the exponent b (1 = linear) and the constant.

    Also the exponent between the two largest sizes, the figure the atlas-scale bar is about.
    None with fewer than two positive points.
    """
    pts = sorted((float(n), float(v)) for n, v in zip(sizes, values) if n > 0 and v and v > 0)
    if len(pts) < 2:
        return None
    x, y = np.log10([p[0] for p in pts]), np.log10([p[1] for p in pts])
    slope, intercept = np.polyfit(x, y, 1)
    last = (y[-1] - y[-2]) / (x[-1] - x[-2])
    return {"exponent": round(float(slope), 3), "log10_const": float(intercept),
            "exponent_last": round(float(last), 3), "sizes": [p[0] for p in pts]}


def project(values: dict[float, float], size: float) -> float | None:
    """Value at `size` from the two largest measured sizes: the power law through them when it grows at
    least linearly; otherwise a fixed part plus a linear part through them (a sub-linear power law would
    let the fixed start-up cost, which stops mattering, pull the projection down). None with < 2 points."""
    pts = sorted((n, v) for n, v in values.items() if v is not None and v > 0)
    if len(pts) < 2:
        return None
    (n1, v1), (n2, v2) = pts[-2], pts[-1]
    exponent = np.log(v2 / v1) / np.log(n2 / n1)
    if exponent >= 1:
        return float(v2 * (size / n2) ** exponent)
    return float(v2 + max(v2 - v1, 0.0) / (n2 - n1) * (size - n2))
