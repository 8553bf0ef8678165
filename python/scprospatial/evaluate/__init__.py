"""Evaluation: seeded splits, per-protein metrics, baselines and the `scprospatial evaluate` command."""
from ._files import METHODS, evaluate_files, load_cohort, make_methods, make_splits
from ._model import ScProSpatialMethod, model_available
from ._run import MethodFailed, run_splits, summarise, summary_markdown
from .baselines import (
                        KNN,
                        CodingGene,
                        Features,
                        KernelRidgeSVD,
                        MeanPredictor,
                        Method,
                        Ridge,
                        SVDFeatures,
                        coding_gene_links,
                        default_baselines,
)
from .metrics import ccc, interval_coverage, pearson, pooled_cosine, rmse, score_proteins, spearman
from .splits import (
                        SPLITS,
                        Split,
                        cell_types,
                        cross_cohort_splits,
                        few_shot_splits,
                        leave_protein_out_splits,
                        leave_type_out_splits,
                        random_splits,
)

__all__ = [
    "METHODS", "SPLITS", "KNN", "CodingGene", "Features", "KernelRidgeSVD", "MeanPredictor", "Method",
    "MethodFailed", "Ridge", "ScProSpatialMethod", "SVDFeatures", "Split", "ccc", "cell_types", "coding_gene_links",
    "cross_cohort_splits", "default_baselines", "evaluate_files", "few_shot_splits", "interval_coverage",
    "leave_protein_out_splits", "leave_type_out_splits", "load_cohort", "make_methods", "make_splits",
    "model_available", "pearson", "pooled_cosine", "random_splits", "rmse", "run_splits", "score_proteins",
    "spearman", "summarise", "summary_markdown",
]
