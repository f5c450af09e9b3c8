"""mi objectives: every estimator of `--estimator` on one batch, the training steps and the held-out estimate.

`terms(...)` returns the objective to maximise (its value is the MI estimate; MINE/JS/SMILE carry a surrogate
gradient) and the per-term values. DEMI (spec §2.5) = I_NCE(x_1; y; psi_1) + sum_k I_CNCE(x_k; y | x_{k-1}; phi_k)
with the conditional negatives drawn by importance weights (`is`), resampling (`sir`) or exactly (`oracle`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mlkit.kernels import mi_bounds as B

ESTIMATORS = ("infonce", "nwj", "mine", "tuba", "js", "smile", "demi")
CONDS = ("is", "sir", "oracle")


@dataclass(frozen=True)
class Est:
    """The estimator settings of a run (from the config)."""

    name: str = "demi"
    cond: str = "is"
    clip: float = 5.0
    momentum: float = 0.99
    contrast: int = 0  # DEMI's nominal K; 0 = the batch size

    @staticmethod
    def of(cfg: dict) -> Est:
        return Est(cfg["estimator"], cfg["cond"], float(cfg["clip"]), float(cfg["ema"]), int(cfg["contrast"]))


@dataclass
class Out:
    objective: torch.Tensor  # maximise this
    terms: list[float]  # per-term estimates (one for the non-decomposed estimators)
    ess: float | None = None  # mean effective sample size of the IS weights (DEMI is/sir)

    @property
    def mi(self) -> float:
        return float(sum(self.terms))


def terms(critics: Any, x: torch.Tensor, y: torch.Tensor, est: Est, *, oracle: Any = None, gen: Any = None,
          train: bool = False) -> Out:  # fmt: skip
    """The estimator's objective and per-term values on one batch (x [M, dx], y [M, dy])."""
    if est.name != "demi":
        s = critics.last(x, y)
        if est.name == "infonce":
            v = B.infonce(s)
        elif est.name == "nwj":
            v = B.nwj(s)
        elif est.name == "tuba":
            v = B.tuba(s, critics.baseline)
        elif est.name == "js":
            v = B.js(s)
        elif est.name == "smile":
            v = B.smile(s, est.clip)
        elif est.name == "mine":
            v, new = B.mine(s, critics.log_ema, est.momentum)
            if train:
                critics.log_ema.copy_(new)
        else:
            raise ValueError(f"unknown estimator {est.name}")
        return Out(v, [float(v.detach())])
    m = x.shape[0]
    k = est.contrast or m
    if est.cond == "oracle":
        mats = critics.scores(x, y)
        parts = [B.infonce(mats[0])]
        if len(mats) > 1:  # negatives ~ p(y | x_{k-1}) for every term k >= 2: [s-1, M, K-1, dy]
            yneg = torch.stack([oracle(x[:, : critics.widths[i - 1]], k - 1, gen) for i in range(1, len(mats))])
            neg = critics.cond_pairs(x, yneg)
            parts += [B.cnce(mats[i].diagonal(), neg[i - 1]) for i in range(1, len(mats))]
        return Out(sum(parts), [float(p.detach()) for p in parts])
    mats = critics.scores(x, y)
    parts = [B.infonce(mats[0])]
    acc = mats[0].detach()
    ess_all = []
    for i in range(1, len(mats)):
        if est.cond == "is":
            t, e = B.cnce_is(mats[i], acc, k)
        elif est.cond == "sir":
            idx = B.sir_indices(acc, k - 1, gen)
            t = B.cnce(mats[i].diagonal(), mats[i].gather(1, idx))
            e = B.ess(B.is_log_weights(acc))
        else:
            raise ValueError(f"unknown cond {est.cond}")
        parts.append(t)
        ess_all.append(float(e.mean()))
        acc = acc + mats[i].detach()  # the proposal of the next term: the accumulated log-ratio l_k
    ess = float(np.mean(ess_all)) if ess_all else None
    return Out(sum(parts), [float(p.detach()) for p in parts], ess)


def train_steps(critics: Any, opt: Any, draw: Callable[[Any], tuple], est: Est, steps: int, gen: Any,
                oracle: Any = None, tick: Callable[[], bool] | None = None) -> dict[str, Any]:  # fmt: skip
    """`steps` Adam steps on batches from draw(gen); the per-step training estimates and steps/s."""
    critics.train()
    hist: list[float] = []
    t0 = time.perf_counter()
    for _ in range(steps):
        x, y = draw(gen)
        out = terms(critics, x, y, est, oracle=oracle, gen=gen, train=True)
        opt.zero_grad(set_to_none=True)
        (-out.objective).backward()
        opt.step()
        hist.append(out.mi)
        if not math.isfinite(out.mi):
            break
        if tick is not None and tick():
            break
    dt = max(time.perf_counter() - t0, 1e-9)
    return {"history": hist, "steps_per_s": len(hist) / dt}


@torch.no_grad()
def held_out(critics: Any, batches: list[tuple], est: Est, oracle: Any = None, seed: int = 0) -> dict[str, Any]:
    """The estimate averaged over fixed held-out batches: mean, std over batches, per-term means, ESS."""
    critics.eval()
    gen = torch.Generator().manual_seed(int(seed))
    outs = [terms(critics, x, y, est, oracle=oracle, gen=gen) for x, y in batches]
    mis = np.array([o.mi for o in outs])
    t = np.array([o.terms for o in outs]).mean(0)
    ess = [o.ess for o in outs if o.ess is not None]
    return {"mi": float(mis.mean()), "std": float(mis.std()), "terms": [float(v) for v in t],
            "ess": float(np.mean(ess)) if ess else None}  # fmt: skip
