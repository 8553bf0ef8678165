"""The ``scprospatial-keys`` directive: the AnnData key constants of ``scprospatial.keys`` as tables.

Read from the module's source, so the documentation cannot drift from it: one table per ``# --- section ---``
comment, one row per constant (name, value, the comment on its line and the comment lines continuing it).
"""
from __future__ import annotations

import ast
import inspect
import io
import tokenize

from docutils import nodes
from sphinx.util.docutils import SphinxDirective


def constant_rows(source: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """[(section title, [(name, value repr, comment), ...]), ...] of the module-level constants in `source`."""
    comments: dict[int, tuple[int, str]] = {}   # line -> (column, text) of every comment
    code_lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = (tok.start[1], tok.string.lstrip("#").strip())
        elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
            code_lines.add(tok.start[0])
    sections: list[tuple[str, list[tuple[str, str, str]]]] = []
    section_at = {line: text.strip("- ").strip() for line, (col, text) in comments.items()
                  if col == 0 and text.startswith("---")}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        name = node.targets[0].id
        if not name.isupper() or name.startswith("_"):
            continue
        headers = [line for line in section_at if line < node.lineno]
        title = section_at[max(headers)] if headers else "general"
        if not sections or sections[-1][0] != title:
            sections.append((title, []))
        parts = []
        line = node.end_lineno
        if line in comments and line in code_lines:
            col, text = comments[line]
            parts.append(text)
            line += 1   # comment lines below, at the same column and without code, continue it
            while line in comments and line not in code_lines and comments[line][0] == col:
                parts.append(comments[line][1])
                line += 1
        sections[-1][1].append((name, ast.get_source_segment(source, node.value) or "", " ".join(parts)))
    return sections


def _entry(*children: nodes.Node) -> nodes.entry:
    return nodes.entry("", nodes.paragraph("", "", *children))


def _table(title: str, rows: list[tuple[str, str, str]]) -> nodes.table:
    """A docutils table (built as nodes, so it renders the same under MyST and reStructuredText)."""
    table = nodes.table("", nodes.title(text=title))
    group = nodes.tgroup(cols=3)
    table += group
    for width in (25, 25, 50):
        group += nodes.colspec(colwidth=width)
    head, body = nodes.thead(), nodes.tbody()
    head += nodes.row("", *(_entry(nodes.Text(h)) for h in ("constant", "value", "meaning")))
    for name, value, comment in rows:
        body += nodes.row("", _entry(nodes.literal(text=f"keys.{name}")), _entry(nodes.literal(text=value)),
                          _entry(nodes.Text(comment)))
    group += head
    group += body
    return table


class KeysTable(SphinxDirective):
    """Tables of the constants of the module named in the argument (default ``scprospatial._constants``)."""

    optional_arguments = 1

    def run(self) -> list[nodes.Node]:
        import importlib

        module = importlib.import_module(self.arguments[0] if self.arguments else "scprospatial._constants")
        path = inspect.getsourcefile(module)
        self.env.note_dependency(path)
        with open(path, encoding="utf-8") as fh:
            sections = constant_rows(fh.read())
        return [_table(title, rows) for title, rows in sections]


def setup(app):
    app.add_directive("scprospatial-keys", KeysTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
