"""Linear-chain CRF: log-partition (forward algorithm), gold-path score and Viterbi (spec §2.5).

Transitions A are (T+2)x(T+2); row/column T is START and T+1 is STOP:
score(y) = A[START, y_1] + sum_j (P[j, y_j] + A[y_{j-1}, y_j]) + A[y_m, STOP].
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from numba import njit


def _path_score(emis: np.ndarray, trans: np.ndarray, path: tuple[int, ...]) -> float:
    t = emis.shape[1]
    start, stop = t, t + 1
    s = trans[start, path[0]] + emis[0, path[0]]
    for j in range(1, len(path)):
        s += trans[path[j - 1], path[j]] + emis[j, path[j]]
    return float(s + trans[path[-1], stop])


def crf_log_partition_reference(emis: np.ndarray, trans: np.ndarray) -> float:
    """log Z by enumerating every tag path (emis [m, T], m >= 1; exponential: tiny inputs only)."""
    m, t = emis.shape
    scores = [_path_score(emis, trans, p) for p in itertools.product(range(t), repeat=m)]
    mx = max(scores)
    return float(mx + np.log(np.sum(np.exp(np.asarray(scores) - mx))))


def viterbi_reference(emis: np.ndarray, trans: np.ndarray) -> tuple[list[int], float]:
    """The best path and its score by enumeration."""
    m, t = emis.shape
    best = max(itertools.product(range(t), repeat=m), key=lambda p: _path_score(emis, trans, p))
    return list(best), _path_score(emis, trans, best)


def crf_log_partition_torch(emis: Any, lengths: Any, trans: Any) -> Any:
    """log Z per sentence: emis [B, m, T], lengths [B] (>= 1), trans [T+2, T+2] -> [B]."""
    import torch

    b, m, t = emis.shape
    start, stop = t, t + 1
    inner = trans[:t, :t]
    alpha = trans[start, :t].unsqueeze(0) + emis[:, 0]
    for j in range(1, m):
        nxt = torch.logsumexp(alpha.unsqueeze(2) + inner.unsqueeze(0), dim=1) + emis[:, j]
        alive = (lengths > j).unsqueeze(1)
        alpha = torch.where(alive, nxt, alpha)
    return torch.logsumexp(alpha + trans[:t, stop].unsqueeze(0), dim=1)


def crf_gold_score_torch(emis: Any, tags: Any, lengths: Any, trans: Any) -> Any:
    """score(y_gold) per sentence: tags [B, m] (padding ignored) -> [B]."""
    import torch

    b, m, t = emis.shape
    start, stop = t, t + 1
    pos = torch.arange(m, device=emis.device).unsqueeze(0)
    mask = pos < lengths.unsqueeze(1)
    tags = torch.where(mask, tags, torch.zeros_like(tags))
    e = emis.gather(2, tags.unsqueeze(2)).squeeze(2)
    s = (e * mask).sum(1) + trans[start, tags[:, 0]]
    if m > 1:
        tr = trans[tags[:, :-1], tags[:, 1:]]
        s = s + (tr * mask[:, 1:]).sum(1)
    last = tags.gather(1, (lengths - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
    return s + trans[last, stop]


def crf_nll_torch(emis: Any, tags: Any, lengths: Any, trans: Any) -> Any:
    """Negative log-likelihood per sentence (log Z - gold score) -> [B]."""
    return crf_log_partition_torch(emis, lengths, trans) - crf_gold_score_torch(emis, tags, lengths, trans)


def viterbi_torch(emis: Any, lengths: Any, trans: Any) -> list[list[int]]:
    """Batched Viterbi in torch (any device): the best tag path of each sentence."""
    import torch

    b, m, t = emis.shape
    start, stop = t, t + 1
    inner = trans[:t, :t]
    score = trans[start, :t].unsqueeze(0) + emis[:, 0]
    backs = []
    for j in range(1, m):
        cand = score.unsqueeze(2) + inner.unsqueeze(0)  # [B, from, to]
        best, arg = cand.max(dim=1)
        nxt = best + emis[:, j]
        alive = (lengths > j).unsqueeze(1)
        score = torch.where(alive, nxt, score)
        ident = torch.arange(t, device=emis.device).expand(b, t)
        backs.append(torch.where(alive, arg, ident))
    final = score + trans[:t, stop].unsqueeze(0)
    last = final.argmax(dim=1)
    path = [last]
    for bp in reversed(backs):
        last = bp.gather(1, last.unsqueeze(1)).squeeze(1)
        path.append(last)
    full = torch.stack(path[::-1], dim=1).cpu().tolist()
    return [full[i][: int(n)] for i, n in enumerate(lengths.cpu().tolist())]


@njit(cache=True)
def viterbi_numba(emis, lengths, trans):
    """Viterbi on CPU arrays: emis [B, m, T] float, lengths [B] -> paths [B, m] int64 (padding = -1)."""
    b, m, t = emis.shape
    start = t
    stop = t + 1
    out = np.full((b, m), -1, dtype=np.int64)
    back = np.empty((m, t), dtype=np.int64)
    score = np.empty(t, dtype=emis.dtype)
    nxt = np.empty(t, dtype=emis.dtype)
    for s in range(b):
        n = lengths[s]
        if n <= 0:
            continue
        for y in range(t):
            score[y] = trans[start, y] + emis[s, 0, y]
        for j in range(1, n):
            for y in range(t):
                best = -np.inf
                arg = 0
                for x in range(t):
                    v = score[x] + trans[x, y]
                    if v > best:
                        best = v
                        arg = x
                nxt[y] = best + emis[s, j, y]
                back[j, y] = arg
            for y in range(t):
                score[y] = nxt[y]
        best = -np.inf
        arg = 0
        for y in range(t):
            v = score[y] + trans[y, stop]
            if v > best:
                best = v
                arg = y
        out[s, n - 1] = arg
        for j in range(n - 1, 0, -1):
            arg = back[j, arg]
            out[s, j - 1] = arg
    return out


def viterbi(emis: Any, lengths: Any, trans: Any) -> list[list[int]]:
    """Decode: CUDA tensors -> torch path; CPU tensors or NumPy arrays -> Numba kernel."""
    if hasattr(emis, "is_cuda") and emis.is_cuda:
        return viterbi_torch(emis, lengths, trans)
    if hasattr(emis, "detach"):
        emis = emis.detach().cpu().numpy()
        lengths = lengths.detach().cpu().numpy()
        trans = trans.detach().cpu().numpy()
    paths = viterbi_numba(
        np.ascontiguousarray(emis),
        np.asarray(lengths, dtype=np.int64),
        np.ascontiguousarray(trans, dtype=emis.dtype),
    )
    return [paths[i, : int(n)].tolist() for i, n in enumerate(lengths)]
