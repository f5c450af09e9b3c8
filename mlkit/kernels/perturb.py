"""Adversarial-perturbation kernels: exact L-inf / L2 ball projections with the [0, 1] box, the C&W margin loss,
and batched FGSM, PGD (L-inf and L2) and CW-L2 attacks in plain torch (CPU or CUDA: whatever device x is on).

Each torch fast path has a NumPy reference beside it (`*_ref`, loops over images, float64) that the property tests
compare against. All epsilons are in [0, 1] pixel units; the model takes [0, 1] pixels (normalisation inside).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

Model = Callable[[torch.Tensor], torch.Tensor]


# ------------------------------------------------------------------------------------------------ projections
def project_linf(x0: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """x' = clip_[0,1](x0 + clip_[-eps,eps](x - x0)): first the ball, then the box (the box keeps it in the ball)."""
    return (x0 + (x - x0).clamp(-eps, eps)).clamp(0.0, 1.0)


def project_linf_ref(x0: np.ndarray, x: np.ndarray, eps: float) -> np.ndarray:
    out = np.empty_like(x0, dtype=np.float64)
    for i in range(len(x0)):
        d = np.minimum(np.maximum(x[i].astype(np.float64) - x0[i], -eps), eps)
        out[i] = np.minimum(np.maximum(x0[i] + d, 0.0), 1.0)
    return out


def project_l2(x0: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Scale each image's x - x0 onto the L2 ball of radius eps (when outside), then clip to [0, 1]."""
    d = x - x0
    n = d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (d.dim() - 1))
    return (x0 + d * torch.clamp(eps / n, max=1.0)).clamp(0.0, 1.0)


def project_l2_ref(x0: np.ndarray, x: np.ndarray, eps: float) -> np.ndarray:
    out = np.empty_like(x0, dtype=np.float64)
    for i in range(len(x0)):
        d = x[i].astype(np.float64) - x0[i]
        n = max(float(np.sqrt((d**2).sum())), 1e-12)
        out[i] = np.clip(x0[i] + d * min(1.0, eps / n), 0.0, 1.0)
    return out


# ------------------------------------------------------------------------------------------------ C&W margin
def cw_margin(logits: torch.Tensor, labels: torch.Tensor, targeted: bool, kappa: float = 0.0) -> torch.Tensor:
    """Per-image C&W loss on logits Z: untargeted max(Z_y - max_{i!=y} Z_i, -kappa), targeted (labels = t)
    max(max_{i!=t} Z_i - Z_t, -kappa). Zero (kappa = 0) exactly once the attack has succeeded."""
    own = logits.gather(1, labels[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(labels, logits.shape[1]).bool(), float("-inf")).amax(1)
    diff = other - own if targeted else own - other
    return diff.clamp_min(-kappa)


def cw_margin_ref(logits: np.ndarray, labels: np.ndarray, targeted: bool, kappa: float = 0.0) -> np.ndarray:
    out = np.empty(len(logits))
    for i, (z, c) in enumerate(zip(logits.astype(np.float64), labels)):
        other = max(v for j, v in enumerate(z) if j != c)
        out[i] = max((other - z[c]) if targeted else (z[c] - other), -kappa)
    return out


# ------------------------------------------------------------------------------------------------ attacks
def _grad(model: Model, x: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Gradient of the attacker's objective (CE ascent; targeted: CE descent to the target) w.r.t. the input."""
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), labels, reduction="sum")
    (g,) = torch.autograd.grad(-loss if targeted else loss, x)
    return g


def fgsm(model: Model, x: torch.Tensor, labels: torch.Tensor, eps: float, targeted: bool = False) -> torch.Tensor:
    """One signed-gradient step of size eps (Goodfellow et al.), clipped to [0, 1]."""
    return project_linf(x, x + eps * _grad(model, x, labels, targeted).sign(), eps).detach()


def pgd(model: Model, x: torch.Tensor, labels: torch.Tensor, eps: float, steps: int = 40, step: float | None = None,
        norm: str = "linf", targeted: bool = False, random_start: bool = True,
        generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
    """Projected gradient descent (Madry et al.): `steps` steps of size `step` (default 2.5 eps / steps), projected
    on the eps-ball of `norm` (linf: signed steps; l2: normalised steps) and the [0, 1] box; uniform random start."""
    step = 2.5 * eps / steps if step is None else step
    proj = project_linf if norm == "linf" else project_l2
    adv = x.clone()
    if random_start:
        noise = torch.rand(x.shape, generator=generator, device="cpu").to(x.device) * 2 - 1
        if norm == "l2":
            noise = noise / noise.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1)) * eps
        adv = proj(x, x + noise * (eps if norm == "linf" else 1.0), eps)
    for _ in range(steps):
        g = _grad(model, adv, labels, targeted)
        if norm == "linf":
            g = g.sign()
        else:
            g = g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
        adv = proj(x, adv + step * g, eps).detach()
    return adv


def cw_l2(model: Model, x: torch.Tensor, labels: torch.Tensor, c: float = 1.0, steps: int = 100, lr: float = 0.01,
          kappa: float = 0.0, targeted: bool = False, search: int = 1) -> torch.Tensor:  # fmt: skip
    """Carlini & Wagner L2: minimise ||x' - x||^2 + c * margin in tanh space with Adam; `search` binary-search
    rounds on c per image. Returns the successful x' of least L2 per image (x itself where none succeeded)."""
    x = x.detach()
    w0 = torch.atanh((x * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6))
    cs = torch.full((len(x),), float(c), device=x.device)
    lo, hi = torch.zeros_like(cs), torch.full_like(cs, float("inf"))
    best, best_l2 = x.clone(), torch.full_like(cs, float("inf"))
    for _ in range(max(1, search)):
        w = w0.clone().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=lr)
        found = torch.zeros_like(cs, dtype=torch.bool)
        for _ in range(steps):
            adv = (torch.tanh(w) + 1) / 2
            z = model(adv)
            l2 = (adv - x).flatten(1).pow(2).sum(1)
            loss = (l2 + cs * cw_margin(z, labels, targeted, kappa)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                pred = z.argmax(1)
                ok = (pred == labels) if targeted else (pred != labels)
                better = ok & (l2 < best_l2)
                best_l2 = torch.where(better, l2, best_l2)
                best[better] = adv[better].detach()
                found |= ok
        hi = torch.where(found, torch.minimum(hi, cs), hi)
        lo = torch.where(found, lo, torch.maximum(lo, cs))
        cs = torch.where(torch.isinf(hi), cs * 10, (lo + hi) / 2)
    return best.detach()
