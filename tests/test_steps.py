"""The runner's up-to-date logic: complete steps are skipped, changed ones re-run."""
from __future__ import annotations

import os
import time

from scprospatial.pipeline.steps import Step, run_steps


def _writer(path, calls):
    def action():
        calls.append(path.name)
        path.write_text("done")
    return action


def test_steps_skip_when_complete_and_rerun_when_inputs_or_params_change(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("x")
    out1, out2 = tmp_path / "a.txt", tmp_path / "b.txt"
    calls: list[str] = []
    info = tmp_path / "info"

    def plan(param=1):
        return [Step("a", _writer(out1, calls), inputs=[src], outputs=[out1], params={"p": param}),
                Step("b", _writer(out2, calls), inputs=[out1], outputs=[out2])]

    run_steps(plan(), info)
    assert calls == ["a.txt", "b.txt"]
    trace = run_steps(plan(), info)
    assert calls == ["a.txt", "b.txt"] and {t["status"] for t in trace} == {"cached"}
    run_steps(plan(param=2), info)          # new parameter: a re-runs, b sees a newer input
    assert calls[2:] == ["a.txt", "b.txt"]
    future = time.time() + 5
    os.utime(src, (future, future))         # touched input
    run_steps(plan(param=2), info)
    assert calls[4:] == ["a.txt", "b.txt"]
    assert (info / "trace.tsv").read_text().startswith("step\tstatus\tseconds")


def test_crash_leaves_step_incomplete(tmp_path):
    out = tmp_path / "a.txt"

    def boom():
        raise RuntimeError("crash")

    info = tmp_path / "info"
    try:
        run_steps([Step("a", boom, outputs=[out])], info)
    except RuntimeError:
        pass
    calls: list[str] = []
    run_steps([Step("a", _writer(out, calls), outputs=[out])], info)
    assert calls == ["a.txt"]


def test_atomic_outputs_get_normal_permissions(tmp_path):
    import stat

    from scprospatial.io._write import write_text

    umask = os.umask(0o022)
    try:
        p = write_text("x", tmp_path / "out.txt")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    assert [f.name for f in tmp_path.iterdir()] == ["out.txt"]
