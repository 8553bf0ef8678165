"""Samplesheet validation against assets/schema_input.json: each problem a clear error."""
from __future__ import annotations

import json

import jsonschema
import pytest

from scprospatial.errors import InputError
from scprospatial.pipeline.samplesheet import read_samplesheet, schema_path


def _sheet(tmp_path, text, files=("a.h5ad", "b.csv")):
    for f in files:
        (tmp_path / f).write_text("x")
    p = tmp_path / "samplesheet.csv"
    p.write_text(text)
    return p


def test_schema_is_valid_json_schema():
    schema = json.loads(schema_path().read_text())
    jsonschema.Draft202012Validator.check_schema(schema)


def test_valid_sheet_resolves_relative_paths_and_defaults_batch(tmp_path):
    p = _sheet(tmp_path, "id,kind,path,batch,cell_type_col\n"
                         "malt,citeseq,a.h5ad,b1,\ncodex,spatial,b.csv,,ClusterName\n")
    samples = read_samplesheet(p)
    assert [s.id for s in samples] == ["malt", "codex"]
    assert samples[0].paths[0] == (tmp_path / "a.h5ad").resolve() and samples[0].batch == "b1"
    assert samples[1].batch is None and samples[1].read_overrides() == {"cell_type_col": "ClusterName"}


def test_pair_of_files_for_citeseq(tmp_path):
    p = _sheet(tmp_path, "id,kind,path\npair,citeseq,a.h5ad;b.h5ad\n", files=("a.h5ad", "b.h5ad"))
    (s,) = read_samplesheet(p)
    assert len(s.paths) == 2 and s.input.count(",") == 1


@pytest.mark.parametrize("text, message", [
    ("id,path\nx,a.h5ad\n", "missing column(s) kind"),
    ("id,kind,path\nx,proteome,a.h5ad\n", "kind must be one of citeseq, rna, spatial"),
    ("id,kind,path\nx,rna,missing.h5ad\n", "file not found"),
    ("id,kind,path\nx,rna,a.h5ad\nx,spatial,b.csv\n", "duplicate id 'x'"),
    ("id,kind,path\nbad id,rna,a.h5ad\n", "id must be letters"),
    ("id,kind,path,colour\nx,rna,a.h5ad,red\n", "colour"),
    ("id,kind,path\n", "no rows"),
    ("id,kind,path\nx,rna,a.h5ad;b.csv\n", "only a citeseq row may name two files"),
    ("id,kind,path\nx,rna,b.csv\n", "b.csv is a cell table, which only a spatial row can be"),
    ("id,kind,path\nx,citeseq,a.h5ad;b.csv\n", "b.csv is a cell table"),
    ("id,kind,path\nx,citeseq,a.h5ad;gone.h5ad\n", "file not found"),
])
def test_invalid_sheets_name_file_and_problem(tmp_path, text, message):
    p = _sheet(tmp_path, text)
    with pytest.raises(InputError) as exc:
        read_samplesheet(p)
    assert str(p) in str(exc.value) and message in str(exc.value)
