"""Linear-chain CRF: log-partition (forward algorithm), gold-path score and Viterbi (spec §2.5).

Transitions A are (T+2)x(T+2); row/column T is START and T+1 is STOP:
score(y) = A[START, y_1] + sum_j (P[j, y_j] + A[y_{j-1}, y_j]) + A[y_m, STOP].
"""

from __future__ import annotations

import functools
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


def crf_nll_autograd(emis: Any, tags: Any, lengths: Any, trans: Any) -> Any:
    """Negative log-likelihood per sentence from autograd ops: the reference for `crf_nll_torch`."""
    return crf_log_partition_torch(emis, lengths, trans) - crf_gold_score_torch(emis, tags, lengths, trans)


_MM_RANGE = 40.0  # transition spread up to which the forward step runs as a matmul of shifted exponentials


def _crf_nll_forward(ctx: Any, emis: Any, tags: Any, lengths: Any, trans: Any) -> Any:
    """Forward algorithm without a graph (log-space alphas); keeps what the backward needs.

    Step j: alpha_j(y) = emis_j(y) + log sum_x exp(alpha_{j-1}(x) + A[x, y]). While the spread of A is at
    most `_MM_RANGE` the sum is a matmul, exp(alpha_{j-1} - max) @ exp(A - max A): every column has a term
    >= exp(-_MM_RANGE), so nothing underflows and the positive sum loses no precision; beyond it, logsumexp.
    """
    import torch

    b, m, t = emis.shape
    start, stop = t, t + 1
    inner = trans[:t, :t]
    alive = lengths.unsqueeze(0) > torch.arange(m, device=emis.device).unsqueeze(1)  # [m, B]
    alphas = emis.new_empty(m, b, t)
    alphas[0] = trans[start, :t].unsqueeze(0) + emis[:, 0]
    amax = inner.max()
    use_mm = bool(amax - inner.min() <= _MM_RANGE)
    if use_mm:
        ea = emis.new_empty(m, b, t)  # exp(alpha_j - max_y alpha_j)
        sums = emis.new_ones(m, b, t)  # sums[j] = ea[j - 1] @ exp(A - max A)
        ex = torch.exp(inner - amax)
        for j in range(1, m):
            prev = alphas[j - 1]
            mx = prev.amax(1, keepdim=True)
            torch.exp(prev - mx, out=ea[j - 1])
            torch.mm(ea[j - 1], ex, out=sums[j])
            nxt = sums[j].log().add_(mx + amax).add_(emis[:, j])
            torch.where(alive[j].unsqueeze(1), nxt, prev, out=alphas[j])
        ctx.mm = (ea, sums, ex)
    else:
        lses = emis.new_empty(m, b, t)  # lses[j](y) = log sum_x exp(alpha_{j-1}(x) + A[x, y])
        for j in range(1, m):
            torch.logsumexp(alphas[j - 1].unsqueeze(2) + inner, dim=1, out=lses[j])
            torch.where(alive[j].unsqueeze(1), lses[j] + emis[:, j], alphas[j - 1], out=alphas[j])
        ctx.mm = None
        ctx.lses = lses
    fin = alphas[m - 1] + trans[:t, stop].unsqueeze(0)
    logz = torch.logsumexp(fin, dim=1)
    ctx.save_for_backward(tags, lengths, trans, alphas, fin, logz, alive)
    return logz - crf_gold_score_torch(emis, tags, lengths, trans)


def _crf_nll_backward(ctx: Any, grad: Any) -> tuple:
    """Backward algorithm in reverse mode: d/d emis = marginals - gold one-hots, d/d A = pair marginals - gold pairs.

    g_j(y) = d logZ / d alpha_j(y) is the marginal of y at j (times the incoming gradient); it is passed back
    through the pair posteriors P_j(x, y) = exp(alpha_{j-1}(x) + A[x, y]) / sum_x' exp(alpha_{j-1}(x') + A[x', y]),
    and sum_j P_j(x, y) g_j(y) are the pair marginals. Sentences that ended before j pass g through unchanged.
    """
    import torch

    tags, lengths, trans, alphas, fin, logz, alive = ctx.saved_tensors
    m, b, t = alphas.shape
    start, stop = t, t + 1
    inner = trans[:t, :t]
    gr = grad.to(alphas.dtype)
    d_trans = torch.zeros_like(trans)
    d_emis = alphas.new_zeros(b, m, t)
    ga = torch.exp(fin - logz.unsqueeze(1)).mul_(gr.unsqueeze(1))  # [B, T]
    d_trans[:t, stop] = ga.sum(0)
    if ctx.mm is not None:
        ea, sums, ex = ctx.mm
        rs = alphas.new_zeros(m, b, t)  # rs[j] = g_j / sums[j]
        ex_t = ex.t()
        for j in range(m - 1, 0, -1):
            ok = alive[j].unsqueeze(1)
            gj = torch.where(ok, ga, 0.0)
            d_emis[:, j] = gj
            torch.div(gj, sums[j], out=rs[j])
            ga = torch.where(ok, torch.mm(rs[j], ex_t).mul_(ea[j - 1]), ga)
        if m > 1:  # sum_j sum_b P_j(x, y) g_j(y) = ex[x, y] * sum_{j, b} ea[j - 1](x) rs[j](y)
            d_trans[:t, :t] = torch.mm(ea[:-1].reshape(-1, t).t(), rs[1:].reshape(-1, t)).mul_(ex)
    else:
        lses = ctx.lses
        d_inner = alphas.new_zeros(b, t, t)
        for j in range(m - 1, 0, -1):
            ok = alive[j].unsqueeze(1)
            gj = torch.where(ok, ga, 0.0)
            d_emis[:, j] = gj
            q = (alphas[j - 1].unsqueeze(2) + inner).sub_(lses[j].unsqueeze(1)).exp_().mul_(gj.unsqueeze(1))
            d_inner += q
            ga = torch.where(ok, q.sum(2), ga)
        d_trans[:t, :t] = d_inner.sum(0)
    d_emis[:, 0] = ga
    d_trans[start, :t] = ga.sum(0)
    # gold path: subtract its one-hots (emissions) and its transition counts
    mask = alive.t()  # [B, m]
    last = (lengths - 1).clamp(min=0)
    tg = torch.where(mask, tags, torch.zeros_like(tags))
    wg = mask.to(alphas.dtype) * gr.unsqueeze(1)  # [B, m]: weight of each valid position
    d_emis.scatter_add_(2, tg.unsqueeze(2), -wg.unsqueeze(2))
    flat = d_trans.view(-1)
    n = t + 2
    flat.index_add_(0, start * n + tg[:, 0], -gr)
    flat.index_add_(0, tg.gather(1, last.unsqueeze(1)).squeeze(1) * n + stop, -gr)
    if m > 1:
        flat.index_add_(0, (tg[:, :-1] * n + tg[:, 1:]).reshape(-1), -wg[:, 1:].reshape(-1))
    return d_emis, None, None, d_trans


def _cpu_ok(trans: Any) -> bool:
    """The Numba path takes float32/float64 CPU tensors whose transitions' spread its scaling can hold."""
    import torch

    from mlkit.kernels.crf_cpu import spread_ok

    return trans.dtype in (torch.float32, torch.float64) and spread_ok(trans.detach().numpy())


def _crf_nll_forward_cpu(ctx: Any, emis: Any, tags: Any, lengths: Any, trans: Any) -> Any:
    """CPU: the Numba forward-backward (`crf_cpu`) computes the NLL and, when a gradient is wanted, its
    per-sentence gradients at once; backward only scales them by the incoming gradient."""
    import numba
    import torch

    from mlkit.kernels.crf_cpu import crf_nll_grad
    from mlkit.kernels.threads import keep_torch_threads

    want = bool(ctx.needs_input_grad[0] or ctx.needs_input_grad[3])
    with keep_torch_threads():  # Numba's first use starts its OpenMP pool, which moves torch's count too
        numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
        nll, d_emis, d_trans = crf_nll_grad(
            emis.detach().numpy(), tags.numpy(), lengths.numpy(), trans.detach().numpy(), want
        )
    ctx.cpu = (
        (torch.from_numpy(d_emis).to(emis.dtype), torch.from_numpy(d_trans).to(trans.dtype)) if want else None
    )
    return torch.from_numpy(nll).to(emis.dtype)


@functools.cache
def _crf_nll_fn() -> Any:
    """`torch.autograd.Function` of the CRF negative log-likelihood (built on first use: torch is lazy)."""
    import torch
    from torch.autograd.function import once_differentiable

    class _CRFNLL(torch.autograd.Function):
        @staticmethod
        def forward(ctx, emis, tags, lengths, trans):
            with torch.no_grad():
                if emis.device.type == "cpu" and _cpu_ok(trans):
                    return _crf_nll_forward_cpu(ctx, emis, tags, lengths, trans)
                ctx.cpu = None
                return _crf_nll_forward(ctx, emis, tags, lengths, trans)

        @staticmethod
        @once_differentiable
        def backward(ctx, grad):
            if ctx.cpu is not None:
                d_emis, d_parts = ctx.cpu
                g = grad.to(d_emis.dtype)
                return d_emis * g[:, None, None], None, None, torch.tensordot(g, d_parts, 1).to(d_parts.dtype)
            return _crf_nll_backward(ctx, grad)

    return _CRFNLL


def crf_nll_torch(emis: Any, tags: Any, lengths: Any, trans: Any) -> Any:
    """Negative log-likelihood per sentence (log Z - gold score) -> [B], with a hand-written backward.

    Forward algorithm under no_grad; the backward runs the backward algorithm and returns node marginals minus
    the gold one-hots (emissions) and pair marginals minus the gold transition counts (A, START and STOP
    included), times the incoming gradient. Same values and gradients as `crf_nll_autograd`; any device. On CPU
    the Numba forward-backward of `crf_cpu` does both passes in one compiled call (torch loop on CUDA, and on
    CPU when the transitions' spread exceeds `crf_cpu.MAX_SPREAD`).
    """
    return _crf_nll_fn().apply(emis, tags, lengths, trans)


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
