"""Long-tail losses on soft targets (spec §2.3): Bal-BCE, BCE, CE, Bal-CE (logit adjustment), CB-CE/CB-BCE, LDAM.

Every loss takes logits z (B, C) and soft targets y (B, C) (timm's mixed, smoothed targets or smoothed one-hots) and
returns a scalar. The prior offsets are added in training only; prediction is argmax of the plain logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("bal_bce", "bce", "ce", "bal_ce", "cb_ce", "cb_bce", "ldam")
SIGMOID = ("bal_bce", "bce", "cb_bce")  # losses whose scores are per-class sigmoids


def prior(counts: torch.Tensor) -> torch.Tensor:
    """pi_j = n_j / sum n (float64 for the log-odds of tiny classes; an empty class counts as 1 image)."""
    n = counts.double().clamp_min(1)
    return n / n.sum()


def sigmoid_bias(counts: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """tau * [log pi_j - log(1 - pi_j)]: the Bal-BCE offset (uniform pi gives -tau log(C - 1) for every class)."""
    pi = prior(counts)
    return (tau * (torch.log(pi) - torch.log1p(-pi))).float()


def softmax_bias(counts: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """tau * log pi_j: the Bal-CE / logit-adjustment offset."""
    return (tau * torch.log(prior(counts))).float()


def cb_weights(counts: torch.Tensor, beta: float = 0.9999) -> torch.Tensor:
    """Class-balanced weights (1 - beta) / (1 - beta^n_j), normalised to sum C."""
    n = counts.double()
    w = (1.0 - beta) / (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), n)).clamp_min(1e-12)
    return (w / w.sum() * len(n)).float()


def ldam_margins(counts: torch.Tensor, max_m: float = 0.5) -> torch.Tensor:
    """LDAM margins proportional to n_j^(-1/4), the largest equal to max_m."""
    m = 1.0 / counts.double().clamp_min(1).pow(0.25)
    return (m * (max_m / m.max())).float()


def soft_ce(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return -(y * F.log_softmax(z, dim=1)).sum(dim=1).mean()


def bce_times_c(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """C * mean over (batch, classes) of BCEWithLogits = per-sample sum over classes, averaged over the batch."""
    return F.binary_cross_entropy_with_logits(z, y) * z.shape[1]


class LongTailLoss(torch.nn.Module):
    """One of LOSSES with the class counts of the training list (the buffers move with .to(device))."""

    def __init__(self, name: str, counts: torch.Tensor, tau: float = 1.0, cb_beta: float = 0.9999,
                 ldam_s: float = 30.0) -> None:  # fmt: skip
        super().__init__()
        if name not in LOSSES:
            raise ValueError(f"unknown loss {name!r}")
        self.name, self.ldam_s = name, float(ldam_s)
        counts = torch.as_tensor(counts, dtype=torch.float64)
        self.register_buffer("sig_bias", sigmoid_bias(counts, tau))
        self.register_buffer("soft_bias", softmax_bias(counts, tau))
        self.register_buffer("cb", cb_weights(counts, cb_beta))
        self.register_buffer("margins", ldam_margins(counts))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z, y = z.float(), y.float()
        if self.name == "bal_bce":
            return bce_times_c(z + self.sig_bias, y)
        if self.name == "bce":
            return bce_times_c(z, y)
        if self.name == "ce":
            return soft_ce(z, y)
        if self.name == "bal_ce":
            return soft_ce(z + self.soft_bias, y)
        w = y @ self.cb  # per-sample class-balanced weight (the target's mix of class weights)
        if self.name == "cb_ce":
            return (-(y * F.log_softmax(z, dim=1)).sum(dim=1) * w).mean()
        if self.name == "cb_bce":
            per = F.binary_cross_entropy_with_logits(z, y, reduction="none").sum(dim=1)
            return (per * w).mean()
        return soft_ce(self.ldam_s * (z - y * self.margins), y)  # ldam: margin on the target's classes
