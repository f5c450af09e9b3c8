"""Toy task model: nn.Modules only (no I/O, no device logic)."""

from __future__ import annotations

from torch import nn


def build(arch: str, hidden: int, dropout: float) -> nn.Module:
    """A linear classifier or a one-hidden-layer MLP over two inputs."""
    if arch == "linear":
        return nn.Linear(2, 2)
    return nn.Sequential(nn.Linear(2, hidden), nn.Tanh(), nn.Dropout(dropout), nn.Linear(hidden, 2))
