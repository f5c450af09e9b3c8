"""GnnBP: the MLP trained on precomputed propagated features (spec §2.4)."""

from __future__ import annotations

import math

import torch
from torch import nn


class Dense(nn.Module):
    """x W with W ~ U(-1/sqrt(out), 1/sqrt(out)); optional BatchNorm1d of x W; residual (+x) when in == out."""

    def __init__(self, in_dim: int, out_dim: int, bn: bool = False, residual: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_dim, out_dim))
        bound = 1.0 / math.sqrt(out_dim)
        nn.init.uniform_(self.weight, -bound, bound)
        self.bn = nn.BatchNorm1d(out_dim) if bn else None
        self.residual = residual and in_dim == out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x @ self.weight
        if self.bn is not None:
            out = self.bn(out)
        return out + x if self.residual else out


class GnnBP(nn.Module):
    """Dense(F->h) ReLU [Dense(h->h) ReLU] x (layers-2) Dense(h->C); dropout before every Dense; no output bias."""

    def __init__(
        self,
        in_dim: int,
        hidden: int,
        out_dim: int,
        layers: int = 2,
        dropout: float = 0.5,
        bias: str = "none",
        residual: bool = True,
    ) -> None:
        super().__init__()
        if layers < 2:
            raise ValueError("GnnBP needs at least 2 layers")
        dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
        bn = bias == "bn"
        self.layers = nn.ModuleList(
            Dense(dims[i], dims[i + 1], bn=bn and i < layers - 1, residual=residual) for i in range(layers)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(self.dropout(x))
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x
