"""Losses: masked reconstruction, CLIP-style symmetric InfoNCE, heteroscedastic Gaussian NLL."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over entries where mask is true (0 when none)."""
    m = mask.float()
    return ((pred - target) ** 2 * m).sum() / m.sum().clamp_min(1.0)


def info_nce(a: torch.Tensor, b: torch.Tensor, log_temperature: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE between paired rows of a and b (L2-normalised here)."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = a @ b.T / log_temperature.exp()
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def gaussian_nll(mean: torch.Tensor, logvar: torch.Tensor, target: torch.Tensor,
                 mask: torch.Tensor) -> torch.Tensor:
    """Heteroscedastic Gaussian NLL (constant dropped) averaged over measured entries only.

    Unmeasured entries (mask false) contribute exactly nothing, including no gradient.
    """
    m = mask.float()
    target = torch.where(mask, target, mean.detach())
    nll = 0.5 * (logvar + (target - mean) ** 2 * torch.exp(-logvar))
    return (nll * m).sum() / m.sum().clamp_min(1.0)
