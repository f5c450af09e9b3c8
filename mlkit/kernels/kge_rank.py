"""Filtered rank-based link-prediction evaluation (PyKEEN's rank-based evaluator, translation distances).

Fast path (torch, CPU or CUDA): a chunk of B queries q (q = o_h + o_r for tails, o_t - o_r for heads) against all
E candidates in one GEMM-like pass (||q||² + ||e||² - 2 q·eᵀ for p = 2, cdist for p = 1), the filter applied as a
scatter of +inf into the [B, E] distance block (every other known true answer of the query), then the optimistic
(1 + #strictly closer), pessimistic (#closer or tied, the target included) and realistic (their mean, PyKEEN's
default "expected" rank) ranks. `rank_reference` is the brute-force loop it is tested against.
"""

from __future__ import annotations

import numpy as np
import torch

TIES = ("optimistic", "realistic", "pessimistic")


class FilterIndex:
    """Known answers per query key: tails of (h, r) and heads of (r, t), over any set of (h, r, t) triples."""

    def __init__(self, triples: np.ndarray, n_ent: int, n_rel: int) -> None:
        tr = np.asarray(triples, np.int64).reshape(-1, 3)
        self.n_ent, self.n_rel = n_ent, n_rel
        self.tail = self._index(tr[:, 0] * n_rel + tr[:, 1], tr[:, 2])
        self.head = self._index(tr[:, 2] * n_rel + tr[:, 1], tr[:, 0])

    @staticmethod
    def _index(keys: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pair = np.unique(np.stack([keys, vals], 1), axis=0) if len(keys) else np.zeros((0, 2), np.int64)
        return pair[:, 0].copy(), pair[:, 1].copy()

    def known(self, anchor: np.ndarray, rel: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) of every known answer of each query (anchor = h for side 'tail', t for side 'head')."""
        keys, vals = self.tail if side == "tail" else self.head
        q = np.asarray(anchor, np.int64) * self.n_rel + np.asarray(rel, np.int64)
        lo, hi = np.searchsorted(keys, q, "left"), np.searchsorted(keys, q, "right")
        counts = hi - lo
        rows = np.repeat(np.arange(len(q)), counts)
        starts = np.repeat(lo - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) if len(q) else lo
        cols = vals[np.arange(len(rows)) + starts] if len(rows) else np.zeros(0, np.int64)
        return rows, cols


def distances(q: torch.Tensor, cand: torch.Tensor, p: int) -> torch.Tensor:
    """[B, E] ||q_b - c_e||_p; p = 2 as one GEMM plus norms."""
    if p == 2:
        d2 = (q * q).sum(1, keepdim=True) + (cand * cand).sum(1).unsqueeze(0) - 2.0 * (q @ cand.T)
        return d2.clamp_min_(0).sqrt_()
    return torch.cdist(q.unsqueeze(0), cand.unsqueeze(0), p=float(p)).squeeze(0)


def ranks_block(d: torch.Tensor, target: torch.Tensor, rows: torch.Tensor | None, cols: torch.Tensor | None
                ) -> dict[str, torch.Tensor]:  # fmt: skip
    """Ranks of target[b] in row b of d (modified in place) after filtering the (rows, cols) entries."""
    ar = torch.arange(len(target), device=d.device)
    dt = d[ar, target].clone()
    if rows is not None and len(rows):
        d[rows, cols] = float("inf")
        d[ar, target] = dt
    better = (d < dt.unsqueeze(1)).sum(1)
    tied = (d <= dt.unsqueeze(1)).sum(1)
    opt = (better + 1).to(torch.float64)
    pess = tied.to(torch.float64)
    return {"optimistic": opt, "pessimistic": pess, "realistic": (opt + pess) / 2}


def filtered_ranks(q: torch.Tensor, cand: torch.Tensor, target: np.ndarray, anchor: np.ndarray, rel: np.ndarray,
                   side: str, index: FilterIndex | None, p: int = 2, chunk: int = 256) -> dict[str, np.ndarray]:  # fmt: skip
    """Ranks of `target` among all candidates for each query row of q, in chunks of `chunk` queries."""
    out: dict[str, list[np.ndarray]] = {k: [] for k in TIES}
    for a in range(0, len(q), chunk):
        b = min(a + chunk, len(q))
        d = distances(q[a:b], cand, p)
        tgt = torch.as_tensor(target[a:b], device=d.device)
        rows = cols = None
        if index is not None:
            r, c = index.known(anchor[a:b], rel[a:b], side)
            rows, cols = torch.as_tensor(r, device=d.device), torch.as_tensor(c, device=d.device)
        for k, v in ranks_block(d, tgt, rows, cols).items():
            out[k].append(v.cpu().numpy())
    return {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in out.items()}


def rank_reference(ent: np.ndarray, rel: np.ndarray, triples: np.ndarray, known: set[tuple[int, int, int]] | None,
                   p: int = 2) -> dict[str, dict[str, np.ndarray]]:  # fmt: skip
    """Brute force: for each test triple and side, the distance of every candidate entity by a Python loop."""
    ent, rel = np.asarray(ent, np.float64), np.asarray(rel, np.float64)
    res = {s: {k: [] for k in TIES} for s in ("head", "tail")}
    for h, r, t in np.asarray(triples).tolist():
        for side in ("head", "tail"):
            true = float(np.linalg.norm(ent[h] + rel[r] - ent[t], ord=p))
            better = tied = 0
            for e in range(len(ent)):
                trip = (e, r, t) if side == "head" else (h, r, e)
                is_target = e == (h if side == "head" else t)
                if not is_target and known is not None and trip in known:
                    continue
                dist = float(np.linalg.norm(ent[trip[0]] + rel[r] - ent[trip[2]], ord=p))
                better += dist < true
                tied += dist <= true
            res[side]["optimistic"].append(better + 1.0)
            res[side]["pessimistic"].append(float(tied))
            res[side]["realistic"].append((better + 1.0 + tied) / 2)
    return {s: {k: np.asarray(v) for k, v in d.items()} for s, d in res.items()}


def metrics(ranks: np.ndarray, prefix: str = "") -> dict[str, float]:
    """MRR, MR and Hits@1/3/10 of a rank vector."""
    r = np.asarray(ranks, np.float64)
    if len(r) == 0:
        return {f"{prefix}mrr": float("nan"), f"{prefix}mr": float("nan"), **{f"{prefix}hits@{k}": float("nan")
                for k in (1, 3, 10)}}  # fmt: skip
    out = {f"{prefix}mrr": float(np.mean(1.0 / r)), f"{prefix}mr": float(np.mean(r))}
    out.update({f"{prefix}hits@{k}": float(np.mean(r <= k)) for k in (1, 3, 10)})
    return out
