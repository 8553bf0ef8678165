"""benchmarks/README.md is shared by several benchmark scripts: each owns one marked section."""
from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parent / "README.md"


def replace_section(section: str, start: str, end: str, readme: Path = README) -> None:
    """Put `section` (which begins with `start` and ends with `end`) in place of the old one, or append it."""
    text = readme.read_text() if readme.is_file() else "# Benchmarks\n"
    if start in text and end in text:
        text = text[:text.index(start)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    readme.write_text(text)


def put_section(body: str, start: str, end: str, readme: Path = README) -> None:
    """replace_section for a body without its markers."""
    replace_section(start + "\n" + body + "\n" + end, start, end, readme)


def merge_results(out: Path, rows: list[dict], key, command: str) -> tuple[list[dict], dict]:
    """Write `out` (JSON: meta + results): `rows` plus the earlier rows whose key(row) was not measured again
    (rows from another machine, e.g. a GPU, are kept). Returns (all rows, meta)."""
    import json
    import os
    import platform

    old = json.loads(out.read_text())["results"] if out.is_file() else []
    measured = {key(r) for r in rows}
    merged = [r for r in old if key(r) not in measured] + rows
    meta = {"machine": platform.platform(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "command": command}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": merged}, indent=1))
    return merged, meta


def rebuild_section(out: Path, section, start: str, end: str) -> None:
    """--readme-only: the section from a results file written by merge_results (section(results, meta) -> body)."""
    import json

    saved = json.loads(Path(out).read_text())
    put_section(section(saved["results"], saved["meta"]), start, end)


def publish(out: Path, rows: list[dict], key, command: str, *, table, section, readme: bool, start: str,
            end: str) -> None:
    """The end of a benchmark run: merge `rows` into `out` (merge_results), print table(all rows) and, with
    `readme`, rewrite the section (section(all rows, meta) -> body)."""
    merged, meta = merge_results(out, rows, key, command)
    print(table(merged))
    if readme:
        put_section(section(merged, meta), start, end)


def save_run(out: Path, res: dict, body: str, start: str, end: str, readme: bool) -> None:
    """The end of a one-shot benchmark run: `res` as JSON in `out`, `body` printed and, with `readme`, put in the
    section between `start` and `end`."""
    import json

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    if readme:
        put_section(body, start, end)
    print(body)


def run_record(tool: str, argv, **fields) -> dict:
    """A run's record: its date, the command that made it (`python benchmarks/<tool>.py ARGS`) and `fields`."""
    import sys
    import time

    args = argv if argv is not None else sys.argv[1:]
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": f"python benchmarks/{tool}.py " + " ".join(args), **fields}
