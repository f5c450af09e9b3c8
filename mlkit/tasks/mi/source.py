"""Where an mi run's batches come from: rows of paired arrays (split train/val/test, standardised with the train
rows' statistics) or a stream of fresh samples from the known-truth generator (spec §7: `stream: true`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from mlkit.core.errors import DataError
from mlkit.tasks.mi import data as D


class Source:
    """Train batches (drawn with the epoch's generator), fixed held-out batches, the truth and the oracle."""

    def __init__(self, dx: int, dy: int, truth: dict | None, device: Any, stats: tuple) -> None:
        self.dx, self.dy, self.truth, self.device = dx, dy, truth, device
        self.mx, self.sx, self.my, self.sy = (torch.as_tensor(s, dtype=torch.float32) for s in stats)
        self.rows: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.stream = False

    # ------------------------------------------------------------------ constructors
    @staticmethod
    def from_arrays(x: np.ndarray, y: np.ndarray, truth: dict | None, split: list, split_seed: int,
                    standardize: bool, device: Any, where: str = "--data") -> Source:  # fmt: skip
        n = x.shape[0]
        perm = np.random.default_rng(int(split_seed)).permutation(n)
        a, b = int(n * float(split[0])), int(n * (float(split[0]) + float(split[1])))
        parts = {"train": perm[:a], "val": perm[a:b], "test": perm[b:]}
        small = {k: len(v) for k, v in parts.items() if len(v) < 2}
        if small:
            raise DataError(f"{n} rows leave too few for the {', '.join(small)} split", where,
                            "Give at least ~50 rows (x and y paired by row), or change `split`.")  # fmt: skip
        xt, yt = x[parts["train"]], y[parts["train"]]
        if standardize:
            stats = (xt.mean(0), _sd(xt), yt.mean(0), _sd(yt))
        else:
            stats = (np.zeros(x.shape[1]), np.ones(x.shape[1]), np.zeros(y.shape[1]), np.ones(y.shape[1]))
        src = Source(x.shape[1], y.shape[1], truth, device, stats)
        for k, idx in parts.items():
            src.rows[k] = (src.norm_x(torch.from_numpy(x[idx])), src.norm_y(torch.from_numpy(y[idx])))
        return src

    @staticmethod
    def from_stream(kind: str, mi: float, dim: int, device: Any) -> Source:
        rho = D.rho_of_mi(mi, dim)
        sy = math.sqrt(15.0) if kind == "cubic" else 1.0  # E[z^6] = 15 for z ~ N(0, 1)
        truth = {"kind": kind, "mi": float(mi), "rho": rho, "dim": int(dim)}
        z, o = np.zeros(dim), np.ones(dim)
        src = Source(dim, dim, truth, device, (z, o, z, o * sy))
        src.stream = True
        return src

    # ------------------------------------------------------------------ batches
    def norm_x(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.float() - self.mx) / self.sx).to(self.device)

    def norm_y(self, y: torch.Tensor) -> torch.Tensor:
        return ((y.float() - self.my) / self.sy).to(self.device)

    def batch_size(self, m: int, split: str = "train") -> int:
        """The batch size a split supports (a small dataset's held-out batches hold all its rows)."""
        return m if self.stream else min(m, self.rows[split][0].shape[0])

    def draw(self, m: int) -> Any:
        """A function gen -> (x, y): one training batch of m distinct pairs."""
        if self.stream:
            t = self.truth
            return lambda gen: tuple(f(v) for f, v in zip((self.norm_x, self.norm_y),
                                                         D.sample(m, t["dim"], t["rho"], t["kind"], gen)))  # fmt: skip
        x, y = self.rows["train"]
        m = min(m, x.shape[0])

        def draw(gen: Any) -> tuple[torch.Tensor, torch.Tensor]:
            idx = torch.randint(x.shape[0], (m,), generator=gen)  # O(m); a batch with a repeated row is redrawn
            if idx.unique().numel() < m:
                idx = torch.randperm(x.shape[0], generator=gen)[:m]
            idx = idx.to(x.device)
            return x[idx], y[idx]

        return draw

    def held_out(self, split: str, m: int, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """n fixed batches of a held-out split (the same every call: seeded by the split's name)."""
        gen = torch.Generator().manual_seed({"val": 10_007, "test": 20_011, "train": 30_013}[split])
        if self.stream:
            t = self.truth
            out = []
            for _ in range(n):
                x, y = D.sample(m, t["dim"], t["rho"], t["kind"], gen)
                out.append((self.norm_x(x), self.norm_y(y)))
            return out
        x, y = self.rows[split]
        m = min(m, x.shape[0])
        out = []
        for _ in range(n):
            idx = torch.randperm(x.shape[0], generator=gen)[:m].to(x.device)
            out.append((x[idx], y[idx]))
        return out

    def oracle(self) -> D.Oracle | None:
        """Exact conditional sampling, for data whose truth.json names the generator (kind, rho)."""
        t = self.truth
        if not t or t.get("kind") not in D.KINDS or "rho" not in t or int(t["dim"]) != self.dx or self.dx != self.dy:
            return None
        dev = self.device
        return D.Oracle(t, self.mx.to(dev), self.sx.to(dev), self.my.to(dev), self.sy.to(dev))


def _sd(a: np.ndarray) -> np.ndarray:
    s = a.std(0)
    return np.where(s > 1e-12, s, 1.0)
