"""Farthest point sampling (FPS), starting at index 0 like pointnet2_ops.

Each step keeps, for every point, the squared distance to the nearest chosen centre and picks the point where it is
largest (the first one on ties). Chosen points are marked with -1 so the result is G distinct indices even when the
cloud holds duplicates.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit


def fps_reference(points: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    """Plain NumPy FPS: `n` distinct indices into `points` (N, 3), the first being `start`."""
    pts = np.asarray(points, dtype=np.float64)
    _check(pts.shape[0], n, start)
    out = np.empty(n, dtype=np.int64)
    dmin = np.full(pts.shape[0], np.inf)
    last = start
    for i in range(n):
        out[i] = last
        dmin[last] = -1.0
        if i + 1 == n:
            break
        d = ((pts - pts[last]) ** 2).sum(axis=1)
        keep = dmin >= 0
        dmin[keep] = np.minimum(dmin[keep], d[keep])
        last = int(np.argmax(dmin))
    return out


@njit(cache=True)
def _fps_kernel(pts: np.ndarray, n: int, start: int) -> np.ndarray:
    m = pts.shape[0]
    out = np.empty(n, dtype=np.int64)
    dmin = np.full(m, np.inf)
    last = start
    for i in range(n):
        out[i] = last
        dmin[last] = -1.0
        if i + 1 == n:
            break
        px = pts[last, 0]
        py = pts[last, 1]
        pz = pts[last, 2]
        best = -2.0
        arg = 0
        for j in range(m):
            dj = dmin[j]
            if dj >= 0.0:
                dx = pts[j, 0] - px
                dy = pts[j, 1] - py
                dz = pts[j, 2] - pz
                d = dx * dx + dy * dy + dz * dz
                if d < dj:
                    dj = d
                    dmin[j] = d
            if dj > best:
                best = dj
                arg = j
        last = arg
    return out


def fps_numba(points: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    """Numba FPS on a (N, 3) array (float64 arithmetic, so it matches the reference exactly)."""
    pts = np.ascontiguousarray(points, dtype=np.float64)
    _check(pts.shape[0], n, start)
    return _fps_kernel(pts, int(n), int(start))


def fps_torch(points: Any, n: int, start: int = 0) -> Any:
    """FPS in torch on the tensor's device (CUDA or CPU); returns a LongTensor of `n` indices."""
    import torch

    _check(points.shape[0], n, start)
    pts = points.reshape(points.shape[0], -1)
    out = torch.empty(n, dtype=torch.long, device=pts.device)
    dmin = torch.full((pts.shape[0],), float("inf"), dtype=pts.dtype, device=pts.device)
    last = torch.tensor(start, device=pts.device)
    for i in range(n):
        out[i] = last
        dmin[last] = -1.0
        if i + 1 == n:
            break
        d = ((pts - pts[last]) ** 2).sum(dim=1)
        dmin = torch.where(dmin >= 0, torch.minimum(dmin, d), dmin)
        last = torch.argmax(dmin)
    return out


def fps(points: Any, n: int, start: int = 0) -> Any:
    """Dispatch: a CUDA tensor runs the torch path, anything else (NumPy, CPU tensor) the Numba kernel."""
    if hasattr(points, "is_cuda") and points.is_cuda:
        return fps_torch(points, n, start)
    if hasattr(points, "detach"):
        import torch

        return torch.from_numpy(fps_numba(points.detach().numpy(), n, start))
    return fps_numba(points, n, start)


def _check(m: int, n: int, start: int) -> None:
    if not 0 < n <= m:
        raise ValueError(f"fps: need 0 < n <= number of points, got n={n}, points={m}")
    if not 0 <= start < m:
        raise ValueError(f"fps: start index {start} out of range for {m} points")
