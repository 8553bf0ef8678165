"""Training loops for the three stages (pretrain, align, translate), checkpoints and resume."""
from ._calibration import calibrate_scale, fit_gene_link, z_value
from ._checkpoint import load_checkpoint, save_checkpoint
from ._loops import Batch, CellPool, pretrain_loss
from ._metrics import foscttm, interval_coverage, matching_accuracy, pearson_per_column
from ._trainer import Trainer, TrainState

__all__ = ["Batch", "CellPool", "Trainer", "TrainState", "calibrate_scale", "fit_gene_link", "load_checkpoint",
           "save_checkpoint", "foscttm", "interval_coverage", "matching_accuracy", "pearson_per_column",
           "pretrain_loss", "z_value"]
