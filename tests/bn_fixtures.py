"""A test helper: BatchNorm layers with non-trivial statistics, so eval-mode rules are exercised for real."""

from __future__ import annotations

import torch


def randomise_bn(module: torch.nn.Module) -> torch.nn.Module:
    """Give every BatchNorm2d random running statistics and affine parameters (in place); returns the module."""
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return module
