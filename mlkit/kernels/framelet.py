"""The undecimated framelet transform, matrix-free: Chebyshev recurrence (decomposition) and Clenshaw nesting
(reconstruction) on the normalized adjacency, never forming the N x N framelet matrices.

Notation (spec section 2): L = I - A_hat with A_hat = D^-1/2 A D^-1/2 (symmetric, zero rows for isolated
nodes). Level l in 1..Lev uses the argument M_l = alpha_l L - I with alpha_l = t_l / (pi/2), so
M_l y = (alpha_l - 1) y - alpha_l A_hat y. `coef` is the r x n matrix of Chebyshev coefficients with the
constant term already halved, so that p_{j,l}(L) = sum_k coef[j, k] T_k(M_l).

Blocks, in this order (the tight-frame set B, K = (r-1) Lev + 1 blocks):
    0: W_{0,Lev} (cumulative low-pass), then for j = 1..r-1, l = 1..Lev: W_{j,l} at index 1 + (j-1) Lev + (l-1),
with W_{j,1} = p_{j,1}(L) and W_{j,l} = p_{j,l}(L) W_{0,l-1}.

    framelet_decompose_reference / framelet_reconstruct_reference   dense eigen-decomposition: the truth
    framelet_decompose_numba / framelet_reconstruct_numba           fused Numba prange Chebyshev steps
    framelet_decompose_torch / framelet_reconstruct_torch           torch CSR SpMM inside autograd (CPU, CUDA)
    framelet_decompose / framelet_reconstruct                       dispatch by the input's type
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numba import njit, prange

from mlkit.kernels.spmm import spmm_torch

# --- reference: dense polynomial evaluation on the spectrum ---------------------------------------------


def block_multipliers(lam: np.ndarray, coef: np.ndarray, alphas: Sequence[float]) -> np.ndarray:
    """The K spectral multipliers (one row per block) evaluated at eigenvalues `lam`."""
    from numpy.polynomial import chebyshev

    r = coef.shape[0]
    lev = len(alphas)
    p = np.array([[chebyshev.chebval(a * lam - 1.0, coef[j]) for a in alphas] for j in range(r)])  # r,Lev,N
    low = np.ones_like(lam)
    out = np.zeros(((r - 1) * lev + 1, lam.shape[0]))
    for lv in range(lev):
        for j in range(1, r):
            out[1 + (j - 1) * lev + lv] = p[j, lv] * low
        low = low * p[0, lv]
    out[0] = low
    return out


def framelet_decompose_reference(
    lap: np.ndarray, x: np.ndarray, coef: np.ndarray, alphas: Sequence[float]
) -> np.ndarray:
    """[K, N, F] framelet coefficients of x via eigh of the dense Laplacian `lap`."""
    lam, u = np.linalg.eigh(np.asarray(lap, dtype=np.float64))
    mult = block_multipliers(lam, coef, alphas)
    ux = u.T @ x
    return np.stack([u @ (m[:, None] * ux) for m in mult])


def framelet_reconstruct_reference(
    lap: np.ndarray, z: np.ndarray, coef: np.ndarray, alphas: Sequence[float]
) -> np.ndarray:
    """sum_beta W_beta^T z[beta] via eigh of the dense Laplacian."""
    lam, u = np.linalg.eigh(np.asarray(lap, dtype=np.float64))
    mult = block_multipliers(lam, coef, alphas)
    return sum(u @ (m[:, None] * (u.T @ zb)) for m, zb in zip(mult, z, strict=True))


# --- generic recurrence (NumPy or torch arrays), parametrised by the M_l application --------------------


def _decompose(
    step: Callable[[Any, float, Any, float], Any],
    x: Any,
    coef: np.ndarray,
    alphas: Sequence[float],
    stack: Callable[[list], Any],
) -> Any:
    """step(u, alpha, prev, scale) = scale * M u - prev (prev may be None)."""
    r, n = coef.shape
    lev = len(alphas)
    y = x
    high: list[list[Any]] = [[None] * lev for _ in range(r - 1)]
    for lv, a in enumerate(alphas):
        outs = [float(coef[j, 0]) * y for j in range(r)]
        if n > 1:
            prev, u = y, step(y, a, None, 1.0)
            for j in range(r):
                outs[j] = outs[j] + float(coef[j, 1]) * u
            for k in range(2, n):
                prev, u = u, step(u, a, prev, 2.0)
                for j in range(r):
                    outs[j] = outs[j] + float(coef[j, k]) * u
        for j in range(1, r):
            high[j - 1][lv] = outs[j]
        y = outs[0]
    return stack([y] + [h for row in high for h in row])


def _reconstruct(
    step: Callable[[Any, float, Any, float], Any], z: Any, coef: np.ndarray, alphas: Sequence[float]
) -> Any:
    """Nested Clenshaw sums from the finest level inwards: n-1 operator applications per level."""
    r, n = coef.shape
    lev = len(alphas)
    acc = z[0]
    for lv in range(lev - 1, -1, -1):
        parts = [acc] + [z[1 + (j - 1) * lev + lv] for j in range(1, r)]
        b = [sum(float(coef[j, k]) * parts[j] for j in range(r)) for k in range(n)]
        if n == 1:
            acc = b[0]
            continue
        u1, u2 = b[n - 1], None
        for k in range(n - 2, 0, -1):
            new = step(u1, alphas[lv], u2, 2.0) + b[k]
            u1, u2 = new, u1
        acc = step(u1, alphas[lv], u2, 1.0) + b[0]
    return acc


# --- Numba: one fused pass per Chebyshev step -----------------------------------------------------------


@njit(parallel=True, cache=True)
def _cheb_step(indptr, indices, data, u, prev, has_prev, alpha, scale, out):  # noqa: ANN001 - numba kernel
    """out = scale * ((alpha - 1) u - alpha A_hat u) - prev, row-parallel over CSR rows."""
    n = indptr.shape[0] - 1
    f = u.shape[1]
    for i in prange(n):
        for c in range(f):
            out[i, c] = 0.0
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            v = data[p]
            for c in range(f):
                out[i, c] += v * u[j, c]
        for c in range(f):
            val = scale * ((alpha - 1.0) * u[i, c] - alpha * out[i, c])
            if has_prev:
                val -= prev[i, c]
            out[i, c] = val


def _numba_step(adj: Any) -> Callable[[Any, float, Any, float], Any]:
    indptr, indices = adj.indptr, adj.indices

    def step(u: np.ndarray, alpha: float, prev: np.ndarray | None, scale: float) -> np.ndarray:
        u = np.ascontiguousarray(u)
        out = np.empty_like(u)
        data = adj.data.astype(u.dtype, copy=False)
        dummy = u if prev is None else np.ascontiguousarray(prev)
        _cheb_step(
            indptr, indices, data, u, dummy, prev is not None, u.dtype.type(alpha), u.dtype.type(scale), out
        )
        return out

    return step


def framelet_decompose_numba(
    adj: Any, x: np.ndarray, coef: np.ndarray, alphas: Sequence[float]
) -> np.ndarray:
    """[K, N, F] coefficients; `adj` is the scipy CSR normalized adjacency A_hat."""
    return _decompose(_numba_step(adj), np.ascontiguousarray(x), coef, alphas, np.stack)


def framelet_reconstruct_numba(
    adj: Any, z: np.ndarray, coef: np.ndarray, alphas: Sequence[float]
) -> np.ndarray:
    """sum_beta W_beta z[beta] (W symmetric) for NumPy z of shape [K, N, F]."""
    return _reconstruct(_numba_step(adj), z, coef, alphas)


# --- torch: CSR SpMM inside autograd --------------------------------------------------------------------


def _torch_step(adj: Any) -> Callable[[Any, float, Any, float], Any]:
    def step(u: Any, alpha: float, prev: Any, scale: float) -> Any:
        out = (scale * (alpha - 1.0)) * u - (scale * alpha) * spmm_torch(adj, u)
        return out if prev is None else out - prev

    return step


def framelet_decompose_torch(adj: Any, x: Any, coef: np.ndarray, alphas: Sequence[float]) -> Any:
    """[K, N, F] tensor of coefficients; `adj` is A_hat as a torch sparse CSR tensor on x's device."""
    import torch

    return _decompose(_torch_step(adj), x, coef, alphas, torch.stack)


def framelet_reconstruct_torch(adj: Any, z: Any, coef: np.ndarray, alphas: Sequence[float]) -> Any:
    """sum_beta W_beta z[beta] for a [K, N, F] tensor (differentiable)."""
    return _reconstruct(_torch_step(adj), z, coef, alphas)


def framelet_decompose(adj: Any, x: Any, coef: np.ndarray, alphas: Sequence[float]) -> Any:
    """Dispatch: torch tensor -> torch path (adj a torch CSR); NumPy -> Numba (adj a scipy CSR)."""
    if hasattr(x, "is_cuda"):
        return framelet_decompose_torch(adj, x, coef, alphas)
    return framelet_decompose_numba(adj, x, coef, alphas)


def framelet_reconstruct(adj: Any, z: Any, coef: np.ndarray, alphas: Sequence[float]) -> Any:
    """Dispatch like framelet_decompose."""
    if hasattr(z, "is_cuda"):
        return framelet_reconstruct_torch(adj, z, coef, alphas)
    return framelet_reconstruct_numba(adj, z, coef, alphas)


def transform_spmm_count(r: int, n: int, lev: int) -> int:
    """Operator applications (SpMMs of width F) of one decomposition plus one reconstruction."""
    return 2 * lev * max(n - 1, 0)


__all__ = [
    "block_multipliers",
    "framelet_decompose",
    "framelet_decompose_numba",
    "framelet_decompose_reference",
    "framelet_decompose_torch",
    "framelet_reconstruct",
    "framelet_reconstruct_numba",
    "framelet_reconstruct_reference",
    "framelet_reconstruct_torch",
    "transform_spmm_count",
]
