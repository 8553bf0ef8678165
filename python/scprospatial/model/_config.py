"""Model and training configuration (plain dataclasses, stored in every checkpoint)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import InputError

STAGES = ("pretrain", "align", "translate")
# Config fields added after checkpoints were already written, with the value those checkpoints were trained with
# (a checkpoint without the field is read with it, not with the new default).
OLDER_CHECKPOINTS: dict[str, Any] = {"translate_align_weight": 0.0}


@dataclass
class ModelConfig:
    """Model and training configuration: every field has a default, and each checkpoint stores them all.

    The fields set the vocabulary (``n_hvg``), the network's size (``d_model``, ``d_joint``, ``d_hidden``,
    ``n_blocks``), the optimisation (``lr``, ``batch_size``, ...), the epochs of each stage (``epochs_pretrain``,
    ``epochs_align``, ``epochs_translate``; training stops early after ``patience`` epochs without improvement on
    the validation cells) and the nominal ``coverage`` the predictive SD is calibrated to. The comments next to
    the fields in ``scprospatial/model/_config.py`` say what each does and how its default was chosen.
    """

    # vocabulary
    n_hvg: int = 500                  # highly variable genes per training cohort (union), plus coding genes;
                                      # fewer HVGs transfer better across cohorts (chosen on validation cells)
    # architecture
    d_model: int = 128
    d_joint: int = 64                 # joint RNA/protein space (CLIP alignment)
    d_hidden: int = 64                # translator head width
    n_blocks: int = 2
    dropout: float = 0.2
    n_value_bins: int = 4
    # optimisation
    batch_size: int = 256
    min_steps_per_epoch: int = 4      # smaller batches (down to 16 cells) for small training sets
    lr: float = 2e-3
    weight_decay: float = 1e-4
    epochs_pretrain: int = 30
    epochs_align: int = 30
    epochs_translate: int = 120
    patience: int = 20                # early stopping on the validation part of the training cells
    val_fraction: float = 0.15
    mask_prob: float = 0.25           # masked-value pretraining
    dataset_dropout: float = 0.2      # train the 'unknown dataset' embedding for new cohorts
    token_dropout: float = 0.5        # RNA token dropout while translating (augmentation)
    keep_coding_tokens: bool = True   # ... never dropping the measured proteins' coding genes, so the head learns
                                      # to read a protein's own gene (the signal that carries across cohorts)
    support_quantile: float = 1.0     # a coding gene's training support: this quantile of its training values
                                      # (1.0: the largest); beyond it the prediction extends with the gene link's
                                      # slope (> 1: no extrapolation). 0.99 cost 0.012 on the random split
                                      # (development, benchmarks/PROTOCOL.md)
    encoder_lr_scale: float = 0.3     # encoder learning-rate factor while translating
    translate_align_weight: float = 1.0  # stage 2's contrastive loss keeps training the RNA projection while
                                      # translating (translation unchanged). Without it the joint space drifted
                                      # after stage 3: validation FOSCTTM 0.092 -> 0.106 (seed 0), 0.096 -> 0.118
                                      # (1), 0.091 -> 0.159 (2); with it 0.092 -> 0.092, 0.091 -> 0.094 (MALT,
                                      # development; benchmarks/README.md, stages section)
    mse_weight: float = 1.0           # extra MSE on the mean next to the Gaussian NLL
    ema_decay: float = 0.98           # in (0, 1): translate keeps a per-step moving average of the weights
                                      # (0: off); the average is what is validated and kept
    coverage: float = 0.9             # nominal coverage the variance scale is calibrated to

    def epochs(self, stage: str) -> int:
        return getattr(self, f"epochs_{stage}")

    def with_epochs(self, epochs: int | None) -> ModelConfig:
        """A copy with every stage's epochs set to `epochs` (None: unchanged)."""
        if epochs is None:
            return self
        if epochs < 1:
            raise InputError(f"epochs must be >= 1, got {epochs}")
        changes: dict[str, Any] = {f"epochs_{s}": epochs for s in STAGES}
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = {**OLDER_CHECKPOINTS, **d}   # fields added later: what a checkpoint without them was trained with
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise InputError(f"checkpoint config has unknown fields {sorted(unknown)} (newer version?)")
        return cls(**d)


def check_stages(stages) -> tuple[str, ...]:
    stages = tuple(stages)
    bad = [s for s in stages if s not in STAGES]
    if bad or not stages:
        raise InputError(f"unknown stage(s) {bad or stages}; choose from {', '.join(STAGES)}")
    return tuple(s for s in STAGES if s in stages)
