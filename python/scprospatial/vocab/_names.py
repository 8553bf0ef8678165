"""String rules for antibody/marker names: lookup keys, vendor clutter, isotype controls.

Pure functions, no table: `_table.ProteinVocabulary` combines them with the shipped data file.
"""
from __future__ import annotations

import re
import unicodedata

_GREEK = {"α": "a", "β": "b", "γ": "g", "δ": "d", "ε": "e", "κ": "k", "λ": "l", "ζ": "z", "μ": "m"}
_GREEK_WORDS = re.compile(r"alpha|beta|gamma|delta|epsilon|kappa|lambda|zeta")
_NON_ALNUM = re.compile(r"[^0-9a-z.]+")
_DIGIT_GAP = re.compile(r"(?<=[0-9])[^0-9a-z]+(?=[0-9])")


def name_key(name: str) -> str:
    """Case-, dash-, space- and Greek-insensitive key: 'IL-7Rα', 'IL7Ralpha' and 'il7ra' share one.

    A separator between two digits survives as '.', so 'CD4.1' (a duplicate column) never reads as CD41.
    """
    s = unicodedata.normalize("NFKC", str(name)).lower()
    s = "".join(_GREEK.get(ch, ch) for ch in s)
    s = _GREEK_WORDS.sub(lambda m: m.group(0)[0], s)
    s = _DIGIT_GAP.sub(".", s)
    return _NON_ALNUM.sub("", s).strip(".")


# --- vendor clutter ----------------------------------------------------------------------------
# CODEX (Schuerch 2020): "CD8 - cytotoxic T cells:Cyc_3_ch_2", "HOECHST1:Cyc_1_ch_1", "Z:Z".
_CODEX = re.compile(r"^(?P<name>.*?)(?:\s+-\s+.*)?:\s*Cyc_\d+_ch_\d+\s*$", re.IGNORECASE)
_SELF_PAIR = re.compile(r"^(?P<a>[^:]+):(?P<b>[^:]+)$")
_PREFIX = re.compile(r"^(?:adt|prot|protein|cite|ab|anti[-_ ]?human|anti)[-_ .:]+", re.IGNORECASE)
_SUFFIX = re.compile(
    r"(?:[-_ .]+(?:totalseq[-_ ]?[abc]|ts[abc]|adt|prot|protein|antibody|ab|cite(?:seq)?|[abc]\d{4})"
    r"|[-_ .]?totalseq[-_ ]?[abc])$",
    re.IGNORECASE,
)
_PAREN = re.compile(r"^(?P<outer>.*?)\s*[(\[](?P<inner>[^()\[\]]*)[)\]]\s*(?P<rest>.*)$")
_DUP_INDEX = re.compile(r"[._-]\d+$")
_SPACES = re.compile(r"\s+")


def strip_vendor(name: str) -> str:
    """Remove CODEX cycle/channel tags and vendor prefixes/suffixes (TotalSeq, ADT_, _ADT, catalogue ids)."""
    s = _SPACES.sub(" ", str(name)).strip()
    m = _CODEX.match(s)
    if m:
        s = m.group("name").strip()
    else:
        m = _SELF_PAIR.match(s)
        if m and m.group("a").strip() == m.group("b").strip():
            s = m.group("a").strip()
    previous = None
    while previous != s:
        previous = s
        s = _SUFFIX.sub("", _PREFIX.sub("", s)).strip(" _-.:")
    return s or str(name).strip()


def candidates(name: str) -> list[str]:
    """Names to try in order: the whole name, without clutter, parenthetical synonyms, then without
    a trailing duplicate index ('.1', '-2') and without a ' - description'."""
    raw = str(name).strip()
    base = strip_vendor(raw)
    out = [raw, base]
    m = _PAREN.match(base)
    if m:
        inner = [p.strip() for p in re.split(r"[,;/]", m.group("inner")) if p.strip()]
        out += [m.group("inner").strip(), *inner, m.group("outer").strip()]
    if " - " in base:
        out.append(base.split(" - ", 1)[0].strip())
    for c in [c for c in out if _DUP_INDEX.search(c)]:
        out += [_DUP_INDEX.sub("", c), strip_vendor(_DUP_INDEX.sub("", c))]
    return [c for c in dict.fromkeys(out) if c]


# --- isotype controls -----------------------------------------------------------------------------
_SPECIES = {"mouse": "Mouse", "ms": "Mouse", "mu": "Mouse", "rat": "Rat", "rt": "Rat",
            "armenianhamster": "Hamster", "syrianhamster": "Hamster", "hamster": "Hamster", "ah": "Hamster",
            "human": "Human", "hu": "Human"}
_ISOTYPE = re.compile(
    r"^(?:(?P<species>armenianhamster|syrianhamster|hamster|mouse|human|rat|ms|mu|rt|ah|hu))?"
    r"(?:isotype|iso)?ig(?P<cls>[gmade])(?P<sub>[1-4]?[abc]?)(?:k|l)?"
    r"(?P<ctl>(?:isotype|iso|control|ctrl|ctl|isotypecontrol|isotypectrl)*)$"
)


def isotype_canonical(name: str) -> str | None:
    """'IgG1', 'IgG2a_control', 'Mouse IgG1 kappa isotype', 'Rat IgG2b' -> 'Mouse_IgG1' ... ; else None.

    A bare class name ('IgM', 'IgD', 'IgG', 'Human IgG') is the surface immunoglobulin, not a control:
    a control needs a subclass (IgG1, IgG2a, ...), a non-human host species, or a control/isotype word.
    Without a species, the host is taken as mouse (TotalSeq and most CyTOF/CODEX controls).
    """
    m = _ISOTYPE.match(name_key(name))
    if not m:
        return None
    species = _SPECIES.get(m.group("species") or "", "")
    if not (m.group("sub") or m.group("ctl") or species in ("Mouse", "Rat", "Hamster")):
        return None
    host = species or "Mouse"
    return f"{host}_Ig{m.group('cls').upper()}{m.group('sub')}"
