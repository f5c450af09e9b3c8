"""Framelet system of one graph (spec sections 2.1-2.5): Laplacian, lambda_max, filter banks, Chebyshev
coefficients, dilation levels, and the operator that applies the tight-frame blocks B, either matrix-free
(Chebyshev recurrence, mlkit.kernels.framelet) or materialized (stacked sparse blocks, one SpMM).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from mlkit.core.errors import UsageError

A_C = np.pi / 2  # Chebyshev interval half-width: masks live on [0, pi]


# --- 2.2 filter banks ------------------------------------------------------------------------------------


def masks(frame: str) -> list:
    """The r masks of a filter bank on xi in [0, pi]; mask 0 is the low-pass."""
    frame = frame.lower()
    if frame == "haar":
        return [lambda x: np.cos(x / 2), lambda x: np.sin(x / 2)]
    if frame == "linear":
        return [lambda x: np.cos(x / 2) ** 2, lambda x: np.sin(x) / np.sqrt(2), lambda x: np.sin(x / 2) ** 2]
    if frame == "quadratic":
        return [
            lambda x: np.cos(x / 2) ** 3,
            lambda x: np.sqrt(3) * np.sin(x / 2) * np.cos(x / 2) ** 2,
            lambda x: np.sqrt(3) * np.sin(x / 2) ** 2 * np.cos(x / 2),
            lambda x: np.sin(x / 2) ** 3,
        ]
    raise UsageError(f"unknown frame '{frame}'", "framelet.frame", "Use haar, linear or quadratic.")


# --- 2.3 Chebyshev coefficients --------------------------------------------------------------------------


def cheb_coefficients(mask: Any, n: int, points: int = 500) -> np.ndarray:
    """c_k = 2/pi int_0^pi cos(k theta) g(a_c (cos theta + 1)) d theta, k < n (trapezoid, `points` nodes)."""
    if n < 1:
        raise UsageError("framelet.n must be >= 1", "framelet.n", "Use n = 2 (the paper) or more.")
    theta = np.linspace(0.0, np.pi, points)
    g = mask(A_C * (np.cos(theta) + 1.0))
    return np.array([2.0 / np.pi * np.trapezoid(np.cos(k * theta) * g, theta) for k in range(n)])


def coef_matrix(frame: str, n: int) -> np.ndarray:
    """r x n coefficients with the constant term halved (ready for sum_k c_k T_k)."""
    c = np.array([cheb_coefficients(m, n) for m in masks(frame)])
    c[:, 0] /= 2.0
    return c


# --- 2.1 graph operator ----------------------------------------------------------------------------------


def normalized_adjacency(adj: Any) -> sp.csr_matrix:
    """A_hat = D^-1/2 A D^-1/2 (float64 CSR, self-loops dropped, 0 rows for isolated nodes)."""
    a = sp.csr_matrix(adj, dtype=np.float64)
    a.setdiag(0)
    a.eliminate_zeros()
    deg = np.asarray(a.sum(1)).ravel()
    inv = np.zeros_like(deg)
    nz = deg > 0
    inv[nz] = 1.0 / np.sqrt(deg[nz])
    d = sp.diags(inv)
    out = sp.csr_matrix(d @ a @ d)
    out.sort_indices()
    return out


def laplacian(adj: Any) -> sp.csr_matrix:
    """L = I - A_hat; an isolated node's row is e_i."""
    a_hat = normalized_adjacency(adj)
    return sp.csr_matrix(sp.identity(a_hat.shape[0], format="csr") - a_hat)


def lambda_max(a_hat: sp.csr_matrix, method: str = "eigsh", seed: int = 0) -> float:
    """Largest eigenvalue of L = I - A_hat, clamped to (0, 2] (eigsh with a seeded start vector)."""
    n = a_hat.shape[0]
    if str(method) == "2":
        return 2.0
    if n == 0:
        return 1.0
    lap = sp.identity(n, format="csr") - a_hat
    if n <= 64:
        lam = float(np.linalg.eigvalsh(lap.toarray())[-1])
    else:
        from scipy.sparse.linalg import eigsh

        v0 = np.random.default_rng(seed).random(n) + 0.1
        lam = float(eigsh(lap, k=1, which="LA", v0=v0, tol=1e-6, return_eigenvectors=False)[0])
    return float(min(max(lam, 1e-6), 2.0))


# --- 2.4 levels --------------------------------------------------------------------------------------------


def level_alphas(lam_max: float, s: float, lev: int) -> list[float]:
    """alpha_l = t_l / a_c with t_l = (pi / lambda_max) s^(l - Lev), l = 1..Lev (finest level last)."""
    if s <= 1.0:
        raise UsageError(f"dilation s must be > 1, got {s}", "framelet.s", "Use s = 2 (the paper) or 2.5.")
    if lev < 1:
        raise UsageError(f"levels must be >= 1, got {lev}", "framelet.lev")
    return [float((np.pi / lam_max) * s ** (lv - lev) / A_C) for lv in range(1, lev + 1)]


# --- 2.5 materialized blocks -------------------------------------------------------------------------------


def materialize_blocks(a_hat: sp.csr_matrix, coef: np.ndarray, alphas: list[float]) -> list[sp.csr_matrix]:
    """The K blocks of B as sparse matrices (sparse x sparse products, same order as the kernel)."""
    n = a_hat.shape[0]
    r, nc = coef.shape
    lev = len(alphas)
    eye = sp.identity(n, format="csr")
    low = eye
    high: list[list[Any]] = [[None] * lev for _ in range(r - 1)]
    for lv, a in enumerate(alphas):
        m = sp.csr_matrix((a - 1.0) * eye - a * a_hat)
        ts = [eye, m]
        for _ in range(2, nc):
            ts.append(sp.csr_matrix(2 * (m @ ts[-1]) - ts[-2]))
        polys = [sum(coef[j, k] * ts[k] for k in range(nc)) for j in range(r)]
        for j in range(1, r):
            high[j - 1][lv] = sp.csr_matrix(polys[j] @ low)
        low = sp.csr_matrix(polys[0] @ low)
    blocks = [low] + [h for row in high for h in row]
    for b in blocks:
        b.eliminate_zeros()
        b.sort_indices()
    return blocks


def estimate_materialized_nnz(a_hat: sp.csr_matrix, n_coef: int, lev: int, r: int) -> int:
    """Upper bound on the nonzeros of the stacked blocks from the degree (hop-count) structure."""
    nnz1 = a_hat.nnz + a_hat.shape[0]
    hops = (n_coef - 1) * lev
    if hops <= 1:
        return int(((r - 1) * lev + 1) * nnz1)
    # 2-hop count sum_j d_j^2 bounds the support of a degree-2 polynomial; beyond that, assume dense growth.
    deg = np.diff(a_hat.indptr).astype(np.float64)
    two_hop = float(np.sum(deg * deg)) + nnz1
    est = two_hop * (max(deg.mean(), 1.0) ** max(hops - 2, 0))
    return int(((r - 1) * lev + 1) * min(est, float(a_hat.shape[0]) ** 2))


# --- the operator ------------------------------------------------------------------------------------------


@dataclass
class Framelet:
    """Everything needed to apply the framelet transform on one graph."""

    a_hat: sp.csr_matrix
    coef: np.ndarray
    alphas: list[float]
    lam_max: float
    frame: str
    operator: str  # matrix-free | materialized
    stacked: sp.csr_matrix | None = None  # (K N) x N when materialized

    @property
    def num_nodes(self) -> int:
        return int(self.a_hat.shape[0])

    @property
    def num_blocks(self) -> int:
        return (self.coef.shape[0] - 1) * len(self.alphas) + 1

    @property
    def r(self) -> int:
        return int(self.coef.shape[0])

    def decompose(self, x: np.ndarray) -> np.ndarray:
        """[K, N, F] coefficients (NumPy, Numba kernels)."""
        from mlkit.kernels.framelet import framelet_decompose_numba
        from mlkit.kernels.spmm import spmm_numba

        if self.stacked is not None:
            s = self.stacked
            return spmm_numba(s.indptr, s.indices, s.data.astype(x.dtype), x).reshape(
                self.num_blocks, self.num_nodes, -1
            )
        return framelet_decompose_numba(self.a_hat.astype(x.dtype), x, self.coef, self.alphas)

    def reconstruct(self, z: np.ndarray) -> np.ndarray:
        """sum_beta W_beta z[beta] (NumPy)."""
        from mlkit.kernels.framelet import framelet_reconstruct_numba

        if self.stacked is not None:
            st = sp.csr_matrix(self.stacked.T)
            return np.asarray(st @ z.reshape(-1, z.shape[-1]))
        return framelet_reconstruct_numba(self.a_hat.astype(z.dtype), z, self.coef, self.alphas)

    def tightness(self, x: np.ndarray) -> float:
        """||sum_beta W_beta^T W_beta x - x|| / ||x|| (1 would be no reconstruction at all, 0 a tight frame)."""
        y = self.reconstruct(self.decompose(x))
        return float(np.linalg.norm(y - x) / np.linalg.norm(x))


def cache_dir(cfg_dir: str | None) -> Path:
    if cfg_dir:
        return Path(cfg_dir).expanduser()
    from mlkit.core.artifact import cache_root

    return cache_root() / "framelet"


def graph_key(adj: sp.csr_matrix) -> str:
    """A checksum of the adjacency structure (cache key and checkpoint check)."""
    h = hashlib.sha256()
    h.update(np.asarray(adj.shape, np.int64).tobytes())
    h.update(np.ascontiguousarray(adj.indptr, np.int64).tobytes())
    h.update(np.ascontiguousarray(adj.indices, np.int64).tobytes())
    return h.hexdigest()[:20]


def build(
    adj: Any,
    frame: str = "haar",
    lev: int = 2,
    s: float = 2.0,
    n: int = 2,
    operator: str = "auto",
    max_nnz: int = 1_000_000,
    lam_method: str = "eigsh",
    seed: int = 0,
    cache: bool = False,
    cache_root: str | None = None,
) -> Framelet:
    """Build the framelet system of a graph; lambda_max and materialized blocks are cached on disk."""
    a_hat = normalized_adjacency(adj)
    coef = coef_matrix(frame, n)
    r = coef.shape[0]
    key = graph_key(a_hat)
    folder = cache_dir(cache_root)
    lam_file = folder / f"lam-{key}-{lam_method}-{seed}.npy"
    if cache and lam_file.exists():
        lam = float(np.load(lam_file))
    else:
        lam = lambda_max(a_hat, lam_method, seed)
        if cache:
            folder.mkdir(parents=True, exist_ok=True)
            np.save(lam_file, np.float64(lam))
    alphas = level_alphas(lam, s, lev)
    if operator == "auto":
        operator = "materialized" if estimate_materialized_nnz(a_hat, n, lev, r) <= max_nnz else "matrix-free"
    if operator not in ("matrix-free", "materialized"):
        raise UsageError(
            f"unknown operator '{operator}'", "framelet.operator", "Use auto, matrix-free or materialized."
        )
    stacked = None
    if operator == "materialized":
        tag = hashlib.sha256(f"{key}|{frame}|{lev}|{s}|{n}|{lam!r}".encode()).hexdigest()[:20]
        op_file = folder / f"op-{tag}.npz"
        if cache and op_file.exists():
            stacked = sp.load_npz(op_file).tocsr()
        else:
            stacked = sp.csr_matrix(sp.vstack(materialize_blocks(a_hat, coef, alphas)))
            if cache:
                folder.mkdir(parents=True, exist_ok=True)
                tmp = folder / f".{op_file.stem}.{os.getpid()}.npz"
                sp.save_npz(tmp, stacked)
                os.replace(tmp, op_file)
    return Framelet(
        a_hat=a_hat, coef=coef, alphas=alphas, lam_max=lam, frame=frame, operator=operator, stacked=stacked
    )
