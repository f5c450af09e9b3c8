"""Offline preprocessing (spec §2.1): RANSAC background-plane removal, square padding, largest-cluster cleaning.

Unlike the reference (which overwrites the dataset), this writes a new root and refuses to write into its input.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mlkit.core.errors import UsageError
from mlkit.tasks.anomaly.checks import check_categories
from mlkit.tasks.anomaly.data import categories, read_rgb, read_xyz


def fit_plane_ransac(
    pts: np.ndarray, threshold: float, iterations: int, n_sample: int, rng: np.random.Generator
) -> np.ndarray:
    """Plane (a, b, c, d) with |(a,b,c)| = 1 maximising inliers; each hypothesis is a least-squares fit to n points."""
    if len(pts) < 3:
        return np.array([0.0, 0.0, 1.0, 0.0])
    n_sample = min(n_sample, len(pts))
    best, best_count = None, -1
    for start in range(0, iterations, 100):  # batches of hypotheses keep memory bounded
        m = min(100, iterations - start)
        idx = np.stack([rng.choice(len(pts), n_sample, replace=False) for _ in range(m)])
        sel = pts[idx]
        cen = sel.mean(axis=1)
        _, _, vt = np.linalg.svd(sel - cen[:, None], full_matrices=False)
        nrm = vt[:, -1]
        d = -(nrm * cen).sum(axis=1)
        counts = (np.abs(pts @ nrm.T + d) < threshold).sum(axis=0)
        j = int(np.argmax(counts))
        if counts[j] > best_count:
            best, best_count = np.append(nrm[j], d[j]), int(counts[j])
    inl = pts[np.abs(pts @ best[:3] + best[3]) < threshold]
    if len(inl) >= 3:  # final least-squares refit on the inliers
        cen = inl.mean(axis=0)
        nrm = np.linalg.svd(inl - cen, full_matrices=False)[2][-1]
        best = np.append(nrm, -nrm @ cen)
    return best


def remove_plane(xyz: np.ndarray, rgb: np.ndarray, cfg: dict[str, Any], rng: np.random.Generator) -> None:
    """Fit the plane on the 10-px border and zero xyz and rgb of every pixel near it (in place)."""
    edge = np.concatenate([xyz[:10].reshape(-1, 3), xyz[-10:].reshape(-1, 3),
                           xyz[:, :10].reshape(-1, 3), xyz[:, -10:].reshape(-1, 3)])  # fmt: skip
    edge = edge[np.all(edge != 0, axis=1)].astype(np.float64)
    plane = fit_plane_ransac(edge, cfg["ransac_threshold"], cfg["ransac_iterations"], 50, rng)
    dist = np.abs(xyz.astype(np.float64) @ plane[:3] + plane[3])
    bg = (dist < cfg["plane_distance"]) & np.all(xyz != 0, axis=-1)
    xyz[bg] = 0
    rgb[bg] = 0


def pad_square(a: np.ndarray, multiple: int = 100) -> np.ndarray:
    """Zero-pad H and W to multiples of `multiple`, then to a square L = max; extra rows/cols go bottom/right."""
    h, w = a.shape[:2]
    side = max(math.ceil(h / multiple) * multiple, math.ceil(w / multiple) * multiple)
    top, left = (side - h) // 2, (side - w) // 2
    pad = [(top, side - h - top), (left, side - w - left)] + [(0, 0)] * (a.ndim - 2)
    return np.pad(a, pad)


def grid_components(xyz: np.ndarray, eps: float) -> np.ndarray:
    """Labels (H, W) of 8-connected pixel components linking valid neighbours closer than eps in 3-D; -2 = invalid."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    h, w = xyz.shape[:2]
    valid = np.all(xyz != 0, axis=-1)
    ids = np.arange(h * w).reshape(h, w)
    rows, cols = [], []
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a = (slice(0, h - dy), slice(max(0, -dx), w - max(0, dx)))
        b = (slice(dy, h), slice(max(0, dx), w - max(0, -dx) if dx < 0 else w))
        b = (slice(dy, h), slice(max(0, dx), w + min(0, dx)))
        ok = valid[a] & valid[b] & (np.linalg.norm(xyz[a] - xyz[b], axis=-1) < eps)
        rows.append(ids[a][ok])
        cols.append(ids[b][ok])
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(h * w, h * w))
    _, labels = connected_components(graph, directed=False)
    labels = labels.reshape(h, w)
    labels[~valid] = -2
    return labels


def dbscan_labels(pts: np.ndarray, eps: float, min_points: int) -> np.ndarray:
    """DBSCAN with a cKDTree radius graph: core points (>= min_points within eps, self included), -1 = noise."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    if len(pts) == 0:
        return np.zeros(0, dtype=np.int64)
    tree = cKDTree(pts)
    counts = tree.query_ball_point(pts, eps, return_length=True)
    core = counts >= min_points
    pairs = tree.query_pairs(eps, output_type="ndarray")
    cc = pairs[core[pairs[:, 0]] & core[pairs[:, 1]]]
    graph = coo_matrix((np.ones(len(cc), dtype=np.int8), (cc[:, 0], cc[:, 1])), shape=(len(pts), len(pts)))
    _, comp = connected_components(graph, directed=False)
    labels = np.where(core, comp, -1)
    # border points join the cluster of a core neighbour
    for a, b in ((0, 1), (1, 0)):
        m = core[pairs[:, a]] & ~core[pairs[:, b]]
        labels[pairs[m, b]] = comp[pairs[m, a]]
    return labels


def keep_largest(xyz: np.ndarray, rgb: np.ndarray, cfg: dict[str, Any]) -> None:
    """Zero xyz and rgb of valid points outside the largest cluster (in place); dbscan keeps the noise quirk."""
    valid = np.all(xyz != 0, axis=-1)
    if cfg["cluster"] == "none" or not valid.any():
        return
    if cfg["cluster"] == "grid":
        labels = grid_components(xyz, cfg["cluster_eps"])[valid]
    elif cfg["cluster"] == "dbscan":
        labels = dbscan_labels(xyz[valid].astype(np.float64), cfg["cluster_eps"], cfg["cluster_min_points"])
    else:
        raise UsageError(
            f"unknown cluster mode '{cfg['cluster']}'", "preprocess.cluster", "Use grid, dbscan or none."
        )
    ids, sizes = np.unique(labels, return_counts=True)  # reference quirk: noise (-1) counts as a cluster
    drop = np.zeros(valid.shape, dtype=bool)
    drop[valid] = labels != ids[np.argmax(sizes)]
    xyz[drop] = 0
    rgb[drop] = 0


def preprocess_sample(
    rgb_path: Path, xyz_path: Path, gt_path: Path | None, cfg: dict[str, Any], seed: int
) -> tuple:
    """One sample through the three steps: (rgb uint8, xyz float32, gt uint8 or None), all padded squares."""
    xyz = read_xyz(xyz_path).copy()
    rgb = np.array(read_rgb(rgb_path))
    rng = np.random.default_rng(seed)
    remove_plane(xyz, rgb, cfg, rng)
    xyz, rgb = pad_square(xyz, cfg["pad_to"]), pad_square(rgb, cfg["pad_to"])
    gt = None
    if gt_path is not None and gt_path.is_file():
        gt = pad_square(np.array(read_rgb(gt_path, "ground truth", "L")), cfg["pad_to"])
    keep_largest(xyz, rgb, cfg)
    return rgb, xyz, gt


def preprocess_root(
    src: Path,
    out: Path,
    cfg: dict[str, Any],
    seed: int = 0,
    track: Callable[[Iterable, str], Iterable] | None = None,
) -> list[str]:
    """Preprocess every category of `src` into `out` (same layout); returns the categories written."""
    import tifffile

    src, out = Path(src).resolve(), Path(out).resolve()
    if out == src or src in out.parents or out in src.parents:
        raise UsageError("the output folder overlaps the input", str(out), "Pass a new folder to --out.")
    cats = categories(src)
    # every file's header and shape first: a bad file fails in seconds, before anything is written
    check_categories(src, cats, ("train", "validation", "test"), optional=("validation", "test"))
    single = (src / "train").is_dir()
    jobs = []
    for cat in cats:
        cdir = src if single else src / cat
        for xyz in sorted(cdir.glob("*/*/xyz/*.tif*")):
            jobs.append((cat, cdir, xyz))
        for extra in cdir.iterdir():
            if extra.is_file():
                (out / cat).mkdir(parents=True, exist_ok=True)
                shutil.copy2(extra, out / cat / extra.name)
    items = track(jobs, "preprocess") if track else jobs
    for n, (cat, cdir, xyz_path) in enumerate(items):
        folder = xyz_path.parent.parent
        stem = xyz_path.stem
        rgb, xyz, gt = preprocess_sample(
            folder / "rgb" / f"{stem}.png", xyz_path, folder / "gt" / f"{stem}.png", cfg, seed + n
        )
        dst = out / cat / folder.relative_to(cdir)
        for sub in ("rgb", "xyz") + (("gt",) if gt is not None else ()):
            (dst / sub).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(dst / "rgb" / f"{stem}.png")
        tifffile.imwrite(dst / "xyz" / f"{stem}.tiff", xyz.astype(np.float32), photometric="rgb")
        if gt is not None:
            Image.fromarray(gt).save(dst / "gt" / f"{stem}.png")
    return cats
