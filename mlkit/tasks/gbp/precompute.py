"""The GBP precompute engine: choose an estimator, propagate feature columns, cache float32 rows on disk.

    result = propagate_rows(graph, prop_cfg, targets=..., seed=..., cache_dir=...)
    result.rows       # np.memmap [k, F] float32 (k = all nodes for push/exact, |targets| for bidirectional)
    result.take(ids)  # rows of the given node ids

Cache files live in `cache_dir`: `<key>.npy` (rows), `<key>.nodes.npy` (node id of each row, when not all
nodes) and `<key>.json` (parameters, shape, timings). The key hashes the graph arrays, the features, the
standardisation, the resolved parameters and the target set. `shard=(i, N)` computes the contiguous feature
column block i of N into `<key>.s<i>of<N>.npy`; `merge_shards` concatenates them, bit for bit equal to an
unsharded run (every column is computed independently, and the walks depend only on the seed and targets).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlkit.core.errors import UsageError
from mlkit.graph.graph import Graph
from mlkit.kernels import gbp_push as gp

ESTIMATORS = ("auto", "push", "bidirectional", "exact")
WEIGHTS = ("ppr", "heat", "sgc", "list")
_ROWS = 1 << 18


@dataclass
class Propagated:
    """Precomputed rows and which node each row belongs to (nodes None = row i is node i)."""

    rows: np.ndarray
    nodes: np.ndarray | None
    num_nodes: int
    estimator: str
    timings: dict[str, float] = field(default_factory=dict)
    path: Path | None = None
    _pos: np.ndarray | None = None

    def position(self, ids: np.ndarray) -> np.ndarray:
        """Row index of each node id (-1 where the node was not a target)."""
        ids = np.asarray(ids, dtype=np.int64)
        if self.nodes is None:
            return np.where((ids >= 0) & (ids < self.num_nodes), ids, -1)
        if self._pos is None:
            self._pos = np.full(self.num_nodes, -1, dtype=np.int64)
            self._pos[self.nodes] = np.arange(self.nodes.shape[0])
        return self._pos[ids]

    def take(self, ids: np.ndarray) -> np.ndarray:
        """Rows of `ids` as a float32 array (sorted reads from the memory map, returned in the given order)."""
        pos = self.position(ids)
        if np.any(pos < 0):
            raise KeyError("some nodes have no precomputed row")
        order = np.argsort(pos, kind="stable")
        out = np.empty((pos.shape[0], self.rows.shape[1]), dtype=np.float32)
        out[order] = self.rows[pos[order]]
        return out


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
    """auto -> exact unless targets are few (|S| < n / 20) AND the bidirectional work model beats L SpMMs.

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
    walk_steps = float(num_targets) * float(prop.get("walks", 1000)) * levels
    if 16.0 * walk_steps > 0.25 * _ram_bytes():
        return "exact"
    nnz = max(float(num_entries), 1.0)
    d = nnz / max(num_nodes, 1)
    ball = sum(min(nnz, num_targets * d ** (k + 1)) for k in range(levels))
    pushes = levels * d / max(float(prop.get("rmax", 1e-7)), 1e-300)
    feats = max(int(prop.get("_features", 64)), 1)
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


def column_block(num_features: int, shard: tuple[int, int]) -> tuple[int, int]:
    """The contiguous columns [c0, c1) of shard i of N."""
    i, n = shard
    return i * num_features // n, (i + 1) * num_features // n


def _digest_array(h: Any, a: np.ndarray) -> None:
    h.update(f"{a.dtype}{a.shape}".encode())
    flat = a.reshape(-1) if a.flags.c_contiguous else np.ascontiguousarray(a).reshape(-1)
    step = max(1, (64 << 20) // max(a.itemsize, 1))
    for s in range(0, flat.shape[0], step):
        h.update(np.ascontiguousarray(flat[s : s + step]).view(np.uint8))


def cache_key(graph: Graph, params: dict[str, Any], targets: np.ndarray | None, mean: Any, std: Any) -> str:
    """A hash of (graph, features, standardisation, parameters, targets)."""
    h = hashlib.blake2b(digest_size=16)
    for a in (graph.indptr, graph.indices, graph.features):
        _digest_array(h, np.asarray(a))
    for a in (targets, mean, std):
        if a is not None:
            _digest_array(h, np.asarray(a))
    h.update(json.dumps(params, sort_keys=True).encode())
    return h.hexdigest()


# ------------------------------------------------------------------------------------ graph helpers
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


def features_t(features: np.ndarray, c0: int, c1: int, mean: Any = None, std: Any = None) -> np.ndarray:
    """Columns [c0, c1) as a contiguous float32 [F, n] block (standardised if mean/std are given)."""
    n = features.shape[0]
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
    nnz = int(np.asarray(graph.indptr)[-1]) + (n if prop["self_loops"] else 0)
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
    if prop["self_loops"]:
        indptr, indices = add_self_loops(indptr, indices)
    c0, c1 = column_block(f, shard)
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
        xt = features_t(graph.features, c0, c1, mean, std)
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
            )
            timings["push"] = time.perf_counter() - t1
        else:
            from mlkit.kernels import gbp_combine as gc
            from mlkit.kernels import gbp_walks as gw

            t1 = time.perf_counter()
            levels = gw.walks_numba(
                indptr, np.asarray(indices), tgt, int(prop["walks"]), len(w) - 1, int(seed)
            )
            timings["walks"] = time.perf_counter() - t1
            t1 = time.perf_counter()
            coef = gc.coefficients(levels, w, tgt)
            del levels
            timings["pack walks"] = time.perf_counter() - t1
            t1 = time.perf_counter()
            out_t = gc.bidirectional_numba(
                push_ptr,
                push_idx,
                xt,
                w,
                float(prop["r"]),
                float(prop["rmax"]),
                tgt,
                coef,
                deg=deg,
                transposed=True,
                rows=(indptr, np.asarray(indices)),
            )
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


# ------------------------------------------------------------------------------------ cache files
def save(cache_dir: Path, name: str, res: Propagated, params: dict[str, Any]) -> Propagated:
    """Write rows (+ node ids) aside and rename them into place, then the meta last; return the memory map.

    The meta file marks a complete entry: a killed write leaves no meta (or a meta whose shapes the files do
    not match), and `load_cached` treats that as a miss, so the rows are computed again.
    """
    import os

    cache_dir.mkdir(parents=True, exist_ok=True)
    tag = f"tmp{os.getpid()}"
    if res.nodes is not None:
        np.save(cache_dir / f".{name}.nodes.{tag}.npy", res.nodes)
        os.replace(cache_dir / f".{name}.nodes.{tag}.npy", cache_dir / f"{name}.nodes.npy")
    np.save(cache_dir / f".{name}.{tag}.npy", res.rows)
    os.replace(cache_dir / f".{name}.{tag}.npy", cache_dir / f"{name}.npy")
    meta = {
        "estimator": res.estimator,
        "shape": list(res.rows.shape),
        "num_nodes": res.num_nodes,
        "has_nodes": res.nodes is not None,
        "params": params,
        "timings": res.timings,
    }
    (cache_dir / f".{name}.{tag}.json").write_text(json.dumps(meta, indent=1))
    os.replace(cache_dir / f".{name}.{tag}.json", cache_dir / f"{name}.json")
    found = load_cached(cache_dir, name, res.num_nodes, res.timings)
    if found is None:
        raise OSError(f"precompute cache entry {cache_dir / name}.npy did not verify after writing it")
    return found


def load_cached(
    cache_dir: Path, name: str, num_nodes: int, timings: dict[str, float] | None = None
) -> Propagated | None:
    """The cached result `name`, memory-mapped, or None (missing, or incomplete: shapes unlike its meta)."""
    rows_p, meta_p = cache_dir / f"{name}.npy", cache_dir / f"{name}.json"
    if not (rows_p.exists() and meta_p.exists()):
        return None
    try:
        meta = json.loads(meta_p.read_text())
        rows = np.load(rows_p, mmap_mode="r")
        nodes = np.load(cache_dir / f"{name}.nodes.npy") if meta.get("has_nodes") else None
        if list(rows.shape) != list(meta["shape"]) or (nodes is not None and nodes.shape[0] != rows.shape[0]):
            return None
    except (OSError, ValueError, KeyError):
        return None
    kept = dict(timings if timings is not None else meta.get("timings", {}))
    return Propagated(rows, nodes, num_nodes, meta["estimator"], kept, rows_p)


def merge_shards(cache_dir: Path, key: str, count: int, num_nodes: int) -> Propagated:
    """Concatenate the column shards `<key>.s<i>of<N>` into `<key>` (rank 0 after a torchrun precompute)."""
    parts = [load_cached(cache_dir, f"{key}.s{i}of{count}", num_nodes) for i in range(count)]
    missing = [i for i, p in enumerate(parts) if p is None]
    if missing:
        from mlkit.core.errors import DataError

        raise DataError(f"shards {missing} of {count} are missing", str(cache_dir), "Run those shards first.")
    rows = np.concatenate([np.asarray(p.rows) for p in parts], axis=1)  # type: ignore[union-attr]
    first = parts[0]
    assert first is not None
    meta = json.loads((cache_dir / f"{key}.s0of{count}.json").read_text())
    params = dict(meta["params"])
    timings: dict[str, float] = {}
    for p in parts:
        for k, v in p.timings.items():  # type: ignore[union-attr]
            timings[k] = timings.get(k, 0.0) + v
    return save(cache_dir, key, Propagated(rows, first.nodes, num_nodes, first.estimator, timings), params)
