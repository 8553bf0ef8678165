"""Which proteins a 'first N proteins' imputation asks for: the training panel, then gene-linked ones."""
from __future__ import annotations


def first_predictable(model, n: int) -> list[str]:
    """The model's measured proteins, then the proteins it predicts through their coding gene, in
    vocabulary order, cut at `n` (fewer when the model predicts fewer; the caller reports the count)."""
    from scprospatial.model._predict import resolve_proteins

    predictable = resolve_proteins(model.vocab, None, True)
    measured = [p for p in model.vocab.measured if p in set(predictable)]
    return (measured + [p for p in predictable if p not in set(measured)])[:n]
