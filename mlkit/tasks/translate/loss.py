"""DRIT's losses (spec §2.2): BCE-with-logits GAN terms summed over discriminator scales, the content
discriminator's terms, the KL of the attribute posterior (summed over batch and dims, as the original), L1 terms
and the DRIT++ mode-seeking ratio."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gan(outs: list[torch.Tensor], target: float) -> torch.Tensor:
    """Sum over scales of the mean BCE between sigmoid(logit map) and a constant target."""
    return sum(F.binary_cross_entropy_with_logits(o, torch.full_like(o, target)) for o in outs)  # type: ignore[return-value]


def d_loss(dis: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """A domain discriminator's loss: real -> 1, fake (detached by the caller) -> 0, summed over scales."""
    return gan(dis(real), 1.0) + gan(dis(fake), 0.0)


def content_d_loss(dis_c: torch.nn.Module, zc_a: torch.Tensor, zc_b: torch.Tensor) -> torch.Tensor:
    """D^c's loss: content of A -> 0, content of B -> 1 (inputs detached by the caller)."""
    pa, pb = dis_c(zc_a), dis_c(zc_b)
    return F.binary_cross_entropy_with_logits(pa, torch.zeros_like(pa)) + \
        F.binary_cross_entropy_with_logits(pb, torch.ones_like(pb))  # fmt: skip


def content_g_loss(dis_c: torch.nn.Module, zc: torch.Tensor) -> torch.Tensor:
    """The encoders' side of the content adversary: D^c's output pushed to 0.5."""
    p = dis_c(zc)
    return F.binary_cross_entropy_with_logits(p, torch.full_like(p, 0.5))


def kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) = -1/2 sum(1 + log sigma^2 - mu^2 - sigma^2), summed over batch and dims."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def mode_seeking(x1: torch.Tensor, x2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """DRIT++ / MSGAN: 1 / (mean|x2 - x1| / mean|z2 - z1| + 1e-5)."""
    return 1.0 / (torch.mean(torch.abs(x2 - x1)) / torch.mean(torch.abs(z2 - z1)) + 1e-5)
