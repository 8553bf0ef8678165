"""The shipped protein vocabulary (data/proteins.tsv) and name matching against it."""
from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

from ..errors import InputError
from ._names import candidates, isotype_canonical, name_key, strip_vendor

PROTEIN = "protein"
ISOTYPE_CONTROL = "isotype_control"
COLUMNS = ("canonical", "genes", "aliases", "category", "kind")


@dataclass(frozen=True)
class ProteinMatch:
    """What a panel name means: canonical name, 'protein' or 'isotype_control', coding genes, and
    whether the vocabulary knew it (unknown names keep their cleaned form)."""

    canonical: str
    kind: str
    genes: tuple[str, ...]
    recognised: bool
    original: str = ""

    @property
    def is_isotype(self) -> bool:
        return self.kind == ISOTYPE_CONTROL


def default_table_path() -> Path:
    return Path(str(resources.files("scprospatial.vocab").joinpath("data").joinpath("proteins.tsv")))


class ProteinVocabulary:
    """Canonical proteins with their genes and aliases, looked up by a normalised key.

    Lookup priority: canonical names, then listed aliases, then gene symbols that code for exactly one
    canonical protein (PTPRC codes CD45, CD45RA, CD45RB and CD45RO, so it is only an alias where listed).
    """

    def __init__(self, table: pd.DataFrame, source: str | os.PathLike = "<table>"):
        missing = [c for c in COLUMNS if c not in table.columns]
        if missing:
            raise InputError(f"protein table lacks columns {missing}", source)
        self.table = table.fillna("").astype(str).set_index("canonical", drop=False)
        if self.table.index.duplicated().any():
            dup = self.table.index[self.table.index.duplicated()].tolist()
            raise InputError(f"duplicate canonical proteins {dup}", source)
        self._genes = {c: tuple(g for g in row.split(";") if g) for c, row in self.table["genes"].items()}
        self._kind = dict(self.table["kind"].items())
        self._by_gene: dict[str, list[str]] = {}
        for canonical, genes in self._genes.items():
            for g in genes:
                self._by_gene.setdefault(g, []).append(canonical)
        self._key = self._build_keys(source)

    def _build_keys(self, source) -> dict[str, str]:
        levels: list[dict[str, str]] = [{}, {}, {}]
        for canonical, aliases in self.table["aliases"].items():
            self._add(levels[0], canonical, canonical, source)
            for alias in (a for a in aliases.split("|") if a.strip()):
                self._add(levels[1], alias, canonical, source)
        for gene, owners in self._by_gene.items():
            if len(owners) == 1:
                levels[2].setdefault(name_key(gene), owners[0])
        merged: dict[str, str] = {}
        for level in levels:  # earlier levels win
            for key, canonical in level.items():
                merged.setdefault(key, canonical)
        return merged

    @staticmethod
    def _add(level: dict[str, str], name: str, canonical: str, source) -> None:
        key = name_key(name)
        if not key:
            raise InputError(f"empty name for {canonical!r}", source)
        if level.get(key, canonical) != canonical:
            raise InputError(f"name {name!r} is given for both {level[key]!r} and {canonical!r}", source)
        level[key] = canonical

    @classmethod
    def from_tsv(cls, path: str | os.PathLike) -> ProteinVocabulary:
        try:
            table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read protein table ({exc})", path) from exc
        return cls(table, source=path)

    # --- lookups ---------------------------------------------------------------------------------
    @property
    def proteins(self) -> list[str]:
        """Canonical protein names (isotype controls excluded)."""
        return [c for c, k in self._kind.items() if k == PROTEIN]

    def __len__(self) -> int:
        return len(self._kind)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.lookup(name) is not None

    def lookup(self, name: str) -> str | None:
        """The canonical name an exact alias/canonical/gene refers to (no clutter stripping), or None."""
        return self._key.get(name_key(name))

    def genes(self, protein: str) -> tuple[str, ...]:
        """Coding genes of a protein (canonical name or alias); () when unknown."""
        canonical = self.lookup(protein)
        return self._genes.get(canonical, ()) if canonical else ()

    def proteins_for_gene(self, gene: str) -> tuple[str, ...]:
        """Canonical proteins a gene symbol codes for (PTPRC -> CD45, CD45RA, CD45RB, CD45RO)."""
        return tuple(self._by_gene.get(gene, ()))

    def category(self, protein: str) -> str | None:
        canonical = self.lookup(protein)
        return self.table.at[canonical, "category"] if canonical else None

    def match(self, name: str) -> ProteinMatch:
        """Normalise a panel name: strip clutter, try synonyms, recognise isotype controls."""
        original = str(name)
        for cand in candidates(original):
            iso = isotype_canonical(cand)
            if iso is not None:
                return ProteinMatch(iso, ISOTYPE_CONTROL, (), True, original)
            canonical = self._key.get(name_key(cand))
            if canonical is not None:
                return ProteinMatch(canonical, self._kind[canonical], self._genes[canonical], True, original)
        return ProteinMatch(strip_vendor(original), PROTEIN, (), False, original)

    def match_panel(self, names: Iterable[str]) -> list[ProteinMatch]:
        return [self.match(n) for n in names]

    def genes_linked(self, proteins: Sequence[str], genes: Iterable[str]) -> dict[str, list[str]]:
        """For each protein, its coding genes present in `genes` (e.g. a model's gene vocabulary)."""
        present = set(genes)
        return {p: [g for g in self.genes(p) if g in present] for p in proteins}


@functools.lru_cache(maxsize=1)
def get_vocabulary() -> ProteinVocabulary:
    """The shipped vocabulary, loaded once per process."""
    return ProteinVocabulary.from_tsv(default_table_path())


def normalise_protein_name(raw: str, vocabulary: ProteinVocabulary | None = None) -> ProteinMatch:
    """`ProteinMatch` for one panel name, using the shipped vocabulary unless one is given."""
    return (vocabulary or get_vocabulary()).match(raw)
