"""Seed ensembles: K models trained on the same cohorts with different seeds, predicting as one.

The prediction is the members' mean; the predictive variance is that of the equal-weight mixture of the
members' Gaussians: the mean of their (calibrated) variances plus the variance of their means (over members,
ddof=0), so the spread between seeds widens the intervals where the members disagree. The joint embedding
(and with it mapping) is the first member's: embeddings of models trained from different seeds live in
different spaces and are not averaged.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..errors import InputError


def mixture(means: Sequence[torch.Tensor], sds: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and SD of the equal-weight mixture of Gaussians N(means[k], sds[k]^2), elementwise.

    mean = (1/K) sum_k m_k;  variance = (1/K) sum_k s_k^2 + (1/K) sum_k (m_k - mean)^2.
    """
    if len(means) != len(sds) or not means:
        raise ValueError("mixture needs one SD per mean and at least one member")
    m = torch.stack(list(means))
    s = torch.stack(list(sds))
    mean = m.mean(0)
    var = (s * s).mean(0) + ((m - mean) ** 2).mean(0)
    return mean, var.sqrt()


def ensemble_of(models: Sequence) -> Any:
    """One ScProSpatial predicting with every model of `models` (trained on the same cohorts and vocabulary,
    typically with different seeds). The first model's embedding, configuration and metadata lead. The result is
    of the first model's class (no import of _model here: it imports this module)."""
    models = [m for model in models for m in model.members_as_models()]
    if not models:
        raise InputError("an ensemble needs at least one model")
    first = models[0]
    for i, m in enumerate(models[1:], start=1):
        if m.vocab.to_dict() != first.vocab.to_dict() or m.datasets != first.datasets:
            raise InputError(f"ensemble member {i} has another vocabulary or other training cohorts than member 0")
        if m.config.to_dict() != first.config.to_dict():
            raise InputError(f"ensemble member {i} has another model configuration than member 0")
    out = type(first)(first.module, first.vocab, first.config, first.datasets, dict(first.meta), first.device)
    out.extra_members = [(m.module, member_meta(m)) for m in models[1:]]
    for module, _ in out.extra_members:
        module.to(first.device)
    out.meta["ensemble"] = {"size": len(models), "members": [member_meta(m) for m in models]}
    out.meta["model_id"] = out._fingerprint()
    return out


def member_meta(model) -> dict:
    """What a member keeps of its own metadata inside an ensemble checkpoint."""
    keep = ("seed", "scale", "model_id", "link_calibration")
    return {k: model.meta[k] for k in keep if k in model.meta}
