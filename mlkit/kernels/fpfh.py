"""Fast Point Feature Histograms (Rusu et al. 2009) with Open3D's conventions, as 3D-ADS/BTF use them.

Normals: PCA of the k nearest neighbours (self included), oriented towards the camera at the origin (n.(-p) > 0).
Pair features (Open3D ComputePairFeatures): the source is the point whose normal makes the smaller angle with the
connecting line; f1 = atan2(w.n2, n1.n2), f2 = v.n2, f3 = n1.d/|d|, 11 bins each. SPFH votes 100/(neighbours - 1);
FPFH = SPFH(p) + sum_q SPFH(q)/|p-q|^2 with each 11-bin block of the neighbour sum renormalised to 100.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


def neighbours(points: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """k nearest neighbours of every point (self first) with scipy's cKDTree: (squared distances, indices)."""
    from scipy.spatial import cKDTree

    k = min(k, len(points))
    d, i = cKDTree(points).query(points, k=k)
    d = np.asarray(d).reshape(len(points), k)
    return d * d, np.asarray(i).reshape(len(points), k).astype(np.int64)


@njit(cache=True, parallel=True)
def normals_numba(pts: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """PCA normals from neighbour lists (N, k), oriented towards the origin."""
    n = pts.shape[0]
    out = np.zeros((n, 3))
    for i in prange(n):
        nb = pts[idx[i]]
        c = nb - nb.sum(axis=0) / nb.shape[0]
        cov = c.T @ c
        w, v = np.linalg.eigh(cov)
        nrm = v[:, 0]
        if nrm[0] * pts[i, 0] + nrm[1] * pts[i, 1] + nrm[2] * pts[i, 2] > 0:
            nrm = -nrm
        out[i] = nrm
    return out


@njit(cache=True)
def _pair(p1, n1, p2, n2):  # noqa: ANN001, ANN202
    dx = p2[0] - p1[0]
    dy = p2[1] - p1[1]
    dz = p2[2] - p1[2]
    f4 = math.sqrt(dx * dx + dy * dy + dz * dz)
    if f4 == 0.0:
        return 0.0, 0.0, 0.0, False
    a1 = (n1[0] * dx + n1[1] * dy + n1[2] * dz) / f4
    a2 = (n2[0] * dx + n2[1] * dy + n2[2] * dz) / f4
    s0, s1, s2 = n1[0], n1[1], n1[2]
    t0, t1, t2 = n2[0], n2[1], n2[2]
    if math.acos(min(1.0, abs(a1))) > math.acos(min(1.0, abs(a2))):
        s0, s1, s2, t0, t1, t2 = n2[0], n2[1], n2[2], n1[0], n1[1], n1[2]
        dx, dy, dz = -dx, -dy, -dz
        f3 = -a2
    else:
        f3 = a1
    # v = d x n_src
    v0 = dy * s2 - dz * s1
    v1 = dz * s0 - dx * s2
    v2 = dx * s1 - dy * s0
    vn = math.sqrt(v0 * v0 + v1 * v1 + v2 * v2)
    if vn == 0.0:
        return 0.0, 0.0, 0.0, False
    v0, v1, v2 = v0 / vn, v1 / vn, v2 / vn
    # w = n_src x v
    w0 = s1 * v2 - s2 * v1
    w1 = s2 * v0 - s0 * v2
    w2 = s0 * v1 - s1 * v0
    f2 = v0 * t0 + v1 * t1 + v2 * t2
    f1 = math.atan2(w0 * t0 + w1 * t1 + w2 * t2, s0 * t0 + s1 * t1 + s2 * t2)
    return f1, f2, f3, True


@njit(cache=True)
def _bin(x: float, lo: float, width: float) -> int:
    b = int(math.floor(11.0 * (x - lo) / width))
    return min(10, max(0, b))


@njit(cache=True, parallel=True)
def spfh_numba(pts: np.ndarray, nrm: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Simplified point feature histograms (N, 33) from neighbour lists whose first entry is the point itself."""
    n, k = idx.shape
    out = np.zeros((n, 33))
    for i in prange(n):
        if k < 2:
            continue
        inc = 100.0 / (k - 1)
        for j in range(1, k):
            q = idx[i, j]
            f1, f2, f3, ok = _pair(pts[i], nrm[i], pts[q], nrm[q])
            if not ok:
                f1, f2, f3 = 0.0, 0.0, 0.0
            out[i, _bin(f1, -math.pi, 2 * math.pi)] += inc
            out[i, 11 + _bin(f2, -1.0, 2.0)] += inc
            out[i, 22 + _bin(f3, -1.0, 2.0)] += inc
    return out


@njit(cache=True, parallel=True)
def fpfh_numba(spfh: np.ndarray, idx: np.ndarray, d2: np.ndarray) -> np.ndarray:
    """FPFH from SPFH: own histogram plus the 1/d^2-weighted neighbour sum renormalised to 100 per block."""
    n, k = idx.shape
    out = np.zeros((n, 33))
    for i in prange(n):
        acc = np.zeros(33)
        sums = np.zeros(3)
        for j in range(1, k):
            d = d2[i, j]
            if d == 0.0:
                continue
            q = idx[i, j]
            for b in range(33):
                val = spfh[q, b] / d
                sums[b // 11] += val
                acc[b] += val
        for b in range(33):
            s = sums[b // 11]
            out[i, b] = (acc[b] * 100.0 / s if s != 0.0 else 0.0) + spfh[i, b]
    return out


def fpfh(points: np.ndarray, normal_k: int = 30, feature_k: int = 100) -> np.ndarray:
    """FPFH (N, 33) of an unorganised cloud (N, 3) in metres (float64 math)."""
    pts = np.ascontiguousarray(points, dtype=np.float64)
    if len(pts) < 3:
        return np.zeros((len(pts), 33))
    d2, idx = neighbours(pts, max(normal_k, feature_k))
    nrm = normals_numba(pts, np.ascontiguousarray(idx[:, : min(normal_k, idx.shape[1])]))
    kf = min(feature_k, idx.shape[1])
    idx_f = np.ascontiguousarray(idx[:, :kf])
    spfh = spfh_numba(pts, nrm, idx_f)
    return fpfh_numba(spfh, idx_f, np.ascontiguousarray(d2[:, :kf]))


def fpfh_reference(points: np.ndarray, normals: np.ndarray, idx: np.ndarray, d2: np.ndarray) -> np.ndarray:
    """Plain Python FPFH from given normals and neighbour lists (slow; for tests)."""
    n, k = idx.shape
    spfh = np.zeros((n, 33))
    for i in range(n):
        for j in range(1, k):
            q = idx[i, j]
            f1, f2, f3, ok = _pair_py(points[i], normals[i], points[q], normals[q])
            for off, (x, lo, width) in enumerate(
                ((f1, -math.pi, 2 * math.pi), (f2, -1.0, 2.0), (f3, -1.0, 2.0))
            ):
                spfh[i, 11 * off + min(10, max(0, math.floor(11 * (x - lo) / width)))] += 100.0 / (k - 1)
    out = np.zeros((n, 33))
    for i in range(n):
        w = np.array([0.0 if d2[i, j] == 0 else 1.0 / d2[i, j] for j in range(1, k)])
        acc = (spfh[idx[i, 1:]] * w[:, None]).sum(axis=0)
        for blk in range(3):
            s = acc[11 * blk : 11 * blk + 11].sum()
            out[i, 11 * blk : 11 * blk + 11] = (acc[11 * blk : 11 * blk + 11] * 100 / s if s else 0) + spfh[
                i, 11 * blk : 11 * blk + 11
            ]
    return out


def _pair_py(p1, n1, p2, n2):  # noqa: ANN001, ANN202
    d = p2 - p1
    f4 = math.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
    if f4 == 0:
        return 0.0, 0.0, 0.0, False
    # the same summation order as the kernel: the swap test compares two nearly equal angles on flat patches
    a1 = (n1[0] * d[0] + n1[1] * d[1] + n1[2] * d[2]) / f4
    a2 = (n2[0] * d[0] + n2[1] * d[1] + n2[2] * d[2]) / f4
    src, tgt = n1, n2
    if math.acos(min(1.0, abs(a1))) > math.acos(min(1.0, abs(a2))):
        src, tgt, d, f3 = n2, n1, -d, -a2
    else:
        f3 = a1
    v = np.cross(d, src)
    if np.linalg.norm(v) == 0:
        return 0.0, 0.0, 0.0, False
    v = v / np.linalg.norm(v)
    w = np.cross(src, v)
    return math.atan2(w @ tgt, src @ tgt), v @ tgt, f3, True
