"""The scProSpatial model as one evaluation method (with stage ablations).

The model is trained on the training cells of a split (it carves its own early-stopping part out of
them: the test cells are never seen) and predicts mean and SD for the test cells.
"""
from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import pandas as pd

from .. import _constants as K
from .._logging import logger
from .baselines import coding_gene_links

ABLATIONS = {None: ("pretrain", "align", "translate"),
             "no-pretrain": ("align", "translate"),
             "no-align": ("pretrain", "translate")}
MODEL_NAMES = {"scprospatial": None, "scprospatial_no_pretrain": "no-pretrain", "scprospatial_no_align": "no-align"}


def model_available() -> bool:
    """True when scprospatial.model provides ScProSpatial (the model may still be under construction)."""
    try:
        from ..model import ScProSpatial  # noqa: F401
    except ImportError as err:
        logger.debug("scprospatial.model not importable: %s", err)
        return False
    return True


class ScProSpatialMethod:
    """`fit(train, val)` trains a fresh model; `predict_with_sd` returns (mean, sd) DataFrames."""

    def __init__(self, *, ablation: str | None = None, epochs: int | None = None, device: str = "auto", seed: int = 0,
                 extra_proteins: Sequence[str] = ()):
        if ablation not in ABLATIONS:
            raise ValueError(f"ablation must be one of {list(ABLATIONS)}, got {ablation!r}")
        self.ablation, self.epochs, self.device, self.seed = ablation, epochs, device, seed
        self.extra_proteins = list(extra_proteins)
        self.name = "scprospatial" + (f"_{ablation.replace('-', '_')}" if ablation else "")

    def fit(self, train: ad.AnnData, val: ad.AnnData, *, extra_proteins: Sequence[str] = ()) -> None:
        from ..model import ModelConfig, ScProSpatial, vocabulary_proteins

        cells = ad.concat([train, val], merge="same", uns_merge="first")
        config = ModelConfig().with_epochs(self.epochs)
        # the configuration `scprospatial train` ships: the whole vocabulary requestable (+ any extra names)
        asked = list(dict.fromkeys([*self.extra_proteins, *extra_proteins]))
        extra = [*vocabulary_proteins(), *asked] if asked else None
        self.model = ScProSpatial.setup([cells], config=config, gene_links=coding_gene_links, extra_proteins=extra,
                                        seed=self.seed)
        self.model.train([cells], stages=ABLATIONS[self.ablation], outdir=None, seed=self.seed, device=self.device)

    def predict_with_sd(self, adata: ad.AnnData, proteins: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        known = set(self.model.vocab.proteins) if hasattr(self.model, "vocab") else set(proteins)
        wanted = [p for p in proteins if p in known]
        out = self.model.predict(adata, proteins=wanted)
        assert out is not None  # predict returns the new AnnData (copy=True, its default)
        mean = out.obsm[K.PROTEIN_PREDICTED]
        sd = out.obsm[K.PROTEIN_PREDICTED_SD] if K.PROTEIN_PREDICTED_SD in out.obsm else None
        cols = [p for p in wanted if p in mean.columns]
        return mean[cols], None if sd is None else sd[[c for c in cols if c in sd.columns]]

    def predict(self, adata: ad.AnnData, proteins: Sequence[str]) -> pd.DataFrame:
        return self.predict_with_sd(adata, proteins)[0]
