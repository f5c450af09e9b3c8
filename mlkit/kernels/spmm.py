"""CSR sparse x dense products (SpMM): the memory-bound hot spot of graph propagation.

    spmm_reference(indptr, indices, data, x)   SciPy, the truth
    spmm_numba(indptr, indices, data, x)       Numba prange over rows: row-parallel, no atomics
    spmm_torch(a, x, at=None)                  torch CSR SpMM inside autograd (CPU and CUDA)
    spmm(a, x)                                 dispatch: torch tensor -> torch path, NumPy -> numba

The torch path is an autograd Function whose backward multiplies by the transpose given (`at`), or by `a`
itself when the matrix is symmetric (at=None): torch's own backward for CSR would transpose the matrix on
every call. On CUDA it calls torch.sparse.mm (cuSPARSE). On CPU it hands the same CSR arrays (no copy) to
SciPy's CSR kernel: measured on Cora's stacked framelet operator (212k nnz, width 16) torch 2.14's CPU CSR
SpMM took ~50 ms against ~1.2 ms for SciPy (see benchmarks/framelet_transform.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange


def spmm_reference(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, x: np.ndarray) -> np.ndarray:
    """y = A x with SciPy (A given as CSR arrays, N rows, x dense [M, F])."""
    import scipy.sparse as sp

    n = indptr.shape[0] - 1
    a = sp.csr_matrix((data, indices, indptr), shape=(n, x.shape[0]))
    return np.asarray(a @ x)


@njit(parallel=True, cache=True)
def _spmm_rows(indptr, indices, data, x, out):  # noqa: ANN001 - numba kernel
    n = indptr.shape[0] - 1
    f = x.shape[1]
    for i in prange(n):
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            v = data[p]
            for c in range(f):
                out[i, c] += v * x[j, c]


def spmm_numba(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, x: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """y = A x, one parallel task per CSR row; x is made C-contiguous (feature axis fastest)."""
    x = np.ascontiguousarray(x)
    if x.ndim != 2:
        raise ValueError("spmm expects a 2-D dense operand")
    dtype = np.result_type(data.dtype, x.dtype)
    n = indptr.shape[0] - 1
    if out is None:
        out = np.zeros((n, x.shape[1]), dtype=dtype)
    else:
        out[...] = 0
    _spmm_rows(indptr, indices, data.astype(dtype, copy=False), x.astype(dtype, copy=False), out)
    return out


def _scipy_view(a: Any) -> Any:
    """A scipy CSR matrix sharing the memory of a CPU torch sparse CSR tensor (cached on the tensor)."""
    import scipy.sparse as sp
    import torch

    view = getattr(a, "_mlkit_scipy", None)
    if view is None:
        b = a if a.layout == torch.sparse_csr else a.to_sparse_csr()
        view = sp.csr_matrix(
            (b.values().detach().numpy(), b.col_indices().numpy(), b.crow_indices().numpy()), shape=tuple(b.shape)
        )
        a._mlkit_scipy = view
    return view


def _mm(a: Any, x: Any) -> Any:
    import torch

    if x.is_cuda:
        return torch.sparse.mm(a, x)
    y = _scipy_view(a) @ x.detach().contiguous().numpy()
    return torch.from_numpy(np.ascontiguousarray(y)).to(x.dtype)


def _torch_function() -> Any:
    import torch

    class _SpMM(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, a: Any, at: Any, x: Any) -> Any:  # noqa: ANN401
            ctx.save_for_backward(a if at is None else at)
            return _mm(a, x)

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:  # noqa: ANN401
            (t,) = ctx.saved_tensors
            return None, None, _mm(t, grad.contiguous())

    return _SpMM


_FN: Any = None


def spmm_torch(a: Any, x: Any, at: Any = None) -> Any:
    """A @ x for a torch sparse (CSR or COO) A; gradient w.r.t. x via `at` (A^T), or A when at is None."""
    global _FN
    if _FN is None:
        _FN = _torch_function()
    return _FN.apply(a, at, x)


def to_torch_csr(m: Any, dtype: Any = None, device: Any = "cpu") -> Any:
    """A scipy sparse matrix as a torch sparse CSR tensor (int64 indices as torch wants)."""
    import warnings

    import scipy.sparse as sp
    import torch

    m = sp.csr_matrix(m)
    m.sort_indices()
    dtype = dtype or torch.float32
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        t = torch.sparse_csr_tensor(
            torch.from_numpy(m.indptr.astype(np.int64)),
            torch.from_numpy(m.indices.astype(np.int64)),
            torch.from_numpy(np.asarray(m.data)).to(dtype),
            size=m.shape,
            check_invariants=False,
        )
        return t.to(device)


def spmm(a: Any, x: Any, at: Any = None) -> Any:
    """Dispatch: a torch x (CPU or CUDA) -> spmm_torch; NumPy x with a scipy CSR `a` -> spmm_numba."""
    if hasattr(x, "is_cuda"):
        return spmm_torch(a, x, at)
    return spmm_numba(a.indptr, a.indices, a.data, x)
