"""Memory banks (float16 memmaps, zero rows dropped), scalar normalisation, coreset, NN scoring, OCSVM fusion."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

MODALITIES = {
    "rgb": ("rgb",),
    "pt": ("pt",),
    "fusion": ("fs",),
    "double": ("pt", "rgb"),
    "triple": ("pt", "rgb", "fs"),
}
GRID_OF = {"rgb": 8, "pt": 4, "fs": 4}  # image_size / grid cell


class BankWriter:
    """Append patch rows to a float16 memmap, dropping exactly-zero rows; `rows()` is the filled view."""

    def __init__(self, path: Path, max_rows: int, dim: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(max(1, max_rows), dim))
        self.n = 0

    def add(self, rows: np.ndarray) -> None:
        keep = rows[np.any(rows != 0, axis=1)].astype(np.float16)
        self.mm[self.n : self.n + len(keep)] = keep
        self.n += len(keep)

    def rows(self) -> np.ndarray:
        self.mm.flush()
        return self.mm[: self.n]


def scalar_stats(bank: np.ndarray, chunk: int = 65536) -> tuple[float, float]:
    """Mean and standard deviation over every element of a (memmapped) bank, in float64 chunks."""
    s = s2 = 0.0
    n = 0
    for i in range(0, len(bank), chunk):
        b = np.asarray(bank[i : i + chunk], dtype=np.float64)
        s += b.sum()
        s2 += (b * b).sum()
        n += b.size
    if n == 0:
        return 0.0, 1.0
    mean = s / n
    return mean, math.sqrt(max(s2 / n - mean * mean, 1e-12))


def coreset_sizes(raw: dict[str, int], n_patches_pt: int, cfg: dict[str, Any]) -> dict[str, int]:
    """Rows kept per bank: uniform = ratio of each bank; reference = floor(ratio * all pt patches), rgb/fs chained off it."""
    m = cfg["memory"]
    ratio, cap = float(m["coreset_ratio"]), int(m["coreset_max"])
    if m["coreset_mode"] == "reference":
        pt = int(ratio * n_patches_pt)
        want = {"pt": pt, "rgb": int(ratio * pt), "fs": int(ratio * pt)}
    elif m["coreset_mode"] == "uniform":
        want = {k: int(math.ceil(ratio * v)) for k, v in raw.items()}
    else:
        from mlkit.core.errors import UsageError

        raise UsageError(
            f"unknown coreset mode '{m['coreset_mode']}'", "memory.coreset_mode", "Use uniform or reference."
        )
    out = {}
    for k, v in raw.items():
        n = min(max(1, want.get(k, v)), v)
        out[k] = min(n, cap) if cap > 0 else n
    return out


def coreset_plan(rows: int, dim: int, n: int, cfg: dict[str, Any]) -> tuple[int, int, int]:
    """(pool rows, projection width, peak bytes) of one bank's coreset: the projected pool (float32), the greedy
    loop's two per-row vectors, one projection chunk and the kept rows; the float16 raw bank stays on disk."""
    from mlkit.kernels.coreset import jl_dim

    m = cfg["memory"]
    pool = min(rows, int(m["presample"])) if int(m["presample"]) > 0 else rows
    width = int(m["projection_dim"]) or jl_dim(pool)
    width = min(width, dim)
    peak = 4 * (pool * width + 2 * pool + min(pool, _CHUNK) * (dim + width) + n * dim)
    return pool, width, peak


_CHUNK = 65536  # rows per projection chunk


def subsample_bank(bank: np.ndarray, n: int, cfg: dict[str, Any], seed: int, device: str) -> np.ndarray:
    """Greedy k-center rows of a bank (after a seeded pre-subsample), as a float32 array.

    The bank may be a float16 memmap: it is projected in chunks (seeded Gaussian map, JL width when
    projection_dim is 0), so memory holds the projected pool, never the raw bank in float32 (`coreset_plan`)."""
    from mlkit.kernels.coreset import select

    m = cfg["memory"]
    rng = np.random.default_rng(seed)
    pool = np.arange(len(bank))
    pre = int(m["presample"])
    if pre > 0 and len(pool) > pre:
        pool = np.sort(rng.choice(len(bank), pre, replace=False))
    keep = select(bank, n, int(m["projection_dim"]), seed, device, rows=pool, chunk=_CHUNK)
    return np.asarray(bank[pool[keep]], dtype=np.float32)


def score_bank(patches: Any, bank: Any, reweight: bool, chunk: int = 1024) -> tuple[float, Any]:
    """Image score s (re-weighted max of NN distances) and the per-patch NN distance m (spec §2.8)."""
    import torch

    from mlkit.kernels.knn import knn_torch, nn_distance

    m = nn_distance(patches, bank, chunk)  # distances only: the GEMM plus a row minimum
    i_star = int(torch.argmax(m))
    s_star = m[i_star]
    if not reweight or len(bank) < 2:
        return float(s_star), m
    _, j = knn_torch(patches[i_star][None], bank, 1)  # the one index the re-weighting needs
    m_star = bank[j[0, 0]][None]
    _, nn_idx = knn_torch(m_star, bank, min(3, len(bank)))
    nb = bank[nn_idx[0, 1:]]
    dim = math.sqrt(patches.shape[1])
    dist = torch.linalg.norm(patches[i_star][None] - nb, dim=1)
    w = 1 - torch.exp(s_star / dim) / torch.exp(dist / dim).sum()
    return float(w * s_star), m


def upsample_map(m: Any, size: int, sigma: float) -> np.ndarray:
    """Patch distances (g*g) -> bilinear (align_corners=False) to size x size -> Gaussian blur (sigma px)."""
    import torch.nn.functional as F
    from scipy.ndimage import gaussian_filter

    g = int(round(math.sqrt(m.shape[0])))
    up = F.interpolate(
        m.reshape(1, 1, g, g).float().cpu(), size=(size, size), mode="bilinear", align_corners=False
    )
    out = up[0, 0].numpy().astype(np.float32)
    return gaussian_filter(out, sigma=sigma) if sigma > 0 else out


def fit_ocsvm(x: np.ndarray, cfg: dict[str, Any], seed: int) -> np.ndarray:
    """Linear one-class SVM (SGDOneClassSVM, seeded) on score vectors; the fused score is w.x (no offset)."""
    from sklearn.linear_model import SGDOneClassSVM

    f = cfg["fusion"]
    n = int(f["pixel_samples"])
    if len(x) > n:
        x = x[np.random.default_rng(seed).choice(len(x), n, replace=False)]
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    svm = SGDOneClassSVM(
        nu=float(f["nu"]), max_iter=int(f["max_iter"]), random_state=int(f["svm_seed"]), tol=float(f["tol"])
    )
    with warnings.catch_warnings():  # the reference runs the same 1000 epochs and ignores this warning too
        warnings.simplefilter("ignore", ConvergenceWarning)
        svm.fit(x.astype(np.float64))
    return np.asarray(svm.coef_, dtype=np.float64).ravel()
