"""AdvGAN objective (spec §2): L = L_adv + alpha * L_GAN + beta * L_hinge (paper form, LSGAN, C&W on logits), or
the port's form (C&W on softmax probabilities summed over the batch, weight 10, un-hinged norm of raw G(x))."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mlkit.kernels.perturb import cw_margin


def perturb(raw: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """x' = clip_[0,1](x + clip_[-eps,eps](G(x))) (eps <= 0: no L-inf projection, only the box)."""
    p = raw.clamp(-eps, eps) if eps > 0 else raw
    return (x + p).clamp(0.0, 1.0)


def goal(y: torch.Tensor, targeted: bool, target_class: int, k: int = 10) -> torch.Tensor:
    """The labels the C&W term works on: the true y (untargeted), a fixed class, or the rule t = (y + 1) mod k."""
    if not targeted:
        return y
    return torch.full_like(y, target_class) if target_class >= 0 else (y + 1) % k


def success(logits: torch.Tensor, y: torch.Tensor, t: torch.Tensor, targeted: bool) -> torch.Tensor:
    pred = logits.argmax(1)
    return (pred == t) if targeted else (pred != y)


def d_loss(D: torch.nn.Module, x: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    """LSGAN discriminator: (D(x) - 1)^2 + D(x')^2, x' detached (G is not updated by this loss)."""
    real, fake = D(x), D(adv.detach())
    return F.mse_loss(real, torch.ones_like(real)) + F.mse_loss(fake, torch.zeros_like(fake))


def g_loss(cfg: dict, D: torch.nn.Module, f: torch.nn.Module, x: torch.Tensor, raw: torch.Tensor, adv: torch.Tensor,
           t: torch.Tensor) -> dict[str, torch.Tensor]:  # fmt: skip
    """Generator terms and total; `t` are the C&W labels (goal())."""
    fake = D(adv)
    gan = F.mse_loss(fake, torch.ones_like(fake))
    logits = f(adv)
    targeted = bool(cfg["targeted"])
    if cfg["loss"] == "port":
        probs = F.softmax(logits, 1)
        adv_term = cw_margin(probs, t, targeted, 0.0).sum()
        norm = raw.flatten(1).norm(dim=1).mean()
        total = gan + 10.0 * adv_term + 1.0 * norm
    else:
        adv_term = cw_margin(logits, t, targeted, float(cfg["kappa"])).mean()
        norm = (F.relu((adv - x).flatten(1).norm(dim=1) - float(cfg["c"]))).mean()
        total = adv_term + float(cfg["alpha"]) * gan + float(cfg["beta"]) * norm
    return {"total": total, "adv": adv_term, "gan": gan, "norm": norm, "logits": logits}
