"""Hypothesis strategies shared by the GBP kernel tests: small random CSR graphs and features."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st


def csr(n: int, pairs: np.ndarray, symmetric: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """CSR arrays (int32) from (u, v) pairs; symmetric adds (v, u)."""
    if symmetric and len(pairs):
        pairs = np.concatenate([pairs, pairs[:, ::-1]])
    rows = pairs[:, 0] if len(pairs) else np.zeros(0, np.int64)
    order = np.argsort(rows, kind="stable")
    indptr = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    indices = (pairs[order, 1] if len(pairs) else np.zeros(0)).astype(np.int32)
    return indptr, indices


@st.composite
def graphs(draw, max_n: int = 24, symmetric: bool = True, min_n: int = 1):
    """(indptr, indices, x) with isolated nodes, self-loops, duplicates and signed features allowed."""
    seed = draw(st.integers(0, 2**31 - 1))
    n = draw(st.integers(min_n, max_n))
    m = draw(st.integers(0, 3 * n))
    f = draw(st.integers(1, 4))
    rng = np.random.default_rng(seed)
    pairs = rng.integers(0, n, size=(m, 2))
    indptr, indices = csr(n, pairs, symmetric)
    x = rng.standard_normal((n, f)) * rng.integers(0, 2, size=(n, 1))  # some all-zero rows
    if draw(st.booleans()):
        x = np.abs(x)  # one-signed columns: the other part has zero mass
    return indptr, indices, x
