"""Token-set encoders: a cell is a set of (feature ID, value) tokens.

A token's embedding is its feature-ID embedding times a value embedding; the cell embedding is the
sum over the cell's tokens (a sparse matrix product, so no attention over thousands of genes), plus a
learned per-dataset embedding that absorbs batch effects, followed by residual MLP blocks. The sum makes
the encoder invariant to the order of the input features by construction.
"""
from __future__ import annotations

import math
import warnings

import torch
from torch import nn

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)


class ValueBasis(nn.Module):
    """Fixed basis functions of a value: presence (1), the value itself, and triangular bins."""

    centres: torch.Tensor  # buffer

    def __init__(self, n_bins: int = 4, lo: float = 0.0, hi: float = 4.0):
        super().__init__()
        centres = torch.linspace(lo, hi, n_bins) if n_bins > 1 else torch.tensor([lo])
        self.register_buffer("centres", centres, persistent=False)
        self.width = (hi - lo) / max(n_bins - 1, 1) or 1.0
        self.n_basis = n_bins + 2

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        """values (n,) -> (n, n_basis)."""
        hats = torch.relu(1.0 - (values[:, None] - self.centres).abs() / self.width)
        return torch.cat([torch.ones_like(values)[:, None], values[:, None], hats], dim=1)


class ResidualBlock(nn.Module):
    def __init__(self, d: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.ff(self.norm(x))


class TokenSetEncoder(nn.Module):
    """Encode a sparse (cells x features) token matrix into (cells x d_model) embeddings.

    Explicitly stored entries are the cell's tokens (expressed genes, or measured proteins including
    zero values); absent entries contribute nothing. Dataset index 0 means "unknown dataset".
    """

    input_mask: torch.Tensor | None  # buffer (None: every feature is read)

    def __init__(self, n_features: int, n_datasets: int, d_model: int = 128, n_blocks: int = 2,
                 dropout: float = 0.1, n_bins: int = 4, value_range: tuple[float, float] = (0.0, 4.0),
                 input_mask: torch.Tensor | None = None):
        """input_mask: (n_features,) bool, the features read as tokens (None: all); tokens of the others
        are ignored, though their ID embeddings exist (and are trained as output queries)."""
        super().__init__()
        reads_all = input_mask is None or bool(torch.as_tensor(input_mask).all())
        self.register_buffer("input_mask", None if reads_all else torch.as_tensor(input_mask, dtype=torch.bool),
                             persistent=False)
        self.basis = ValueBasis(n_bins, *value_range)
        self.id_emb = nn.Parameter(torch.randn(n_features, d_model) / math.sqrt(d_model))
        self.value_emb = nn.Parameter(1.0 + 0.1 * torch.randn(self.basis.n_basis, d_model))
        self.dataset_emb = nn.Embedding(n_datasets + 1, d_model)
        nn.init.zeros_(self.dataset_emb.weight)
        self.in_norm = nn.LayerNorm(d_model)
        self.blocks = nn.Sequential(*(ResidualBlock(d_model, dropout) for _ in range(n_blocks)))
        self.out_norm = nn.LayerNorm(d_model)

    @property
    def n_features(self) -> int:
        return self.id_emb.shape[0]

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """Sum over tokens of id_emb[feature] * value_emb(value), as one CSR x dense product.

        With basis functions phi_k: sum_g id[g] * sum_k phi_k(v_g) w_k = [phi_k(v_g)]_(g,k) @ (id[g] * w_k).
        """
        tokens = tokens.coalesce()
        (rows, cols), values, n_cells = tokens.indices(), tokens.values(), tokens.shape[0]
        if self.input_mask is not None:
            keep = self.input_mask[cols]
            rows, cols, values = rows[keep], cols[keep], values[keep]
        phi = self.basis(values)                                            # (nnz, K)
        k = phi.shape[1]
        counts = torch.bincount(rows, minlength=n_cells) * k
        crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        col = (cols[:, None] * k + torch.arange(k, device=cols.device)).reshape(-1)
        table = (self.id_emb[:, None, :] * self.value_emb[None, :, :]).reshape(-1, self.id_emb.shape[1])
        mat = torch.sparse_csr_tensor(crow, col, phi.reshape(-1), (n_cells, table.shape[0]),
                                      check_invariants=False)
        return mat @ table

    def forward(self, tokens: torch.Tensor, dataset: torch.Tensor) -> torch.Tensor:
        h = self.in_norm(self.pool(tokens)) + self.dataset_emb(dataset)
        return self.out_norm(self.blocks(h))


class FeatureQueryDecoder(nn.Module):
    """Predict chosen features' values as (projected cell embedding) . (their ID embeddings) + bias.

    Ties an output feature to its input-side ID embedding, so features the encoder does not read still
    get trained embeddings (used for coding genes of proteins requested only through their gene link).
    """

    def __init__(self, n_features: int, d_model: int, dropout: float = 0.1):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Dropout(dropout))
        self.bias = nn.Parameter(torch.zeros(n_features))

    def forward(self, h: torch.Tensor, id_emb: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """h (B, d), id_emb (n_features, d), features (F,) long -> (B, F)."""
        return self.mlp(h) @ id_emb[features].T / math.sqrt(id_emb.shape[1]) + self.bias[features]


class FeatureDecoder(nn.Module):
    """Predict every feature's value from a cell embedding (masked-value pretraining head)."""

    def __init__(self, n_features: int, d_model: int, dropout: float = 0.1):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Dropout(dropout))
        self.out = nn.Linear(d_model, n_features)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(self.mlp(h))
