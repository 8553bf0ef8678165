"""Samplesheet reading and validation (the same schema the Nextflow pipeline validates with)."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..errors import InputError
from ..io import table_suffix

OPTIONAL_COLUMNS = ("batch", "x_col", "y_col", "z_col", "marker_cols", "cell_type_col", "id_col", "protein_key",
                    "table_name", "coordinate_system")


@dataclass(frozen=True)
class Sample:
    """One samplesheet row, with its paths resolved against the samplesheet's folder."""

    id: str
    kind: str
    paths: tuple[Path, ...]
    batch: str | None   # None: the input's own obs['batch'], else the sample id
    options: dict = field(default_factory=dict)

    @property
    def input(self) -> str:
        """The input as the readers take it: one path, or an RNA,PROTEIN pair joined by a comma."""
        return ",".join(str(p) for p in self.paths)

    def read_overrides(self) -> dict:
        """Format overrides for `scprospatial.io` (x_col, marker_cols, ...)."""
        out = {k: v for k, v in self.options.items() if k not in ("batch",) and v}
        if "marker_cols" in out:
            out["marker_cols"] = [m.strip() for m in out["marker_cols"].split(";") if m.strip()]
        return out


def schema_path() -> Path:
    """assets/schema_input.json: shipped in the package data, or read from the source tree."""
    packaged = resources.files("scprospatial.pipeline").joinpath("schema_input.json")
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[3] / "assets" / "schema_input.json"


def _schema_errors(rows: list[dict]) -> list[str]:
    import jsonschema

    schema = json.loads(schema_path().read_text())
    validator = jsonschema.Draft202012Validator(schema)
    messages = []
    for err in sorted(validator.iter_errors(rows), key=lambda e: list(e.absolute_path)):
        where = list(err.absolute_path)
        row = f"row {where[0] + 2}" if where else "samplesheet"
        column = f" column '{where[1]}'" if len(where) > 1 else ""
        custom = err.schema.get("errorMessage") if isinstance(err.schema, dict) else None
        messages.append(f"{row}{column}: {custom or err.message}")
    return messages


def read_samplesheet(path: str | Path) -> list[Sample]:
    """Parse and validate a samplesheet CSV; raise InputError naming the file and the first problem."""
    path = Path(path)
    if not path.is_file():
        raise InputError("samplesheet not found", path)
    try:  # utf-8-sig: Excel saves CSV with a byte-order mark
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in reader.fieldnames or []]
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None and (v or "").strip()}
                    for row in reader]
    except UnicodeDecodeError:
        raise InputError("not a UTF-8 text CSV (is it a data file given as the samplesheet?)", path) from None
    except csv.Error as exc:
        raise InputError(f"cannot read as CSV ({exc})", path) from None
    missing = [c for c in ("id", "kind", "path") if c not in header]
    if missing:
        raise InputError(f"missing column(s) {', '.join(missing)}; a samplesheet needs id,kind,path[,batch,...]", path)
    if not rows:
        raise InputError("no rows", path)
    errors = _schema_errors(rows)
    if errors:
        raise InputError("; ".join(errors[:3]) + (f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""), path)
    seen: set[str] = set()
    samples = []
    for i, row in enumerate(rows, start=2):
        if row["id"] in seen:
            raise InputError(f"row {i}: duplicate id '{row['id']}'", path)
        seen.add(row["id"])
        paths = tuple(_resolve(p, path.parent) for p in row["path"].split(";") if p.strip())
        for p in paths:
            if not p.exists():
                raise InputError(f"row {i}: file not found: {p}", path)
        if len(paths) > 2 or (len(paths) == 2 and row["kind"] != "citeseq"):
            raise InputError(f"row {i}: only a citeseq row may name two files (RNA;PROTEIN)", path)
        table = next((p for p in paths if table_suffix(p)), None)
        if row["kind"] != "spatial" and table is not None:
            raise InputError(f"row {i}: {table.name} is a cell table, which only a spatial row can be "
                             f"(kind is {row['kind']!r})", path)
        options = {k: row[k] for k in OPTIONAL_COLUMNS if k in row}
        samples.append(Sample(row["id"], row["kind"], paths, row.get("batch") or None, options))
    return samples


def _resolve(p: str, base: Path) -> Path:
    q = Path(p.strip()).expanduser()
    return q if q.is_absolute() else (base / q).resolve()
