"""The pixel-label budget (spec §2.5): which train images keep their masks.

`random`: a seeded random subset. `class-aware` (the original's protocol): the subset is drawn one image at a time
towards target class proportions p = u * uniform + (1 - u) * empirical (the share of each foreground class among
the masked images' class labels), u = `uniform_masks` (null: 1.0 up to 100 images, 0.5 up to 500, the empirical
distribution above, as the original's 20/100 -> 1.0 and 500 -> 0.5). Each draw serves the class furthest below
its target; among the images that show it, an image is weighted by the smallest remaining need of the classes it
shows, so an image full of already well-covered classes is less likely. Background is not a class here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def budget_size(pool: int, budget: str | int | float) -> int:
    """N images or 'P%' of the pool, clipped to [0, pool]."""
    b = str(budget).strip()
    n = round(pool * float(b[:-1]) / 100) if b.endswith("%") else int(float(b))
    return max(0, min(n, pool))


def auto_uniform(n: int) -> float:
    return 1.0 if n <= 100 else (0.5 if n <= 500 else 0.0)


def class_aware(labels: Sequence[frozenset[int]], n: int, uniform: float, seed: int) -> list[int]:
    """Indices of n images drawn towards the mixed class proportions (see the module docstring)."""
    rng = np.random.default_rng(seed)
    classes = sorted({c for lab in labels for c in lab if c > 0})
    if not classes:
        return sorted(rng.permutation(len(labels))[:n].tolist())
    col = {c: j for j, c in enumerate(classes)}
    onehot = np.zeros((len(labels), len(classes)))
    for i, lab in enumerate(labels):
        for c in lab:
            if c > 0:
                onehot[i, col[c]] = 1.0
    emp = onehot.sum(0) / onehot.sum()
    target = uniform / len(classes) + (1.0 - uniform) * emp
    left = np.ones(len(labels), bool)
    got = np.zeros(len(classes))
    out: list[int] = []
    while len(out) < n:
        need = target * (got.sum() + 1.0) - got  # how far each class is below its share after one more label
        order = np.argsort(-need, kind="stable")
        pick = -1
        for j in order:  # the neediest class that still has an image left
            cand = np.flatnonzero(left & (onehot[:, j] > 0))
            if cand.size:
                pos = np.clip(need, 0.0, None)
                w = np.where(onehot[cand] > 0, pos[None, :], np.inf).min(1)
                w = w if w.sum() > 0 else np.ones(cand.size)
                pick = int(rng.choice(cand, p=w / w.sum()))
                break
        if pick < 0:  # only images without a foreground class remain
            pick = int(rng.choice(np.flatnonzero(left)))
        out.append(pick)
        left[pick] = False
        got += onehot[pick]
    return sorted(out)


def choose_labelled(train: Sequence[Any], budget: str | int | float, seed: int, sampling: str = "random",
                    uniform: float | None = None) -> list[str]:  # fmt: skip
    """Stems of the train images that keep their masks: `budget` (N or 'P%') of those that have one."""
    pool = [it for it in train if it.mask is not None]
    n = budget_size(len(pool), budget)
    if sampling == "random":
        perm = np.random.default_rng(seed).permutation(len(pool))
        return sorted(pool[i].stem for i in perm[:n])
    if sampling != "class-aware":
        raise ValueError(f"budget_sampling must be random or class-aware, not {sampling!r}")
    u = auto_uniform(n) if uniform is None else float(uniform)
    if not 0.0 <= u <= 1.0:
        raise ValueError(f"uniform_masks must be None or in [0, 1], not {uniform!r}")
    return sorted(pool[i].stem for i in class_aware([it.labels for it in pool], n, u, seed))
