"""Fixed biology of the simulator: cell types, marker genes, antibody panels and tissue niches.

Everything here is a plain table; the random parameters drawn from a seed live in `_params.py`.
Gene symbols and antibody names are real, so the simulated files exercise the same name
handling (vocabulary, panel matching) as public data.
"""
from __future__ import annotations

from typing import NamedTuple


class CellType(NamedTuple):
    name: str
    markers: tuple[str, ...]   # genes switched on (log-fold change 3-5) in this type
    naive: float               # mean fraction of PTPRC made as the CD45RA isoform (rest: CD45RO)
    cycling: float             # probability that a cell of this type is in cycle (MKI67, TOP2A up)
    immune: bool               # immune cells express PTPRC (CD45)


# Ordered so that the first 8 (the default) cover every tissue niche below.
CELL_TYPES: tuple[CellType, ...] = (
    CellType("B cell", ("MS4A1", "CD19", "CD79A", "CD79B", "PAX5", "CR2", "CD22", "BANK1", "HLA-DRA", "CD74"),
             0.85, 0.03, True),
    CellType("CD4 T cell", ("CD3E", "CD3D", "CD3G", "CD4", "IL7R", "CCR7", "SELL", "LEF1", "TCF7", "CD2", "CD5",
                            "CD7", "CD27", "CD40LG", "ICOS"), 0.6, 0.02, True),
    CellType("CD8 T cell", ("CD3E", "CD3D", "CD3G", "CD8A", "CD8B", "GZMK", "GZMB", "NKG7", "PRF1", "CD2", "CD5",
                            "CD7", "PDCD1", "TIGIT", "LAG3", "CD27"), 0.3, 0.08, True),
    CellType("Macrophage", ("CD14", "LYZ", "CD68", "CD163", "CSF1R", "ITGAM", "ITGAX", "FCGR3A", "HLA-DRA", "CD74",
                            "CD274", "C1QA"), 0.1, 0.02, True),
    CellType("NK cell", ("NCAM1", "NKG7", "GNLY", "KLRD1", "KLRF1", "FCGR3A", "GZMB", "PRF1", "CD7", "CD2"),
             0.8, 0.03, True),
    CellType("Tumour cell", ("EPCAM", "KRT8", "KRT18", "KRT19", "CDH1", "MUC1", "CD274", "CDX2", "CTNNB1", "TP53"),
             0.0, 0.4, False),
    CellType("Fibroblast", ("VIM", "COL1A1", "COL1A2", "COL3A1", "DCN", "ACTA2", "PDGFRB", "FAP", "CD44", "PDPN",
                            "COL4A1"), 0.0, 0.03, False),
    CellType("Endothelial cell", ("PECAM1", "VWF", "CD34", "CDH5", "KDR", "COL4A1", "VIM"), 0.0, 0.03, False),
    CellType("Regulatory T cell", ("CD3E", "CD3D", "CD4", "FOXP3", "IL2RA", "CTLA4", "TIGIT", "IKZF2", "ICOS", "CD27"),
             0.2, 0.05, True),
    CellType("Plasma cell", ("SDC1", "JCHAIN", "MZB1", "XBP1", "CD38", "CD27"), 0.2, 0.05, True),
    CellType("Dendritic cell", ("ITGAX", "CD1C", "FCER1A", "CLEC10A", "HLA-DRA", "CD74", "CCR7", "CD86"),
             0.1, 0.02, True),
    CellType("Granulocyte", ("FUT4", "CSF3R", "FCGR3B", "S100A8", "S100A9", "CXCR2", "ITGAM"), 0.1, 0.0, True),
)

HOUSEKEEPING = ("ACTB", "GAPDH", "B2M", "MALAT1", "TMSB4X", "EEF1A1", "RPL13", "RPS27", "RPLP0", "FTL", "FTH1",
                "TPT1", "MT-CO1", "MT-ND4")
CYCLING_GENES = ("MKI67", "TOP2A", "CDK1")
PAN_IMMUNE_GENE = "PTPRC"


class Protein(NamedTuple):
    name: str            # canonical-ish name (truth tables use it)
    gene: str            # coding gene whose latent expression drives it
    isoform: str = ""    # "RA"/"RO": a PTPRC isoform, split by the cell's naive/memory state
    adt: str = ""        # CITE-seq antibody column ("" when not on the CITE-seq panel)
    codex: str = ""      # CODEX column description ("" when not imaged)
    cycif: str = ""      # CyCIF column name


def _p(name, gene, *, isoform="", adt=True, codex="", cycif=""):
    return Protein(name, gene, isoform, f"{name}_TotalSeqB" if adt else "", codex, cycif)


# ~28 CITE-seq antibodies and 40 imaged markers; about 20 are measured by both.
PROTEINS: tuple[Protein, ...] = (
    _p("CD3", "CD3E", codex="CD3 - T cells", cycif="CD3D"),
    _p("CD4", "CD4", codex="CD4 - T helper cells", cycif="CD4"),
    _p("CD8a", "CD8A", codex="CD8 - cytotoxic T cells", cycif="CD8A"),
    _p("CD14", "CD14"),
    _p("CD16", "FCGR3A", codex="CD16 - NK cells", cycif="CD16"),
    _p("CD56", "NCAM1", codex="CD56 - NK cells", cycif="CD56"),
    _p("CD19", "CD19"),
    _p("CD20", "MS4A1", codex="CD20 - B cells", cycif="CD20"),
    _p("CD25", "IL2RA", codex="CD25 - IL-2 Ra", cycif="CD25"),
    _p("CD45", "PTPRC", codex="CD45 - hematopoietic cells", cycif="CD45"),
    _p("CD45RA", "PTPRC", isoform="RA", codex="CD45RA - naive T cells", cycif="CD45RA"),
    _p("CD45RO", "PTPRC", isoform="RO", codex="CD45RO - memory cells", cycif="CD45RO"),
    _p("PD-1", "PDCD1", codex="PD-1 - checkpoint", cycif="PD1"),
    _p("TIGIT", "TIGIT"),
    _p("CD127", "IL7R"),
    _p("CD197", "CCR7"),
    _p("PD-L1", "CD274", codex="PD-L1 - checkpoint", cycif="PDL1"),
    _p("HLA-DR", "HLA-DRA", codex="HLA-DR - MHC-II", cycif="HLADR"),
    _p("CD11b", "ITGAM", codex="CD11b - macrophages", cycif="CD11B"),
    _p("CD11c", "ITGAX", codex="CD11c - DCs", cycif="CD11C"),
    _p("CD326", "EPCAM"),
    _p("CD31", "PECAM1", codex="CD31 - vasculature", cycif="CD31"),
    _p("CD34", "CD34", codex="CD34 - vasculature", cycif="CD34"),
    _p("CD38", "CD38", codex="CD38 - multifunctional", cycif="CD38"),
    _p("CD27", "CD27"),
    _p("CD62L", "SELL"),
    _p("CD15", "FUT4", codex="CD15 - granulocytes", cycif="CD15"),
    _p("CD2", "CD2", codex="CD2 - T cells", cycif="CD2"),
    # imaged only (intracellular or tissue markers a CITE-seq panel does not carry)
    _p("CD5", "CD5", adt=False, codex="CD5 - T cells", cycif="CD5"),
    _p("CD7", "CD7", adt=False, codex="CD7 - T cells", cycif="CD7"),
    _p("FOXP3", "FOXP3", adt=False, codex="FOXP3 - regulatory T cells", cycif="FOXP3"),
    _p("Ki67", "MKI67", adt=False, codex="Ki67 - proliferation", cycif="KI67"),
    _p("CD68", "CD68", adt=False, codex="CD68 - macrophages", cycif="CD68"),
    _p("CD163", "CD163", adt=False, codex="CD163 - macrophages", cycif="CD163"),
    _p("Granzyme B", "GZMB", adt=False, codex="Granzyme B - cytotoxicity", cycif="GZMB"),
    _p("Cytokeratin", "KRT8", adt=False, codex="Cytokeratin - epithelia", cycif="KERATIN"),
    _p("Vimentin", "VIM", adt=False, codex="Vimentin - cytoplasm", cycif="VIMENTIN"),
    _p("aSMA", "ACTA2", adt=False, codex="aSMA - smooth muscle", cycif="ASMA"),
    _p("Podoplanin", "PDPN", adt=False, codex="Podoplanin - lymphatics", cycif="PDPN"),
    _p("Collagen IV", "COL4A1", adt=False, codex="Collagen IV - bas. memb.", cycif="COLIV"),
    _p("CD138", "SDC1", adt=False, codex="CD138 - plasma cells", cycif="CD138"),
    _p("CD21", "CR2", adt=False, codex="CD21 - DCs", cycif="CD21"),
    _p("LAG-3", "LAG3", adt=False, codex="LAG-3 - checkpoint", cycif="LAG3"),
    _p("ICOS", "ICOS", adt=False, codex="ICOS - costimulator", cycif="ICOS"),
    _p("MUC-1", "MUC1", adt=False, codex="MUC-1 - epithelia", cycif="MUC1"),
    _p("CDX2", "CDX2", adt=False, codex="CDX2 - intestinal epithelia", cycif="CDX2"),
    _p("beta-catenin", "CTNNB1", adt=False, codex="beta-catenin - Wnt signaling", cycif="BCATENIN"),
    _p("p53", "TP53", adt=False, codex="p53 - tumor suppressor", cycif="P53"),
)

ISOTYPES = ("IgG1_control_TotalSeqB", "IgG2a_control_TotalSeqB", "IgG2b_control_TotalSeqB")
NUCLEAR_STAIN = {"codex": "HOECHST1:Cyc_1_ch_1", "cycif": "DNA1"}


class Niche(NamedTuple):
    name: str
    radius_um: float                  # typical size (power-diagram weight)
    frequency: float                  # share of niche centres
    composition: dict[str, float]     # cell-type mix inside the niche


NICHES: tuple[Niche, ...] = (
    Niche("follicle", 260.0, 0.15, {"B cell": 0.75, "CD4 T cell": 0.08, "Dendritic cell": 0.05, "Macrophage": 0.03,
                                    "Regulatory T cell": 0.02, "CD8 T cell": 0.04, "Plasma cell": 0.03}),
    Niche("T-cell zone", 200.0, 0.2, {"CD4 T cell": 0.4, "CD8 T cell": 0.25, "Regulatory T cell": 0.08,
                                      "Dendritic cell": 0.07, "B cell": 0.06, "NK cell": 0.06, "Macrophage": 0.08}),
    Niche("tumour nest", 180.0, 0.25, {"Tumour cell": 0.8, "CD8 T cell": 0.05, "Macrophage": 0.08,
                                       "Fibroblast": 0.03, "NK cell": 0.02, "Granulocyte": 0.02}),
    Niche("stroma", 150.0, 0.3, {"Fibroblast": 0.6, "Macrophage": 0.12, "Endothelial cell": 0.05, "CD4 T cell": 0.05,
                                 "CD8 T cell": 0.05, "Plasma cell": 0.05, "Granulocyte": 0.04, "NK cell": 0.04}),
    Niche("vessel", 45.0, 0.1, {"Endothelial cell": 0.75, "Fibroblast": 0.12, "Granulocyte": 0.05,
                                "Macrophage": 0.08}),
)


def real_genes() -> tuple[str, ...]:
    """Real gene symbols the simulator always carries (panel coding genes, markers, housekeeping)."""
    names = list(HOUSEKEEPING) + list(CYCLING_GENES) + [PAN_IMMUNE_GENE]
    for ct in CELL_TYPES:  # markers of every type, so the gene set does not depend on the types simulated
        names += ct.markers
    names += [p.gene for p in PROTEINS]
    return tuple(dict.fromkeys(names))
