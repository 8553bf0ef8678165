"""nextflow_schema.json against conf/pipeline.config (the params of nextflow.config), and the samplesheet schema
against what the pipeline reads.

nf-schema validates the parameters with these files when Nextflow starts; Nextflow cannot run here, so
the same JSON Schemas are checked with a JSON Schema validator (draft 2020-12, as nf-schema uses).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from scprospatial.pipeline.samplesheet import OPTIONAL_COLUMNS

REPO = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((REPO / "nextflow_schema.json").read_text())
SHEET_SCHEMA = json.loads((REPO / "assets" / "schema_input.json").read_text())


def config_params(path: Path) -> dict:
    """name -> value of the `params { ... }` block of a Nextflow config (literals only, as those files use)."""
    block = re.search(r"^params\s*\{(.*?)^\}", path.read_text(), flags=re.S | re.M)
    assert block, f"{path}: no params block"
    out = {}
    for line in block.group(1).splitlines():
        line = re.sub(r"\s//.*$", "", line).strip()
        if not line:
            continue
        name, value = (part.strip() for part in line.split("=", 1))
        if value == "null":
            out[name] = None
        elif value in ("true", "false"):
            out[name] = value == "true"
        elif re.fullmatch(r"-?\d+", value):
            out[name] = int(value)
        else:
            assert value[0] in "'\"" and value[-1] == value[0], f"{path}: unparsed value {value!r} of {name}"
            out[name] = value[1:-1]
    return out


def schema_params() -> dict:
    return {k: v for group in SCHEMA["$defs"].values() for k, v in group["properties"].items()}


def validate(params: dict) -> list[str]:
    """Errors nf-schema would report: unset (null) parameters are not validated, as in nf-schema."""
    given = {k: v for k, v in params.items() if v is not None}
    return [e.message for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(given)]


DEFAULTS = config_params(REPO / "conf" / "pipeline.config")


def test_schema_is_a_valid_draft_2020_12_schema():
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    refs = {r["$ref"].split("/")[-1] for r in SCHEMA["allOf"]}
    assert refs == set(SCHEMA["$defs"]), "every group of parameters is used"


def test_every_config_param_is_described_and_vice_versa():
    described = schema_params()
    assert set(DEFAULTS) == set(described)
    for name, spec in described.items():
        assert spec.get("description"), f"{name} has no description"
        if "default" in spec or DEFAULTS[name] is not None:
            assert spec.get("default") == DEFAULTS[name], f"{name}: schema default differs from conf/pipeline.config"


def test_config_defaults_and_test_profile_validate():
    assert validate({**DEFAULTS, "input": "samplesheet.csv"}) == []
    test_profile = config_params(REPO / "conf" / "test.config")
    assert set(test_profile) <= set(DEFAULTS)
    assert validate({**DEFAULTS, **test_profile}) == []


def test_input_is_required():
    assert any("'input' is a required property" in m for m in validate(DEFAULTS))


@pytest.mark.parametrize("name, value", [
    ("seed", "abc"), ("seed", -1), ("epochs", 0), ("epochs", 2.5), ("evaluate", "yes"),
    ("evaluate_split", "bogus"), ("evaluate_seeds", 0), ("publish_dir_mode", "cp"), ("graph_method", "voronoi"),
    ("graph_k", 0), ("map_k", "10"), ("n_perms", 0), ("graph_radius", -1.0), ("input", "sheet.xlsx"),
    ("model", "model.h5ad"),
])
def test_bad_params_fail(name, value):
    errors = validate({**DEFAULTS, "input": "samplesheet.csv", name: value})
    assert errors, f"--{name} {value!r} should fail validation"


def test_input_param_points_at_the_samplesheet_schema():
    spec = schema_params()["input"]
    assert (REPO / spec["schema"]).is_file() and spec["format"] == "file-path" and spec["exists"] is True


# ------------------------------------------------------------------ samplesheet schema


def _sheet_errors(rows: list[dict]) -> list[str]:
    validator = jsonschema.Draft202012Validator(SHEET_SCHEMA)
    return [e.schema.get("errorMessage", e.message) for e in validator.iter_errors(rows)]


@pytest.mark.parametrize("row, message", [
    ({"id": "a", "path": "a.h5ad"}, "'kind' is a required property"),
    ({"id": "a", "kind": "rna"}, "'path' is a required property"),
    ({"id": "a", "kind": "proteome", "path": "a.h5ad"}, "kind must be one of citeseq, rna, spatial"),
    ({"id": "a b", "kind": "rna", "path": "a.h5ad"}, "id must be letters"),
    ({"id": "a", "kind": "rna", "path": ""}, "path must name a file or folder"),
    ({"id": "a", "kind": "rna", "path": "a.h5ad", "colour": "red"}, "'colour' was unexpected"),
])
def test_samplesheet_schema_errors_are_clear(row, message):
    errors = _sheet_errors([row])
    assert any(message in e for e in errors), errors


def test_samplesheet_schema_declares_unique_ids_and_meta_fields():
    assert SHEET_SCHEMA["uniqueEntries"] == ["id"]   # nf-schema checks it; read_samplesheet does the same
    props = SHEET_SCHEMA["items"]["properties"]
    optional = set(props) - {"id", "kind", "path"}
    assert optional == set(OPTIONAL_COLUMNS), "the runner reads the same optional columns"
    # every column but path goes into meta (main.nf expects rows as [meta, path])
    assert {k for k, v in props.items() if "meta" in v} == set(props) - {"path"}
    # PREPARE turns each optional column into its format override
    prepare = (REPO / "modules" / "local" / "prepare" / "main.nf").read_text()
    options = re.search(r"def options = \[(.*?)\]\n", prepare, flags=re.S).group(1)
    assert set(re.findall(r"(\w+):\s*meta\.", options)) | {"marker_cols"} == optional


def test_modules_config_selects_only_existing_processes():
    names = set()
    for nf in [*REPO.glob("modules/local/*/main.nf"), *REPO.glob("subworkflows/local/*/main.nf")]:
        text = nf.read_text()
        names |= set(re.findall(r"^process (\w+)", text, flags=re.M))
        names |= set(re.findall(r"include \{ \w+ as (\w+)\s*\}", text))
    selectors = re.findall(r"withName: '([^']+)'", (REPO / "conf" / "modules.config").read_text())
    for selector in selectors:
        for name in selector.split("|"):
            assert name in names, f"conf/modules.config selects {name}, which no module or alias defines"


def test_step_options_have_one_default_shared_with_scprospatial_run():
    """graph_method, graph_k, graph_radius, map_k, n_perms: unset in the pipeline, so each task runs the command's
    default, which is StepOptions' (the runner's); the schema documents the same value."""
    from scprospatial._step_options import DEFAULTS as STEP

    described = schema_params()
    for name, value in STEP.as_dict().items():
        assert DEFAULTS[name] is None, f"{name}: set in conf/pipeline.config, a second copy of the default"
        if value is not None:
            assert f"(default {value})" in described[name]["description"], name
