"""The spec's §7 benchmark protocol outside the CLI: one estimator at one known MI on fresh samples, and a grid of
such runs over worker processes (used by the slow test and benchmarks/mi_validation.py).

One run: d-dimensional correlated Gaussian (or cubic) stream, batch M, Adam, `steps` steps; the estimate is the
mean of held-out estimates (fresh batches from a separate generator) taken every `every` steps during the last
`last` steps; the per-step training estimates give the bias and std over the last steps.
"""

from __future__ import annotations

import math
import time
from typing import Any


def run(estimator: str, cond: str, splits: int, mi: float, *, dim: int = 20, batch: int = 64, steps: int = 3000,
        last: int = 500, every: int = 10, seed: int = 0, lr: float = 5e-4, kind: str = "gaussian",
        critic: str = "separable", hidden: int = 256, layers: int = 3, embed: int = 32, clip: float = 5.0,
        threads: int | None = 1) -> dict[str, Any]:  # fmt: skip
    """Train one estimator on the stream; return its held-out estimate (mean, std), terms, truth and timing."""
    import numpy as np
    import torch

    from mlkit.tasks.mi import data as D
    from mlkit.tasks.mi.model import Critics
    from mlkit.tasks.mi.objective import Est, terms
    from mlkit.tasks.mi.source import Source

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    src = Source.from_stream(kind, mi, dim, "cpu")
    s = splits if estimator == "demi" else 1
    critics = Critics(D.cuts(dim, s), dim, critic, hidden, layers, embed)
    opt = torch.optim.Adam(critics.parameters(), lr=lr)
    est = Est(estimator, cond, clip)
    oracle = src.oracle()
    draw = src.draw(batch)
    gen = torch.Generator().manual_seed(1_000 + seed)
    held_gen = torch.Generator().manual_seed(2_000 + seed)
    train_hist, held, held_terms, ess = [], [], [], []
    t0 = time.perf_counter()
    for step in range(steps):
        critics.train()
        x, y = draw(gen)
        out = terms(critics, x, y, est, oracle=oracle, gen=gen, train=True)
        opt.zero_grad(set_to_none=True)
        (-out.objective).backward()
        opt.step()
        train_hist.append(out.mi)
        if step >= steps - last and (steps - 1 - step) % every == 0:
            critics.eval()
            with torch.no_grad():
                hx, hy = draw(held_gen)
                h = terms(critics, hx, hy, est, oracle=oracle, gen=held_gen)
            held.append(h.mi)
            held_terms.append(h.terms)
            if h.ess is not None:
                ess.append(h.ess)
    secs = time.perf_counter() - t0
    tail = np.asarray(train_hist[-last:])
    return {"estimator": estimator, "cond": cond if estimator == "demi" else None, "splits": s, "truth": mi,
            "estimate": float(np.mean(held)), "held_std": float(np.std(held)),
            "terms": [float(v) for v in np.mean(held_terms, 0)],
            "term_truth": D.term_truth({"mi": mi, "dim": dim}, D.cuts(dim, s)),
            "train_bias": float(tail.mean() - mi), "train_std": float(tail.std()),
            "ess": float(np.mean(ess)) if ess else None, "log_batch": math.log(batch), "steps": steps,
            "seed": seed, "seconds": secs, "steps_per_s": steps / secs}  # fmt: skip


def _job(kw: dict[str, Any]) -> dict[str, Any]:
    return run(**kw)


def grid(jobs: list[dict[str, Any]], workers: int = 2) -> list[dict[str, Any]]:
    """Run every job (keyword arguments of `run`) in `workers` spawned processes (1 torch thread each), in order."""
    if workers <= 1:
        return [run(**kw) for kw in jobs]
    import multiprocessing as mp
    import sys

    order = sorted(range(len(jobs)), key=lambda i: -_cost(jobs[i]))  # longest first: balanced workers
    out: list[Any] = [None] * len(jobs)
    with mp.get_context("spawn").Pool(workers) as pool:
        for n, (i, r) in enumerate(pool.imap_unordered(_indexed, [(i, jobs[i]) for i in order]), 1):
            out[i] = r
            sys.stderr.write(f"[{n}/{len(jobs)}] {r['estimator']} {r['cond'] or ''} s={r['splits']} I={r['truth']:g}: "
                             f"{r['estimate']:.3f} ({r['seconds']:.0f} s)\n")  # fmt: skip
            sys.stderr.flush()
    return out


def _indexed(item: tuple[int, dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    return item[0], run(**item[1])


def _cost(kw: dict[str, Any]) -> float:
    s = kw.get("splits", 1) if kw.get("estimator") == "demi" else 1
    per = 12.0 * (s - 1) if kw.get("cond") == "oracle" else 1.0 + 0.8 * (s - 1)
    return per * kw.get("steps", 3000)
