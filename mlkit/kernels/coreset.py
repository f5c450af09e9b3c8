"""Greedy k-center coreset (PatchCore/M3DM) on a seeded random projection, in torch on CPU or CUDA.

Start at index 0; each step lowers every row's distance to the chosen set with the distance to the last pick, then
picks the row with the largest such distance (first on ties) and sets it to 0. The reference is the same loop in
plain NumPy float64; `coreset_definition` recomputes min-distances to the whole chosen set from scratch (tests only).
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


def coreset_torch(features: Any, n: int, start: int = 0, half: bool | None = None) -> Any:
    """Greedy k-center in torch on the tensor's device; fp16 matmul distances on CUDA unless `half` says otherwise.

    float64 input uses the direct (x - z)^2 form (bit-comparable with the reference); float32/16 use
    ||x||^2 + ||z||^2 - 2 x.z (one matrix-vector product per step, clamped at 0).
    """
    import torch

    _check(features.shape[0], n)
    x = features.reshape(features.shape[0], -1)
    if half is None:
        half = x.is_cuda
    if half:
        x = x.half()
    direct = x.dtype == torch.float64
    out = torch.empty(n, dtype=torch.long, device=x.device)
    dmin = torch.full(
        (x.shape[0],), float("inf"), dtype=torch.float64 if direct else torch.float32, device=x.device
    )
    xn = None if direct else (x.float() ** 2).sum(dim=1)
    last = torch.tensor(start, device=x.device)
    for i in range(n):
        out[i] = last
        row = x[last]
        if direct:
            d = ((x - row) ** 2).sum(dim=1).sqrt()
        else:
            d = (xn + xn[last] - 2.0 * (x @ row).float()).clamp_(min=0).sqrt_()
        torch.minimum(dmin, d, out=dmin)
        dmin[last] = 0.0
        last = torch.argmax(dmin)
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
