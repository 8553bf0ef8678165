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
