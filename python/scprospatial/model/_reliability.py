"""How far each predicted protein can be trusted: its support class and the accuracy expected of that class.

A protein is predicted either by the translator head (it was measured in training) or through its gene link
(a + b * coding-gene RNA). Gene-link proteins are split by whether their coding gene is *detected* in the input:
count > 0 (any of its coding genes) in at least 10% of the input cells, the rule of benchmarks/PROTOCOL.md.
The expected accuracy of each class is the median per-protein Pearson measured on development data
(benchmarks/bench_reliability.py), shipped in data/expected_accuracy.csv with its provenance.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from .. import _constants as K
from ..errors import InputError
from ._data import GeneMapping, map_rna
from ._vocab import Vocabulary

DETECTION_MIN_FRACTION = 0.1          # benchmarks/PROTOCOL.md: detected = count > 0 in >= 10% of the cells
MIN_SUPPORT = {"measured": K.SUPPORT_CLASSES[:1], "detected": K.SUPPORT_CLASSES[:2], "any": K.SUPPORT_CLASSES}
ACCURACY_FILE = "expected_accuracy.csv"


def detected_fraction(x_rows: Callable, n_obs: int, mapping: GeneMapping, vocab: Vocabulary, names: Sequence[str],
                      batch_size: int = 4096) -> np.ndarray:
    """Share of the cells in which any coding gene of each protein has a count > 0 (a positive value: log-normalised
    and raw values are positive exactly where the count is). Genes absent from the input count as 0."""
    n_genes = len(vocab.genes)
    link = np.zeros((n_genes, len(names)), np.float32)
    for j, p in enumerate(names):
        cols = vocab.gene_index.get_indexer(vocab.gene_links.get(p, []))
        link[cols[cols >= 0], j] = 1.0
    hits = np.zeros(len(names), np.int64)
    for start in range(0, n_obs, batch_size):
        block = map_rna(x_rows(start, min(start + batch_size, n_obs)), mapping, n_genes)
        block.data = (block.data > 0).astype(np.float32)
        hits += (np.asarray(block @ link) > 0).sum(axis=0)
    return hits / max(n_obs, 1)


def support_classes(vocab: Vocabulary, names: Sequence[str], fraction: np.ndarray) -> list[str]:
    measured = set(vocab.measured)
    return [K.SUPPORT_MEASURED if p in measured else
            K.SUPPORT_DETECTED if f >= DETECTION_MIN_FRACTION else K.SUPPORT_UNDETECTED
            for p, f in zip(names, fraction)]


def check_min_support(min_support: str, path=None) -> tuple[str, ...]:
    """The support classes kept by `min_support` ('measured', 'detected' or 'any')."""
    if min_support not in MIN_SUPPORT:
        raise InputError(f"min_support must be one of {', '.join(MIN_SUPPORT)}, got {min_support!r}", path)
    return MIN_SUPPORT[min_support]


@lru_cache(maxsize=1)
def expected_accuracy() -> pd.DataFrame:
    """The shipped development table: one row per support class and setting ('same_cohort', 'new_cohort')."""
    path = Path(str(resources.files("scprospatial.model") / "data" / ACCURACY_FILE))
    return pd.read_csv(path, comment="#")


def accuracy_provenance() -> str:
    """The table's comment lines: what measured it, when, on which data."""
    path = Path(str(resources.files("scprospatial.model") / "data" / ACCURACY_FILE))
    return " ".join(line[1:].strip() for line in path.read_text().splitlines() if line.startswith("#"))


def _expected(support: str, setting: str) -> float:
    t = expected_accuracy()
    row = t[(t[K.SUPPORT] == support) & (t["setting"] == setting)]
    return float(row["median_pearson"].iloc[0]) if len(row) and pd.notna(row["median_pearson"].iloc[0]) else np.nan


def protein_table(names: Sequence[str], classes: Sequence[str], fraction: np.ndarray) -> pd.DataFrame:
    """uns[key]['proteins']: support class, detected fraction and expected Pearson of each predicted protein."""
    return pd.DataFrame({K.SUPPORT: list(classes), K.DETECTED_FRACTION: np.asarray(fraction, np.float64),
                         K.EXPECTED_PEARSON: [_expected(c, "same_cohort") for c in classes],
                         K.EXPECTED_PEARSON_NEW_COHORT: [_expected(c, "new_cohort") for c in classes]},
                        index=pd.Index(list(names), name="protein"))


def reliability_info(min_support: str, dropped: Sequence[str], calibration: dict) -> dict:
    """uns[key]['reliability']: the rules behind the table, where its figures come from, interval coverage."""
    t = expected_accuracy()
    return {"classes": list(K.SUPPORT_CLASSES), "detection_rule": "coding-gene count > 0 in at least "
            f"{DETECTION_MIN_FRACTION:.0%} of the input cells", "detection_min_fraction": DETECTION_MIN_FRACTION,
            "min_support": min_support, "dropped_by_min_support": list(dropped),
            "expected_accuracy": t, "expected_accuracy_source": accuracy_provenance(), **calibration}
