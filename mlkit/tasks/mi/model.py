"""mi critics (spec §2.6): nn.Modules only.

- separable: psi(a, b) = g(a)^T h(b), g and h MLPs Linear(in, H)-ReLU-[Linear(H, H)-ReLU] x (layers-1)-Linear(H, E);
  one matmul gives the M x M score matrix.
- concat: psi(a, b) = MLP([a; b]) with one output; the M x M matrix costs M^2 MLP rows.

`Critics` holds one critic per chain term: term 1 scores (x_1, y), term k scores (x_k, y) where x_k = [x'; x'']
already contains x_{k-1} (the subviews are prefixes of x's columns), so the conditional critic sees x''.
(Stacking the s critics' layers into batched matmuls was measured slower on CPU than s separate addmm calls:
torch's CPU bmm does not beat a loop of GEMMs at these sizes, so the critics stay separate modules.)
"""

from __future__ import annotations

import math

import torch
from torch import nn


def mlp(d_in: int, hidden: int, layers: int, d_out: int) -> nn.Sequential:
    mods: list[nn.Module] = [nn.Linear(d_in, hidden), nn.ReLU()]
    for _ in range(layers - 1):
        mods += [nn.Linear(hidden, hidden), nn.ReLU()]
    mods.append(nn.Linear(hidden, d_out))
    return nn.Sequential(*mods)


class Separable(nn.Module):
    def __init__(self, da: int, db: int, hidden: int, layers: int, embed: int) -> None:
        super().__init__()
        self.g, self.h = mlp(da, hidden, layers, embed), mlp(db, hidden, layers, embed)

    def matrix(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Scores of every (a_i, b_j): [M, N]."""
        return self.g(a) @ self.h(b).T

    def pairs(self, a: torch.Tensor, bs: torch.Tensor) -> torch.Tensor:
        """Scores of a_i with each of its own candidates bs[i, k]: a [M, da], bs [M, K, db] -> [M, K]."""
        return (self.g(a)[:, None, :] * self.h(bs)).sum(-1)


class Concat(nn.Module):
    def __init__(self, da: int, db: int, hidden: int, layers: int, embed: int = 0) -> None:
        super().__init__()
        self.f = mlp(da + db, hidden, layers, 1)

    def matrix(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        m, n = a.shape[0], b.shape[0]
        ab = torch.cat([a[:, None, :].expand(m, n, a.shape[1]), b[None, :, :].expand(m, n, b.shape[1])], -1)
        return self.f(ab).squeeze(-1)

    def pairs(self, a: torch.Tensor, bs: torch.Tensor) -> torch.Tensor:
        m, k = bs.shape[:2]
        return self.f(torch.cat([a[:, None, :].expand(m, k, a.shape[1]), bs], -1)).squeeze(-1)


class Critics(nn.Module):
    """One critic per chain term (widths = the prefix widths of x), plus the scalars some estimators learn.

    log_ema: MINE's running log E_q[e^T] (a buffer, so it is checkpointed); baseline: TUBA's log-baseline b.
    """

    def __init__(self, widths: list[int], dy: int, kind: str, hidden: int, layers: int, embed: int) -> None:
        super().__init__()
        if kind not in ("separable", "concat"):
            raise ValueError(f"unknown critic {kind}")
        self.kind, self.widths, self.dx = kind, list(widths), int(widths[-1])
        cls = Separable if kind == "separable" else Concat
        self.nets = nn.ModuleList(cls(w, dy, hidden, layers, embed) for w in widths)
        self.baseline = nn.Parameter(torch.ones(()))
        self.register_buffer("log_ema", torch.full((), float("nan")))

    def scores(self, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        """The M x M score matrix of every term."""
        return [net.matrix(x[:, :w], y) for net, w in zip(self.nets, self.widths)]

    def last(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The full-view critic's M x M matrix (the only one of a non-decomposed estimator)."""
        return self.nets[-1].matrix(x[:, : self.widths[-1]], y)

    def cond_pairs(self, x: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        """Terms 2..s against their own candidates: ys [s-1, M, K, dy] -> scores [s-1, M, K]."""
        return torch.stack([net.pairs(x[:, :w], ys[i]) for i, (net, w) in
                            enumerate(zip(self.nets[1:], self.widths[1:]))])  # fmt: skip

    def pointwise(self, x: torch.Tensor, y: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """log p(y|x)/p(y) ~ l(x, y) - log mean_r exp l(x, y_r) over reference rows, l = sum of the terms' critics."""
        pos = sum(net.pairs(x[:, :w], y[:, None, :])[:, 0] for net, w in zip(self.nets, self.widths))
        allr = sum(self.scores(x, ref))
        return pos - (allr.logsumexp(1) - math.log(ref.shape[0]))
