"""The documentation's own checks that `make docs` (sphinx-build -W) cannot make: the key tables cover every key
constant, and the tutorial notebooks are committed without outputs. The build itself runs in `make test`."""
from __future__ import annotations

import ast
import json
import sys

import pytest

from scprospatial import keys

from .conftest import REPO

sys.path.insert(0, str(REPO / "docs" / "_ext"))
keys_table = pytest.importorskip("keys_table", reason="sphinx is in the docs extra: pip install -e '.[docs]'")

NOTEBOOKS = sorted((REPO / "docs" / "tutorials").glob("*.ipynb"))


def test_key_tables_list_every_public_constant_with_its_value():
    source = (REPO / "python" / "scprospatial" / "_constants.py").read_text(encoding="utf-8")
    rows = {name: (value, comment)
            for _, section in keys_table.constant_rows(source) for name, value, comment in section}
    public = {n for n in dir(keys) if n.isupper() and not n.startswith("_")}
    assert set(rows) == public
    for name, (value, _) in rows.items():
        assert ast.literal_eval(value) == getattr(keys, name), name
    assert rows["PROTEIN_PREDICTED"][1].startswith("obsm")


def test_constant_rows_reads_sections_and_continued_comments():
    source = ("# --- first ---\nA = 'a'      # the a key\n             # continued\nB = 'b'\n"
              "# --- second ---\nC = ('x', 'y')  # a tuple\nlower = 1\n")
    assert keys_table.constant_rows(source) == [
        ("first", [("A", "'a'", "the a key continued"), ("B", "'b'", "")]),
        ("second", [("C", "('x', 'y')", "a tuple")]),
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_tutorials_are_committed_without_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, path
    for cell in code:
        assert cell.get("outputs") == [] and cell.get("execution_count") is None, "".join(cell["source"])[:80]


def test_there_are_two_tutorials():
    assert [p.name for p in NOTEBOOKS] == ["python_api.ipynb", "squidpy.ipynb"]
