#!/usr/bin/env python
"""Extend the shipped protein vocabulary with the human surfaceome from Gene Ontology annotations.

The curated part of python/scprospatial/vocab/data/proteins.tsv (antibody panels: CD names, aliases,
isotype controls) is kept as it is; every protein-coding human gene annotated (with descendants) to

  GO:0009986 cell surface, GO:0031226 intrinsic component of plasma membrane,
  GO:0009897 external side of plasma membrane, or
  GO:0005886 plasma membrane together with GO:0038023 signalling receptor activity or
  GO:0022857 transmembrane transporter activity,

whose gene no curated entry already codes for, is appended as a protein named by its HGNC symbol
(category 'surface', source 'GO'). Rows from an earlier run are replaced, so the script is idempotent.

Source: the Bioconductor annotation package org.Hs.eg.db as Debian ships it (no network at run time):

    apt-get download r-bioc-org.hs.eg.db && dpkg-deb -x r-bioc-org.hs.eg.db_*.deb orgdb
    python tools/build_surfaceome.py orgdb/usr/lib/R/site-library/org.Hs.eg.db/extdata/org.Hs.eg.sqlite

Gene Ontology annotations are CC BY 4.0 (geneontology.org); NCBI Gene data are public domain.
"""
from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

import pandas as pd

TABLE = Path(__file__).resolve().parents[1] / "python" / "scprospatial" / "vocab" / "data" / "proteins.tsv"
SURFACE_TERMS = ("GO:0009986", "GO:0031226", "GO:0009897")
PLASMA_MEMBRANE = "GO:0005886"
RECEPTOR_OR_TRANSPORTER = ("GO:0038023", "GO:0022857")
SOURCE_GO = "GO"
SOURCE_CURATED = "curated"


def surface_genes(sqlite_path: Path) -> tuple[list[str], dict[str, str]]:
    """Sorted HGNC symbols of the GO-defined surfaceome, and the database's metadata."""
    con = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
    coding = "SELECT _id FROM genetype WHERE gene_type = 'protein-coding'"

    def ids(table: str, terms: tuple[str, ...]) -> set[int]:
        marks = ",".join("?" * len(terms))
        query = f"SELECT DISTINCT _id FROM {table} WHERE go_id IN ({marks}) AND _id IN ({coding})"
        return {r[0] for r in con.execute(query, terms)}

    chosen = ids("go_cc_all", SURFACE_TERMS) | (ids("go_cc_all", (PLASMA_MEMBRANE,))
                                                & ids("go_mf_all", RECEPTOR_OR_TRANSPORTER))
    symbols = dict(con.execute("SELECT _id, symbol FROM gene_info"))
    meta = dict(con.execute("SELECT name, value FROM metadata"))
    return sorted({symbols[i] for i in chosen if i in symbols}), meta


def extend(table: pd.DataFrame, genes: list[str]) -> pd.DataFrame:
    if "source" not in table.columns:
        table = table.assign(source=SOURCE_CURATED)
    curated = table[table["source"] != SOURCE_GO]
    taken_genes = {g for row in curated["genes"] for g in row.split(";") if g}
    taken_names = {n.upper() for col in ("canonical", "aliases") for row in curated[col] for n in row.split("|") if n}
    new = [g for g in genes if g not in taken_genes and g.upper() not in taken_names]
    rows = pd.DataFrame({"canonical": new, "genes": new, "aliases": "", "category": "surface", "kind": "protein",
                         "source": SOURCE_GO})
    return pd.concat([curated, rows], ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sqlite", type=Path, help="org.Hs.eg.sqlite from the org.Hs.eg.db package")
    ap.add_argument("--table", type=Path, default=TABLE, help="protein table to extend in place")
    args = ap.parse_args(argv)
    genes, meta = surface_genes(args.sqlite)
    table = pd.read_csv(args.table, sep="\t", dtype=str, keep_default_na=False)
    out = extend(table, genes)
    tmp = args.table.with_suffix(".tsv.tmp")
    out.to_csv(tmp, sep="\t", index=False)
    tmp.replace(args.table)
    n_go = int((out["source"] == SOURCE_GO).sum())
    print(f"{len(genes)} GO surfaceome genes (GO {meta.get('GOSOURCEDATE')}, Entrez Gene {meta.get('EGSOURCEDATE')}); "
          f"{n_go} added, {len(out) - n_go} curated rows kept; {len(out)} rows in {args.table}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
