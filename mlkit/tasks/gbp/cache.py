"""GBP precompute results and their cache files: `Propagated` rows, the cache key, atomic save, verified load.

Cache files live in `cache_dir`: `<key>.npy` (float32 rows), `<key>.nodes.npy` (node id of each row, when not all
nodes) and `<key>.json` (parameters, shape, timings; written last, so it marks a complete entry). A reader that
finds an entry it cannot trust (a killed write, a disk that filled up, a hand edit) treats it as a miss, and the
rows are computed again and the entry rewritten.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlkit.graph.graph import Graph


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


def _digest_array(h: Any, a: np.ndarray) -> None:
    if hasattr(a, "columns"):  # on-disk features (graph.colfile): hashed column by column, never all in memory
        h.update(f"{a.dtype}{a.shape}".encode())
        for c in range(a.shape[1]):
            h.update(a.columns(c, c + 1).view(np.uint8))
        return
    h.update(f"{a.dtype}{a.shape}".encode())
    flat = a.reshape(-1) if a.flags.c_contiguous else np.ascontiguousarray(a).reshape(-1)
    step = max(1, (64 << 20) // max(a.itemsize, 1))
    for s in range(0, flat.shape[0], step):
        h.update(np.ascontiguousarray(flat[s : s + step]).view(np.uint8))


def cache_key(graph: Graph, params: dict[str, Any], targets: np.ndarray | None, mean: Any, std: Any) -> str:
    """A hash of (graph, features, standardisation, parameters, targets)."""
    h = hashlib.blake2b(digest_size=16)
    for a in (graph.indptr, graph.indices, graph.features):
        _digest_array(h, a if hasattr(a, "columns") else np.asarray(a))
    for a in (targets, mean, std):
        if a is not None:
            _digest_array(h, np.asarray(a))
    h.update(json.dumps(params, sort_keys=True).encode())
    return h.hexdigest()


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
    """The cached result `name`, memory-mapped, or None: missing, or corrupt (a killed write, a full disk, a hand
    edit: unreadable meta or arrays, shapes or dtypes unlike the meta's, node ids outside the graph)."""
    rows_p, meta_p = cache_dir / f"{name}.npy", cache_dir / f"{name}.json"
    if not (rows_p.exists() and meta_p.exists()):
        return None
    try:
        meta = json.loads(meta_p.read_text(encoding="utf-8"))
        rows = np.load(rows_p, mmap_mode="r", allow_pickle=False)
        nodes = np.load(cache_dir / f"{name}.nodes.npy", allow_pickle=False) if meta.get("has_nodes") else None
        if rows.dtype != np.float32 or rows.ndim != 2 or list(rows.shape) != list(meta["shape"]):
            return None
        if nodes is not None and (nodes.shape != (rows.shape[0],) or nodes.dtype.kind not in "iu"
                                  or (nodes.size and (nodes.min() < 0 or nodes.max() >= num_nodes))):  # fmt: skip
            return None
        if nodes is None and rows.shape[0] != num_nodes:
            return None
        kept = dict(timings if timings is not None else meta.get("timings", {}))
        return Propagated(rows, nodes, num_nodes, str(meta["estimator"]), kept, rows_p)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        return None


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
