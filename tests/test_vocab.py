"""Protein vocabulary: the shipped table, the name normaliser, and every protein name in ../shared/data."""
from __future__ import annotations

import gzip
import re

import anndata as ad
import pandas as pd
import pytest

from scprospatial.errors import InputError
from scprospatial.io import detect_layout
from scprospatial.vocab import ISOTYPE_CONTROL, ProteinVocabulary, get_vocabulary, normalise_protein_name

HGNC_LIKE = re.compile(r"^[A-Z][A-Z0-9]*(orf[0-9]+)?(-[A-Z0-9]+)*$")  # C17orf99 is HGNC too


@pytest.fixture(scope="module")
def vocab() -> ProteinVocabulary:
    return get_vocabulary()


def test_table_size_and_columns(vocab):
    table = vocab.table
    assert len(vocab.proteins) >= 300
    assert set(table["category"]) <= {"surface", "intracellular", "secreted"}
    assert set(table["kind"]) == {"protein", ISOTYPE_CONTROL}
    assert not any("/" in c for c in table["canonical"]), "'/' cannot be an obsm DataFrame column in .h5ad"


def test_vocabulary_covers_the_surfaceome(vocab):
    """The paper's ~2,500 surface proteins are the floor: curated panel names plus the GO surfaceome
    (tools/build_surfaceome.py); every surface protein is requestable through one coding gene."""
    table = vocab.table
    assert set(table["source"]) == {"curated", "GO"}
    surface = [p for p in vocab.proteins if vocab.category(p) == "surface"]
    assert len(surface) >= 2500
    go = table[table["source"] == "GO"]
    assert (go["canonical"] == go["genes"]).all() and (go["category"] == "surface").all()
    # GO rows never shadow a curated name: panel names still resolve to their curated proteins
    assert vocab.match("PD-L1").canonical == "CD274" and vocab.match("CD3").canonical == "CD3"
    assert vocab.match("EGFR").recognised and vocab.match("ERBB2").canonical == "CD340"


def test_every_protein_has_gene_symbols(vocab):
    for name in vocab.proteins:
        genes = vocab.genes(name)
        assert genes, name
        assert all(HGNC_LIKE.match(g) for g in genes), (name, genes)
    assert all(not vocab.genes(c) for c, k in vocab.table["kind"].items() if k == ISOTYPE_CONTROL)


def test_conflicting_alias_is_rejected():
    table = pd.DataFrame({"canonical": ["A1", "B1"], "genes": ["AAA", "BBB"], "aliases": ["shared", "Shared"],
                          "category": ["surface"] * 2, "kind": ["protein"] * 2})
    with pytest.raises(InputError, match="both"):
        ProteinVocabulary(table, source="bad.tsv")


@pytest.mark.parametrize("raw, canonical", [
    ("PD-1 (CD279)", "CD279"), ("PD1 (CD279)", "CD279"), ("PD-1_TotalSeqB", "CD279"), ("PDCD1", "CD279"),
    ("IL7Ralpha (CD127)", "CD127"), ("IL-7Rα", "CD127"), ("MHCII (HLA-DR)", "HLA-DR"), ("HLADR", "HLA-DR"),
    ("CCR7", "CD197"), ("PD-L1", "CD274"), ("CD274 (B7-H1, PD-L1)", "CD274"), ("CD8a_TotalSeqB", "CD8"),
    ("CD8 - cytotoxic T cells:Cyc_3_ch_2", "CD8"), ("CD8A", "CD8"), ("Ki-67", "Ki67"), ("MKI67", "Ki67"),
    ("Pan-Keratin", "Pan-Keratin"), ("Cytokeratin - epithelia:Cyc_10_ch_2", "Pan-Keratin"), ("aSMA", "aSMA"),
    ("ADT_CD3", "CD3"), ("CD3_TotalSeqB.1", "CD3"), ("CD4.1", "CD4"), ("CD4-1", "CD4"), ("anti-human CD19", "CD19"),
    ("CD158e1 (KIR3DL1, NKB1)", "CD158e1"), ("TCR Valpha7.2", "TCR Va7.2"), ("TCR alpha/beta", "TCRab"),
    ("HLA-A,B,C", "HLA-ABC"), ("CD66a/c/e", "CD66ace"), ("FcεRIα", "FceRIa"), ("CD45RA", "CD45RA"),
])
def test_normaliser(raw, canonical):
    match = normalise_protein_name(raw)
    assert match.recognised and match.kind == "protein"
    assert match.canonical == canonical


def test_isoforms_and_genes(vocab):
    assert normalise_protein_name("CD45RA").canonical != normalise_protein_name("CD45RO").canonical
    assert set(vocab.proteins_for_gene("PTPRC")) == {"CD45", "CD45RA", "CD45RB", "CD45RO"}
    assert vocab.genes("PD-1") == ("PDCD1",)
    assert vocab.genes("HLA-DR") == ("HLA-DRA", "HLA-DRB1")
    assert vocab.lookup("CD41") == "CD41" and vocab.lookup("CD4.1") is None


@pytest.mark.parametrize("raw, canonical", [
    ("IgG1", "Mouse_IgG1"), ("IgG2a_control_TotalSeqB", "Mouse_IgG2a"), ("IgG2b-control", "Mouse_IgG2b"),
    ("Mouse IgG1 kappa isotype", "Mouse_IgG1"), ("Mouse IgG1, κ isotype Ctrl", "Mouse_IgG1"),
    ("Rat IgG2b", "Rat_IgG2b"), ("Rat_IgG2a_isotype", "Rat_IgG2a"), ("Armenian Hamster IgG", "Hamster_IgG"),
    ("Mouse IgM", "Mouse_IgM"),
])
def test_isotype_controls(raw, canonical):
    match = normalise_protein_name(raw)
    assert match.kind == ISOTYPE_CONTROL and match.canonical == canonical and match.genes == ()


@pytest.mark.parametrize("raw", ["IgM", "IgD", "Human IgG"])
def test_surface_immunoglobulins_are_not_controls(raw):
    assert normalise_protein_name(raw).kind == "protein"


def test_unrecognised_names_are_kept_cleaned():
    match = normalise_protein_name("Hashtag7_TotalSeqB")
    assert not match.recognised and match.canonical == "Hashtag7" and match.original == "Hashtag7_TotalSeqB"


# --- every protein in ../shared/data -------------------------------------------------------------------
def _real_panel_names(root) -> list[str]:
    names: list[str] = []
    for f in sorted((root / "citeseq").glob("*.h5ad")):
        a = ad.read_h5ad(f, backed="r")
        names += [str(c) for k in a.obsm if hasattr(a.obsm[k], "columns") for c in a.obsm[k].columns]
        names += [str(n) for n in a.uns.get("protein_names", [])]
        a.file.close()
    for feat in (root / "citeseq").glob("*/filtered_feature_bc_matrix/features.tsv.gz"):
        with gzip.open(feat, "rt") as fh:
            names += [line.split("\t")[1] for line in fh if "Antibody Capture" in line]
    for table in sorted((root / "spatial").glob("*.csv")):
        df = pd.read_csv(table)
        names += detect_layout(df, table).markers
    return names


def test_every_real_protein_name_is_recognised(shared_data):
    names = _real_panel_names(shared_data)
    assert len(names) == 17 + 14 + 29 + 17 + 56 + 33  # the panels listed in ../shared/data/README.md
    unknown = [n for n in names if not normalise_protein_name(n).recognised]
    assert unknown == []


def test_real_panels_share_canonical_names(shared_data):
    codex = pd.read_csv(shared_data / "spatial" / "codex_crc_schurch2020_reg009.csv", nrows=2)
    codex_names = {normalise_protein_name(m).canonical for m in detect_layout(codex, "codex").markers}
    a = ad.read_h5ad(shared_data / "citeseq" / "pbmc_5k_protein_v3_200cells.h5ad", backed="r")
    cite_names = {normalise_protein_name(n).canonical for n in a.uns["protein_names"]}
    a.file.close()
    assert {"CD8", "CD279", "CD274", "CD45RA", "CD45RO", "CD3", "CD4", "CD20"} <= codex_names & cite_names
