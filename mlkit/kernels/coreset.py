"""Greedy k-center coreset (PatchCore/M3DM) on a seeded random projection, in torch on CPU or CUDA.

Start at index 0; each step lowers every row's distance to the chosen set with the distance to the last pick, then
picks the row with the largest such distance (first on ties) and sets it to 0. The reference is the same loop in
plain NumPy float64; `coreset_definition` recomputes min-distances to the whole chosen set from scratch (tests only).
`coreset_torch` runs the same loop exactly but touches only the rows whose distance can change (filter and refine,
see its docstring); benchmarks/anomaly_kernels.py times it against anomalib's full-bank loop at 100k x 1152.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def jl_dim(n: int, eps: float = 0.9) -> int:
    """Johnson-Lindenstrauss width as sklearn's SparseRandomProjection computes it: 4 ln n / (eps^2/2 - eps^3/3)."""
    return int(4 * math.log(max(n, 2)) / (eps**2 / 2 - eps**3 / 3))


def projection_matrix(in_dim: int, out_dim: int, seed: int) -> Any:
    """A seeded Gaussian projection (in_dim, out_dim) scaled by 1/sqrt(out_dim); float32 CPU tensor."""
    import torch

    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(in_dim, out_dim, generator=g) / math.sqrt(out_dim)


def coreset_reference(features: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    """Plain NumPy greedy k-center loop (float64): `n` row indices, the first being `start`."""
    x = np.asarray(features, dtype=np.float64)
    _check(x.shape[0], n)
    out = np.empty(n, dtype=np.int64)
    dmin = np.full(x.shape[0], np.inf)
    last = start
    for i in range(n):
        out[i] = last
        d = np.sqrt(((x - x[last]) ** 2).sum(axis=1))
        dmin = np.minimum(dmin, d)
        dmin[last] = 0.0
        last = int(np.argmax(dmin))
    return out


def coreset_definition(features: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    """The k-center rule written from its definition: argmax over rows of the min distance to all chosen rows."""
    from scipy.spatial.distance import cdist

    x = np.asarray(features, dtype=np.float64)
    chosen = [start]
    while len(chosen) < n:
        d = cdist(x, x[chosen]).min(axis=1)
        chosen.append(int(np.argmax(d)))
    return np.asarray(chosen, dtype=np.int64)


def coreset_torch(
    features: Any, n: int, start: int = 0, half: bool | None = None, eps: float = 0.0, threads: int = 1
) -> Any:
    """Greedy k-center in torch on the tensor's device, exact: the same picks as the full-bank loop.

    Filter and refine. Each step needs d(x, c) only where it can lower dmin(x). A low-precision matrix-vector
    product (bfloat16 on CPU, float16 on CUDA, float32 for float64 input; `half=False`: the input dtype) gives
    ||x||^2 + ||c||^2 - 2 x.c with a rigorous error bound (input rounding + output rounding + float32
    accumulation, scaled by ||x|| ||c||); rows whose lower bound already reaches dmin(x) cannot change, and the
    rest (about N/k rows a step, plus a thin band) get the exact distance ||x - c + eps|| in the input dtype
    (torch.nn.functional.pairwise_distance: eps = 1e-6 is its default, the one anomalib's loop uses). Rows that
    change therefore carry bit-for-bit the value the full-bank loop computes, and argmax (first on ties) picks the
    same row. The bank is read once per step in half the bytes, instead of several full-width passes.
    On CPU the loop runs on `threads` torch threads (0: leave torch's setting): its per-step vector ops are
    small, and on a loaded 2-core machine two threads spent ~10x the CPU time of one in thread hand-offs.
    """
    import torch

    if features.is_cuda or threads <= 0:
        return _coreset_loop(features, n, start, half, eps)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _coreset_loop(features, n, start, half, eps)
    finally:
        torch.set_num_threads(before)


def _coreset_loop(features: Any, n: int, start: int, half: bool | None, eps: float) -> Any:
    import torch
    import torch.nn.functional as tf

    _check(features.shape[0], n)
    x = features.reshape(features.shape[0], -1)
    dev, exact = x.device, x.dtype
    if x.dtype not in (torch.float32, torch.float64):
        x, exact = x.float(), torch.float32
    if half is None or half:
        low = torch.float32 if exact == torch.float64 else (torch.float16 if x.is_cuda else torch.bfloat16)
    else:
        low = exact
    u_low = {
        torch.bfloat16: 2.0**-8,
        torch.float16: 2.0**-11,
        torch.float32: 2.0**-24,
        torch.float64: 2.0**-53,
    }
    u32 = 2.0**-24
    dim = x.shape[1]
    # |computed - true| of ||x||^2 + ||c||^2 - 2 x.c <= rel * ||x|| ||c|| + acc * (||x||^2 + ||c||^2)
    rel = 2.0 * (3.0 * u_low[low] + 2.0 * dim * u32)
    acc = 2.0 * dim * u32
    slack = 1.0 + 8.0 * dim * u_low[exact]  # rounding of the exact distances themselves
    shift = abs(eps) * math.sqrt(dim)  # || x - c + eps || >= || x - c || - |eps| sqrt(dim)
    xl = x.to(low)
    xn = (x.float() ** 2).sum(dim=1) if exact == torch.float32 else (x**2).sum(dim=1).float()
    norm = xn.sqrt()
    lo_base = xn * (1.0 - acc)  # per-row part of the lower bound
    out = torch.empty(n, dtype=torch.long, device=dev)
    dmin = torch.full((x.shape[0],), float("inf"), dtype=exact, device=dev)
    thr = torch.full(
        (x.shape[0],), float("inf"), dtype=torch.float32, device=dev
    )  # bound on ||x - c||^2 to skip

    def threshold(d: Any) -> Any:
        return ((d.float() * slack + shift) ** 2) * (1.0 + 1e-6) + 1e-30

    last = int(start)
    for i in range(n):
        out[i] = last
        c = x[last]
        cn, cnorm = float(xn[last]), float(norm[last])
        lower = torch.add(lo_base, (xl @ c.to(low)).float(), alpha=-2.0)  # ||x||^2 - 2 x.c, then bounds
        lower.add_(norm, alpha=-rel * cnorm).add_(cn * (1.0 - acc))
        rows = (lower < thr).nonzero()[:, 0]
        if rows.numel():
            d = tf.pairwise_distance(x[rows], c[None], eps=eps)
            new = torch.minimum(dmin[rows], d)
            dmin[rows] = new
            thr[rows] = threshold(new)
        dmin[last] = 0.0
        thr[last] = threshold(dmin[last : last + 1])
        last = int(torch.argmax(dmin))
    return out


def coreset(features: Any, n: int, start: int = 0) -> Any:
    """Dispatch: tensors run on their device; NumPy runs the torch path on CPU and returns NumPy indices."""
    if hasattr(features, "detach"):
        return coreset_torch(features, n, start)
    import torch

    return coreset_torch(torch.from_numpy(np.asarray(features)), n, start).numpy()


def select(features: Any, n: int, proj_dim: int = 128, seed: int = 0, device: str = "cpu", rows: Any = None,
           chunk: int = 65536) -> np.ndarray:  # fmt: skip
    """Project `features[rows]` (default all rows) to `proj_dim` with a seeded Gaussian map (0 = JL width), then
    run the coreset; returns sorted positions into `rows`. `features` may be a float16 memmap: it is read and
    projected `chunk` rows at a time, so memory holds the projected rows, never the rows themselves in float32."""
    import torch

    rows = np.arange(len(features)) if rows is None else np.asarray(rows)
    if n >= len(rows):
        return np.arange(len(rows), dtype=np.int64)
    d_in = features.shape[1]
    dim = proj_dim if proj_dim > 0 else jl_dim(len(rows))
    proj = projection_matrix(d_in, dim, seed) if dim < d_in else None
    x = torch.empty(len(rows), min(dim, d_in))
    for a in range(0, len(rows), chunk):
        part = torch.from_numpy(np.asarray(features[rows[a : a + chunk]], dtype=np.float32))
        x[a : a + len(part)] = part @ proj if proj is not None else part
    return np.unique(coreset_torch(x.to(device), n).cpu().numpy())


def _check(m: int, n: int) -> None:
    if not 0 < n <= m:
        raise ValueError(f"coreset: need 0 < n <= number of rows, got n={n}, rows={m}")
