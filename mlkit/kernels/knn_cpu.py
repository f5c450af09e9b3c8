"""Numba helper of mlkit.kernels.knn (kept apart so that importing knn does not import Numba)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def _first_equal(a, v, out):  # noqa: ANN001 - numba kernel
    """out[i] = first j with a[i, j] == v[i] (-1 if none, e.g. NaN): 64-wide vectorised tests, then a short scan."""
    n, m = a.shape
    for i in prange(n):
        t = v[i]
        j0 = 0
        while j0 + 64 <= m:
            hits = 0
            for j in range(j0, j0 + 64):
                hits += a[i, j] == t
            if hits > 0:
                break
            j0 += 64
        out[i] = -1
        for j in range(j0, m):
            if a[i, j] == t:
                out[i] = j
                break


def first_equal(a: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Per row i of the C-contiguous `a`, the first column j with a[i, j] == v[i] (-1 where none, e.g. NaN)."""
    out = np.empty(a.shape[0], dtype=np.int64)
    _first_equal(a, np.ascontiguousarray(v, dtype=a.dtype), out)
    return out
