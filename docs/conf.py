"""Sphinx configuration of the scprospatial documentation (``make docs``).

The API reference is generated from the package's numpydoc docstrings (autodoc + numpydoc), the CLI reference
from the argparse parser in ``scprospatial.cli`` (sphinx-argparse), the AnnData key table from
``scprospatial.keys`` (``_ext/keys_table.py``). The markdown guides next to this file are read by MyST, and the
tutorial notebooks are executed during the build on ``../shared/data``; without it they are shown unexecuted.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from sphinx.util import logging

import scprospatial

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))
_log = logging.getLogger("scprospatial.docs")

project = "scprospatial"
author = "scprospatial developers"
copyright = "scprospatial developers"  # noqa: A001  (Sphinx's name)
release = version = scprospatial.__version__

extensions = [
    "myst_nb",               # markdown pages (MyST) and the tutorial notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "sphinxarg.ext",         # the `argparse` directive: the CLI reference from cli.build_parser
    "keys_table",            # the `scprospatial-keys` directive: a table of scprospatial.keys
]

# The markdown guides (README-era docs) link to files outside docs/ and between each other
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints", "_ext"]
# help texts and docstrings are shown as written: `--n-cells` stays two hyphens, quotes stay straight
smartquotes = False

# ---------------------------------------------------------------------------------- API reference
default_role = "py:obj"               # `name` in a docstring links to the object where it is documented
autodoc_typehints = "none"            # the numpydoc sections carry the types a user needs
autodoc_member_order = "bysource"
autosummary_generate = False
numpydoc_show_class_members = False   # methods are listed with :members: on the class
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# ---------------------------------------------------------------------------------- tutorials
# Executed on every build where the real data are present; an error in a cell fails the build.
SHARED_DATA = Path(os.environ.get("SCPROSPATIAL_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()
if (SHARED_DATA / "README.md").exists():
    nb_execution_mode = "force"
else:
    nb_execution_mode = "off"
    print(f"scprospatial docs: tutorial notebooks NOT executed: real data folder {SHARED_DATA} is absent "
          "(set SCPROSPATIAL_SHARED_DATA to point at it)")
nb_execution_raise_on_error = True
nb_execution_timeout = 300
nb_execution_show_tb = True
nb_merge_streams = True

# ---------------------------------------------------------------------------------- HTML
html_theme = "furo"
html_title = f"scprospatial {release}"
html_static_path: list[str] = []


def setup(app):
    # the guides fence samplesheets as ```csv (GitHub colours them); Pygments has no CSV lexer: show them plain
    from pygments.lexers.special import TextLexer

    app.add_lexer("csv", TextLexer)
