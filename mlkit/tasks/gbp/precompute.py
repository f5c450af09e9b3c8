"""The GBP precompute engine: choose an estimator, propagate feature columns, cache float32 rows on disk.

    result = propagate_rows(graph, prop_cfg, targets=..., seed=..., cache_dir=...)
    result.rows       # np.memmap [k, F] float32 (k = all nodes for push/exact, |targets| for bidirectional)
    result.take(ids)  # rows of the given node ids

Cache files (mlkit.tasks.gbp.cache) live in `cache_dir`: `<key>.npy` (rows), `<key>.nodes.npy` (node id of each
row, when not all nodes) and `<key>.json` (parameters, shape, timings). The key hashes the graph arrays, the features, the
standardisation, the resolved parameters and the target set. `shard=(i, N)` computes the contiguous feature
column block i of N into `<key>.s<i>of<N>.npy`; `merge_shards` concatenates them, bit for bit equal to an
unsharded run (columns are computed independently -- push in fixed global groups of PUSH_GROUP columns, a shard
computing the whole groups it overlaps -- and the walks depend only on the seed and targets).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mlkit.core.errors import UsageError
from mlkit.graph.graph import Graph
from mlkit.kernels import gbp_push as gp
from mlkit.tasks.gbp.cache import Propagated, cache_key, load_cached, merge_shards, save  # noqa: F401 - re-exported

ESTIMATORS = ("auto", "push", "bidirectional", "exact")
WEIGHTS = ("ppr", "heat", "sgc", "list")
_ROWS = 1 << 18
EXACT_CHEAP = 5e9  # auto: exact when L (nnz + n) F multiply-adds stay below this (a few CPU seconds)


# ------------------------------------------------------------------------------------ parameters
def weights_of(prop: dict[str, Any]) -> np.ndarray:
    """The level weights w_0..w_L of the configured family."""
    kind = prop["weights"]
    if kind not in WEIGHTS:
        raise UsageError(
            f"unknown weights '{kind}'", "propagation.weights", f"Use one of {', '.join(WEIGHTS)}."
        )
    levels = int(prop["levels"])
    if kind == "list":
        w = np.asarray(prop["weight_list"], dtype=np.float64)
        if w.ndim != 1 or w.size == 0 or np.any(w < 0):
            raise UsageError("weight_list must be a non-empty list of w_l >= 0", "propagation.weight_list")
        return w
    if kind == "sgc":
        return gp.sgc_weights(levels if levels > 0 else 2)
    if levels <= 0:
        levels = gp.levels_for_tol(kind, float(prop["tol"]), float(prop["alpha"]), float(prop["heat_t"]))
    return (
        gp.ppr_weights(float(prop["alpha"]), levels)
        if kind == "ppr"
        else gp.heat_weights(float(prop["heat_t"]), levels)
    )


def _ram_bytes() -> float:
    """Physical memory of this machine (bytes); 16 GiB when the OS does not say."""
    import os

    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 16.0 * 2**30


def resolve_estimator(
    prop: dict[str, Any],
    num_nodes: int,
    num_targets: int | None,
    levels: int | None = None,
    num_entries: int | None = None,
) -> str:
    """auto -> exact when exact propagation is cheap or targets are many; else the cheaper of the work models.

    Cheap: L (nnz + n) F <= EXACT_CHEAP multiply-adds (a few CPU seconds of SpMM; every citation graph of the
    paper: Cora 8e8, Citeseer 2e9, PubMed <= 5e9). There the bidirectional estimator's fixed costs (walks, a
    reverse push per feature column, compiling its kernels) dominate: on Citeseer it took 50-67 s where
    exact took 1.1 s at the same accuracy. Otherwise exact unless targets are few (|S| < n / 20) AND the
    bidirectional work model beats L SpMMs.

    The model (per feature column, in entry visits): exact = L nnz; bidirectional gathers level l+1 only on
    the targets' (L-l-1)-hop ball, about min(nnz, |S| d^(l+1)) entries per level, at most L d / r_max pushed
    entries in all, in float64 (x2), plus |S| n_r L walk steps. With many levels the ball covers the graph
    and exact SpMM wins; with few levels or few targets the bidirectional estimator does.

    Memory guard: the walks' per-level visit lists (about 16 bytes per walk step, |S| n_r L steps) must fit in a
    quarter of the machine's RAM, else exact (whose working set is a few n x F arrays). Without it, 4e5 targets
    with the default PPR levels (L = 43) on a 1e7-node graph picked bidirectional and ran out of 24 GB."""
    est = prop["estimator"]
    if est not in ESTIMATORS:
        raise UsageError(
            f"unknown estimator '{est}'", "propagation.estimator", f"Use one of {', '.join(ESTIMATORS)}."
        )
    if est == "push" and prop["weights"] != "ppr":
        raise UsageError(
            "the push estimator is the original's PPR path",
            "propagation.estimator",
            "Use weights: ppr, or estimator bidirectional/exact for heat, sgc and list weights.",
        )
    if est != "auto":
        return est
    if num_targets is None or num_targets * 20 >= num_nodes:
        return "exact"
    if levels is None or num_entries is None or levels <= 0:
        return "bidirectional"
    feats = max(int(prop.get("_features", 64)), 1)
    if float(levels) * (float(num_entries) + num_nodes) * feats <= EXACT_CHEAP:
        return "exact"
    walk_steps = float(num_targets) * float(prop.get("walks", 1000)) * levels
    if 16.0 * walk_steps > 0.25 * _ram_bytes():
        return "exact"
    nnz = max(float(num_entries), 1.0)
    d = nnz / max(num_nodes, 1)
    ball = sum(min(nnz, num_targets * d ** (k + 1)) for k in range(levels))
    pushes = levels * d / max(float(prop.get("rmax", 1e-7)), 1e-300)
    bidir = 2.0 * min(ball, pushes) + num_targets * float(prop.get("walks", 1000)) * levels / feats
    return "bidirectional" if bidir < levels * nnz else "exact"


def parse_shard(text: str | None) -> tuple[int, int]:
    """'i/N' -> (i, N) with 0 <= i < N."""
    if not text:
        return 0, 1
    try:
        i, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise UsageError(f"bad shard '{text}'", "--shard", "Write it as i/N, e.g. 0/4.") from None
    if not 0 <= i < n:
        raise UsageError(f"shard index {i} outside 0..{n - 1}", "--shard", "Write it as i/N with 0 <= i < N.")
    return i, n


def column_block(num_features: int, shard: tuple[int, int], align: int = 1) -> tuple[int, int]:
    """The contiguous columns [c0, c1) of shard i of N, bounds on multiples of `align` while every shard
    keeps at least one aligned block (the push's column groups: aligned shards give the unsharded bits)."""
    i, n = shard
    if align > 1 and num_features >= align * n:
        blocks = -(-num_features // align)
        return min(i * blocks // n * align, num_features), min((i + 1) * blocks // n * align, num_features)
    return i * num_features // n, (i + 1) * num_features // n


# ------------------------------------------------------------------------------------ graph helpers
def loops_to_add(graph: Graph, prop: dict[str, Any]) -> bool:
    """Whether propagation adds a self-loop per node: `self_loops` asks for exactly ONE per node, so a graph
    whose loader already gave every node one (the Friendster layout, as the original's loader) gets none."""
    return bool(prop["self_loops"]) and not getattr(graph, "self_loops", False)


def thresholds_of(prop: dict[str, Any]) -> str:
    """The bidirectional push thresholds: paper | original (gbp_combine.column_thresholds)."""
    from mlkit.kernels.gbp_combine import THRESHOLDS

    rule = str(prop.get("thresholds", "paper"))
    if rule not in THRESHOLDS:
        raise UsageError(f"unknown thresholds '{rule}'", "propagation.thresholds", "Use paper or original.")
    return rule


def add_self_loops(indptr: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A copy of the CSR with one (u, u) entry first in every row."""
    from mlkit.graph.io import index_dtypes

    n = indptr.shape[0] - 1
    ip = np.asarray(indptr, dtype=np.int64)
    new_ptr = ip + np.arange(n + 1)
    ptr_t, idx_t = index_dtypes(n, int(new_ptr[-1]))
    out = np.empty(int(new_ptr[-1]), dtype=idx_t)
    out[new_ptr[:-1]] = np.arange(n)
    mask = np.ones(out.shape[0], dtype=bool)
    mask[new_ptr[:-1]] = False
    out[mask] = np.asarray(indices)
    return new_ptr.astype(ptr_t), out


XT_BUDGET = 1 << 30  # bytes of transposed features handed to the bidirectional kernel at once


def xt_chunk(n: int, cols: int) -> int:
    """Columns per chunk of the bidirectional path: [C, n] float32 within XT_BUDGET (at least one column)."""
    return int(max(1, min(cols, XT_BUDGET // max(4 * n, 1))))


def features_t(features: np.ndarray, c0: int, c1: int, mean: Any = None, std: Any = None) -> np.ndarray:
    """Columns [c0, c1) as a contiguous float32 [F, n] block (standardised if mean/std are given)."""
    n = features.shape[0]
    if hasattr(features, "columns"):  # on-disk column-major features (graph.colfile): one read per chunk
        out = features.columns(c0, c1)
        if mean is not None:
            out -= np.asarray(mean[c0:c1], np.float32)[:, None]
            out /= np.asarray(std[c0:c1], np.float32)[:, None]
        return out
    out = np.empty((c1 - c0, n), dtype=np.float32)
    for s in range(0, n, _ROWS):
        blk = np.asarray(features[s : s + _ROWS, c0:c1], dtype=np.float32)
        if mean is not None:
            blk = (blk - mean[c0:c1]) / std[c0:c1]
        out[:, s : s + blk.shape[0]] = blk.T
    return out


# ------------------------------------------------------------------------------------ the engine
def plan(graph: Graph, prop: dict[str, Any], targets: np.ndarray | None, seed: int):  # noqa: ANN201
    """(estimator, weights, the parameters that shape the result, the target array or None)."""
    n = graph.num_nodes
    w = weights_of(prop)
    nnz = int(np.asarray(graph.indptr)[-1]) + (n if loops_to_add(graph, prop) else 0)
    feats = {} if graph.features is None else {"_features": int(graph.features.shape[1])}
    est = resolve_estimator({**prop, **feats}, n, None if targets is None else len(targets), len(w) - 1, nnz)
    params: dict[str, Any] = {
        "estimator": est,
        "weights": w.tolist(),
        "r": float(prop["r"]),
        "self_loops": bool(prop["self_loops"]),
    }
    if est in ("push", "bidirectional"):
        params["rmax"] = float(prop["rmax"])
    rule = thresholds_of(prop)  # validated for every estimator; it shapes the bidirectional result only
    if est == "bidirectional":
        params["thresholds"] = rule
    if est == "push":
        params["alpha"] = float(prop["alpha"])
    if est == "bidirectional":
        params.update(walks=int(prop["walks"]), seed=int(seed))
        if targets is None:
            targets = np.arange(n, dtype=np.int64)
    tgt = np.asarray(targets, dtype=np.int64) if (targets is not None and est == "bidirectional") else None
    if tgt is not None and tgt.size and (tgt.min() < 0 or tgt.max() >= n):
        raise UsageError("target node ids outside the graph", "propagation.targets")
    return est, w, params, tgt


def propagate_rows(
    graph: Graph,
    prop: dict[str, Any],
    *,
    targets: np.ndarray | None = None,
    seed: int = 0,
    cache_dir: Path | None = None,
    shard: tuple[int, int] = (0, 1),
    mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
    report: dict[str, Any] | None = None,
) -> Propagated:
    """Propagate the graph's features (spec §2.1) with the configured estimator; cached when cache_dir is set."""
    say = log or (lambda _m: None)
    if graph.features is None:
        raise UsageError("the graph has no node features", graph.name, "Add feats.npy to the dataset.")
    n, f = graph.num_nodes, graph.features.shape[1]
    est, w, params, tgt = plan(graph, prop, targets, seed)
    key = cache_key(graph, params, tgt, mean, std) if cache_dir is not None else ""
    suffix = "" if shard == (0, 1) else f".s{shard[0]}of{shard[1]}"
    if cache_dir is not None and prop.get("cache", True):
        found = load_cached(Path(cache_dir), key + suffix, n)
        if found is not None:
            say(f"propagation cache hit: {found.path}")
            return found
    timings: dict[str, float] = {}
    if int(prop.get("threads", 0)) > 0:
        import numba

        numba.set_num_threads(min(int(prop["threads"]), numba.config.NUMBA_NUM_THREADS))
    t0 = time.perf_counter()
    indptr, indices = np.asarray(graph.indptr), graph.indices
    if loops_to_add(graph, prop):
        indptr, indices = add_self_loops(indptr, indices)
    c0, c1 = column_block(f, shard, gp.PUSH_GROUP if est == "push" else 1)
    if est == "exact" and device.startswith("cuda"):
        rows = _exact_torch(indptr, indices, graph.features, c0, c1, w, float(prop["r"]), mean, std, device)
        timings["spmm (cuda)"] = time.perf_counter() - t0
    elif est == "exact":
        x = np.ascontiguousarray(features_t(graph.features, c0, c1, mean, std).T)
        timings["prepare"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        rows = gp.propagate_numba(indptr, np.asarray(indices), x, w, float(prop["r"]))
        timings["spmm"] = time.perf_counter() - t1
    else:
        # push: the whole column groups the shard overlaps (global groups of PUSH_GROUP), so any shard's
        # columns carry the unsharded bits; the extra columns of a straddled group are dropped below
        g = gp.PUSH_GROUP if est == "push" else 1
        e0, e1 = c0 // g * g, min(-(-c1 // g) * g, f)
        step = (e1 - e0) if est == "push" else xt_chunk(n, c1 - c0)
        xt = features_t(graph.features, e0, e0 + step, mean, std)
        deg = gp.degrees(indptr)
        push_ptr, push_idx = indptr, np.asarray(indices)
        if not gp.is_symmetric(indptr, push_idx):
            import scipy.sparse as sp

            at = sp.csr_matrix(
                (np.ones(push_idx.shape[0], np.float32), push_idx, indptr), shape=(n, n)
            ).T.tocsr()
            push_ptr, push_idx = at.indptr, at.indices
        timings["prepare"] = time.perf_counter() - t0
        if est == "push":
            t1 = time.perf_counter()
            out_t = gp.ppr_push_numba(
                push_ptr,
                push_idx,
                xt,
                float(prop["alpha"]),
                float(prop["rmax"]),
                float(prop["r"]),
                deg=deg,
                transposed=True,
                offset=e0,
            )[c0 - e0 : c1 - e0]
            timings["push"] = time.perf_counter() - t1
        else:
            from mlkit.kernels import gbp_combine as gc
            from mlkit.kernels import gbp_walks as gw
            from mlkit.tasks.gbp.memory import projection

            say(
                f"memory model: projected peak {projection(graph, prop, tgt, seed)['projected_gib']['peak']} GiB"
            )

            t1 = time.perf_counter()
            levels = gw.walks_numba(
                indptr, np.asarray(indices), tgt, int(prop["walks"]), len(w) - 1, int(seed)
            )
            timings["walks"] = time.perf_counter() - t1
            if report is not None:
                report["walk_entries"] = int(sum(lv[1].shape[0] for lv in levels))
            t1 = time.perf_counter()
            coef = gc.coefficients(levels, w, tgt)
            del levels
            timings["pack walks"] = time.perf_counter() - t1
            t1 = time.perf_counter()
            out_t = np.empty((c1 - c0, tgt.shape[0]), dtype=np.float32)
            for k0 in range(c0, c1, step):  # features reach the kernel in column chunks of <= XT_BUDGET bytes
                if k0 > c0:
                    xt = None
                    xt = features_t(graph.features, k0, min(c1, k0 + step), mean, std)
                out_t[k0 - c0 : k0 - c0 + xt.shape[0]] = gc.bidirectional_numba(
                    push_ptr, push_idx, xt, w, float(prop["r"]), float(prop["rmax"]), tgt, coef, deg=deg,
                    transposed=True, rows=(indptr, np.asarray(indices)), thresholds=params["thresholds"],
                    report=report, pull_budget=int(float(prop.get("pull_memory", 1.0)) * 2**30),
                )  # fmt: skip
            timings["push+combine"] = time.perf_counter() - t1
        rows = out_t.T
    res = Propagated(np.ascontiguousarray(rows, dtype=np.float32), tgt, n, est, timings)
    if cache_dir is not None:
        t1 = time.perf_counter()
        res = save(Path(cache_dir), key + suffix, res, params)
        res.timings["write"] = time.perf_counter() - t1
    say(f"propagated {res.rows.shape[0]:,} rows x {res.rows.shape[1]} features with {est}")
    return res


def _exact_torch(indptr, indices, features, c0, c1, w, r, mean, std, device):  # noqa: ANN001, ANN202
    import torch

    x = torch.from_numpy(np.ascontiguousarray(features_t(features, c0, c1, mean, std).T)).to(device)
    out = gp.propagate_torch(indptr, indices, x, w, r)
    return out.cpu().numpy()
