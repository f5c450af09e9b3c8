"""Mutual-information bounds on critic score matrices (spec mi §2, §5), in nats, all in the log domain.

A score matrix `s` is M x M with s[i, j] = critic(x_i, y_j): the diagonal holds the M positive pairs, the
off-diagonal the M(M-1) pairs of the product of marginals. Every bound masks the diagonal with -inf where it sums
over negatives, and clamps nothing except SMILE's clip.

Two paths per bound, following the kernels convention (mlkit/kernels/__init__.py):
- `<bound>_reference(...)`: plain NumPy float64, one anchor at a time, written for clarity (the tests' truth);
- `<bound>(...)`: the torch path (CPU or CUDA tensors, differentiable), vectorised over anchors.
There is no Numba path: the bounds are training objectives and need autograd.

Estimators whose training gradient differs from their value (MINE, JS, SMILE) return `value + (surrogate -
surrogate.detach())`: the number is the estimate, the gradient is the surrogate's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# ------------------------------------------------------------------------------------------------ references


def _lse(v: np.ndarray) -> float:
    v = np.asarray(v, dtype=np.float64)
    m = np.max(v)
    return float(m + np.log(np.sum(np.exp(v - m)))) if np.isfinite(m) else float(m)


def _off(s: np.ndarray) -> np.ndarray:
    m = s.shape[0]
    return np.asarray([s[i, j] for i in range(m) for j in range(m) if i != j], dtype=np.float64)


def infonce_reference(s: np.ndarray) -> float:
    """log M + mean_i [s_ii - logsumexp_j s_ij] (K = M, the positive included)."""
    s = np.asarray(s, dtype=np.float64)
    m = s.shape[0]
    return float(np.mean([s[i, i] - _lse(s[i]) for i in range(m)]) + math.log(m))


def nwj_reference(s: np.ndarray) -> float:
    """mean_i s_ii - mean_{i != j} exp(s_ij - 1)."""
    s = np.asarray(s, dtype=np.float64)
    return float(np.mean(np.diag(s)) - np.mean(np.exp(_off(s) - 1.0)))


def dv_reference(s: np.ndarray, clip: float | None = None) -> float:
    """Donsker-Varadhan: mean_i s_ii - log mean_{i != j} exp(s_ij), the negatives clipped to [-clip, clip]."""
    s = np.asarray(s, dtype=np.float64)
    off = _off(s) if clip is None else np.clip(_off(s), -clip, clip)
    return float(np.mean(np.diag(s)) - (_lse(off) - math.log(off.size)))


def tuba_reference(s: np.ndarray, b: float) -> float:
    """TUBA with a constant log-baseline b: mean s_ii - mean_{i != j} exp(s_ij - b) - b + 1 (b = 1 gives NWJ)."""
    s = np.asarray(s, dtype=np.float64)
    return float(np.mean(np.diag(s)) - np.mean(np.exp(_off(s) - b)) - b + 1.0)


def js_reference(s: np.ndarray) -> float:
    """The f-GAN Jensen-Shannon objective: mean -softplus(-s_ii) - mean_{i != j} softplus(s_ij)."""
    s = np.asarray(s, dtype=np.float64)
    return float(np.mean(-np.logaddexp(0.0, -np.diag(s))) - np.mean(np.logaddexp(0.0, _off(s))))


def is_weights_reference(psi: np.ndarray) -> np.ndarray:
    """w_ij = exp(psi_ij) / sum_{l != i} exp(psi_il) for j != i, and w_ii = 0 (spec §2.4)."""
    psi = np.asarray(psi, dtype=np.float64)
    m = psi.shape[0]
    w = np.zeros((m, m))
    for i in range(m):
        others = [j for j in range(m) if j != i]
        z = _lse(psi[i, others])
        for j in others:
            w[i, j] = math.exp(psi[i, j] - z)
    return w


def cnce_is_reference(phi: np.ndarray, psi: np.ndarray, k: int | None = None) -> float:
    """mean_i [phi_ii - log((1/K)(e^phi_ii + (K-1) sum_{j != i} w_ij e^phi_ij))] with w from psi (spec §2.4)."""
    phi = np.asarray(phi, dtype=np.float64)
    m = phi.shape[0]
    k = m if k is None else k
    w = is_weights_reference(psi)
    out = []
    for i in range(m):
        neg = sum(w[i, j] * math.exp(phi[i, j]) for j in range(m) if j != i)
        out.append(phi[i, i] - math.log((math.exp(phi[i, i]) + (k - 1) * neg) / k))
    return float(np.mean(out))


def cnce_reference(pos: np.ndarray, neg: np.ndarray) -> float:
    """Contrastive bound with explicit negatives: mean_i [pos_i - log((e^pos_i + sum_k e^neg_ik) / K)]."""
    pos, neg = np.asarray(pos, dtype=np.float64), np.asarray(neg, dtype=np.float64)
    k = neg.shape[1] + 1
    return float(np.mean([pos[i] - (_lse(np.r_[pos[i], neg[i]]) - math.log(k)) for i in range(len(pos))]))


# ------------------------------------------------------------------------------------------------ torch paths


def _eye(s: Any) -> Any:
    import torch

    return torch.eye(s.shape[0], dtype=torch.bool, device=s.device)


def _off_lse(s: Any) -> Any:
    """logsumexp over the off-diagonal entries of s (a scalar)."""
    return s.masked_fill(_eye(s), float("-inf")).flatten().logsumexp(0)


def infonce(s: Any) -> Any:
    """I_NCE = log M + mean_i [s_ii - logsumexp_j s_ij] (spec §2.1); <= log M."""
    m = s.shape[0]
    return (s.diagonal() - s.logsumexp(1)).mean() + math.log(m)


def nwj(s: Any) -> Any:
    """NWJ / f-GAN KL: mean s_ii - mean_{i != j} exp(s_ij - 1)."""
    m = s.shape[0]
    return s.diagonal().mean() - (_off_lse(s) - math.log(m * (m - 1)) - 1.0).exp()


def dv(s: Any, clip: float | None = None) -> Any:
    """Donsker-Varadhan: mean s_ii - log mean_{i != j} exp(s_ij); SMILE clips the negatives to [-clip, clip]."""
    m = s.shape[0]
    neg = s if clip is None else s.clamp(-clip, clip)
    return s.diagonal().mean() - (_off_lse(neg) - math.log(m * (m - 1)))


def tuba(s: Any, b: Any) -> Any:
    """TUBA with a learned constant log-baseline b (a scalar tensor): mean s_ii - E_q[e^{s - b}] - b + 1."""
    m = s.shape[0]
    return s.diagonal().mean() - (_off_lse(s) - math.log(m * (m - 1)) - b).exp() - b + 1.0


def js_fgan(s: Any) -> Any:
    """f-GAN Jensen-Shannon objective (a training signal, not an MI value)."""
    import torch.nn.functional as F

    m = s.shape[0]
    off = F.softplus(s).masked_fill(_eye(s), 0.0).sum() / (m * (m - 1))
    return -F.softplus(-s.diagonal()).mean() - off


def js(s: Any) -> Any:
    """Poole et al.'s JS estimator: value NWJ(s + 1) (the f-GAN optimum is log-ratio - 1), gradient of JS."""
    value = nwj(s + 1.0)
    surrogate = js_fgan(s)
    return value.detach() + (surrogate - surrogate.detach())


def smile(s: Any, clip: float) -> Any:
    """SMILE (Song & Ermon 2020): value DV with the negatives clipped to [-clip, clip], gradient of JS."""
    value = dv(s, clip)
    surrogate = js_fgan(s)
    return value.detach() + (surrogate - surrogate.detach())


def mine(s: Any, log_ema: Any, momentum: float) -> tuple[Any, Any]:
    """MINE: value DV; gradient debiased by a moving average of E_q[e^s] (kept in the log domain).

    log_ema: the running log E_q[e^s] (a scalar tensor, NaN before the first step). Returns (value, new log_ema).
    """
    import torch

    m = s.shape[0]
    log_mean = _off_lse(s) - math.log(m * (m - 1))
    cur = log_mean.detach()
    if torch.isnan(log_ema):
        new = cur
    else:
        new = torch.logaddexp(log_ema + math.log(momentum), cur + math.log1p(-momentum))
    surrogate = s.diagonal().mean() - (log_mean - new).exp()  # grad = grad E_p s - grad E_q[e^s] / ema
    value = s.diagonal().mean() - log_mean
    return value.detach() + (surrogate - surrogate.detach()), new


def is_log_weights(psi: Any) -> Any:
    """log w_ij of the self-normalised importance weights over the other samples (diagonal -inf), detached."""
    p = psi.detach().masked_fill(_eye(psi), float("-inf"))
    return p - p.logsumexp(1, keepdim=True)


def ess(log_w: Any) -> Any:
    """Effective sample size 1 / sum_j w_ij^2 per anchor (M - 1 for uniform weights, 1 when collapsed)."""
    return (-(2.0 * log_w).logsumexp(1)).exp()


def cnce_is(phi: Any, psi: Any, k: int | None = None) -> tuple[Any, Any]:
    """I_CNCE-IS (spec §2.4): the conditional contrastive bound with in-batch negatives re-weighted by w(psi).

    phi: M x M conditional critic scores phi(x'_i, x''_i, y_j); psi: M x M proposal log-ratios (detached here);
    k: nominal contrast size K (default M). Returns (mean_i T_i, ESS per anchor).
    """
    m = phi.shape[0]
    k = m if k is None else int(k)
    log_w = is_log_weights(psi)
    neg = (log_w + phi.masked_fill(_eye(phi), float("-inf"))).logsumexp(1)  # log sum_{j != i} w_ij e^phi_ij
    pos = phi.diagonal()
    import torch

    denom = torch.logaddexp(pos, neg + math.log(k - 1)) - math.log(k) if k > 1 else pos
    return (pos - denom).mean(), ess(log_w)


def sir_indices(psi: Any, n: int, generator: Any = None) -> Any:
    """Sampling-importance-resampling: n indices j != i per anchor drawn from Categorical(w_i.) (with replacement)."""
    import torch

    w = is_log_weights(psi).exp()
    if generator is not None and generator.device != w.device:  # a CPU generator draws for a CUDA batch
        return torch.multinomial(w.cpu(), n, replacement=True, generator=generator).to(w.device)
    return torch.multinomial(w, n, replacement=True, generator=generator)


def cnce(pos: Any, neg: Any) -> Any:
    """Contrastive bound with explicit negatives: pos [M], neg [M, K-1]; mean_i [pos_i - log mean(e^{pos, neg})]."""
    import torch

    allv = torch.cat([pos[:, None], neg], 1)
    return (pos - allv.logsumexp(1)).mean() + math.log(allv.shape[1])


__all__ = [
    "cnce", "cnce_is", "cnce_is_reference", "cnce_reference", "dv", "dv_reference", "ess", "infonce",
    "infonce_reference", "is_log_weights", "is_weights_reference", "js", "js_fgan", "js_reference", "mine",
    "nwj", "nwj_reference", "sir_indices", "smile", "tuba", "tuba_reference",
]  # fmt: skip
