"""Planetoid raw files (Cora, Citeseer, PubMed as published with the GCN code) -> Graph.

Files per dataset `<name>` in one directory: `ind.<name>.{x,y,allx,ally,tx,ty,graph}` (Python-2 pickles,
latin1) and `ind.<name>.test.index` (text). The pickles are read with a restricted unpickler that only
admits NumPy arrays/dtypes, a stand-in for scipy's CSR matrix, lists and defaultdicts: nothing in the
file can make it import or call anything else.

Assembly (the public split of Yang et al. 2016, as GCN/PyG do it):
  X = vstack(allx, tx), Y = vstack(ally, ty); rows at sorted(test.index) move to the positions listed in
  test.index. When test.index has gaps (Citeseer), tx/ty are first padded with zero rows over
  min..max(test.index); padded nodes get label 0 and are in no split.
  train = the first len(y) nodes, val = the next 500, test = test.index (sorted).
Adjacency: the `graph` dict, symmetrised, self-loops and duplicate edges dropped.
"""

from __future__ import annotations

import collections
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from mlkit.core.errors import DataError
from mlkit.graph.graph import Graph

PARTS = ("x", "y", "allx", "ally", "tx", "ty", "graph")
LAYOUT = "DIR/ind.<name>.{x,y,allx,ally,tx,ty,graph,test.index} (Planetoid raw, e.g. name = cora)"


class _SparseState:
    """Receives the pickled state of a scipy.sparse.csr_matrix without running scipy's code."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.state = state


def _reconstruct(cls: type, shape: Any, dtype: Any) -> np.ndarray:
    """numpy.core.multiarray._reconstruct, restricted to plain ndarrays."""
    if cls is not np.ndarray:
        raise pickle.UnpicklingError(f"refusing to rebuild an array of class {cls!r}")
    return np.ndarray.__new__(cls, shape, dtype)


def _encode(text: str, encoding: str = "latin1") -> bytes:
    """_codecs.encode as Python-3 pickles of byte strings use it; only text -> bytes, nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refusing _codecs.encode with unexpected arguments")
    return text.encode("latin1")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("scipy.sparse.csr", "csr_matrix"): _SparseState,
    ("scipy.sparse._csr", "csr_matrix"): _SparseState,
    ("collections", "defaultdict"): collections.defaultdict,
    ("_codecs", "encode"): _encode,
    ("__builtin__", "list"): list,
    ("builtins", "list"): list,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a Planetoid file") from None


def safe_load(path: Path) -> Any:
    """Unpickle one Planetoid file with the restricted unpickler (latin1 for the Python-2 strings)."""
    data = path.read_bytes()
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"cannot read Planetoid file: {exc}", str(path), "Use the original ind.* files.") from None
    if isinstance(obj, _SparseState):
        return _to_csr(obj.state, path)
    return obj


def _to_csr(state: dict[str, Any], path: Path) -> Any:
    import scipy.sparse as sp

    try:
        shape = tuple(int(v) for v in state.get("_shape", state.get("shape")))
        return sp.csr_matrix((state["data"], state["indices"], state["indptr"]), shape=shape)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"malformed sparse matrix in Planetoid file: {exc}", str(path)) from None


def find_names(root: str | Path) -> list[str]:
    """Dataset names with a complete set of Planetoid files under `root`."""
    root = Path(root)
    names = sorted({p.name.split(".")[1] for p in root.glob("ind.*.x")})
    return [n for n in names if all((root / f"ind.{n}.{p}").exists() for p in (*PARTS, "test.index"))]


def _dense(m: Any) -> np.ndarray:
    return np.asarray(m.todense() if hasattr(m, "todense") else m)


def _load_planetoid(root: str | Path, name: str) -> Graph:
    """Read `root/ind.<name>.*` and assemble the Graph with the public split."""
    import scipy.sparse as sp

    root = Path(root)
    missing = [p for p in (*PARTS, "test.index") if not (root / f"ind.{name}.{p}").is_file()]
    if missing:
        raise DataError(
            f"Planetoid files missing for '{name}': {', '.join('ind.' + name + '.' + m for m in missing)}",
            str(root),
            f"Expected layout: {LAYOUT}.",
        )
    x, y, allx, ally, tx, ty, graph = (safe_load(root / f"ind.{name}.{p}") for p in PARTS)
    try:
        test_index = np.array(
            [int(line) for line in (root / f"ind.{name}.test.index").read_text().split() if line.strip()],
            dtype=np.int64,
        )
    except ValueError:
        raise DataError("test.index must hold one integer per line", str(root / f"ind.{name}.test.index")) from None
    tx, ty = sp.csr_matrix(tx), _dense(ty)
    order = np.sort(test_index)
    lo, hi = int(order[0]), int(order[-1])
    if hi - lo + 1 != tx.shape[0]:  # Citeseer: isolated test nodes with no features in tx/ty
        tx_full = sp.lil_matrix((hi - lo + 1, tx.shape[1]), dtype=tx.dtype)
        tx_full[order - lo, :] = tx
        tx = tx_full.tocsr()
        ty_full = np.zeros((hi - lo + 1, ty.shape[1]), dtype=ty.dtype)
        ty_full[order - lo, :] = ty
        ty = ty_full
    feats = sp.vstack([sp.csr_matrix(allx), tx]).tolil()
    onehot = np.vstack([_dense(ally), ty])
    feats[test_index, :] = feats[order, :]
    onehot[test_index, :] = onehot[order, :]
    n = feats.shape[0]
    labels = onehot.argmax(1).astype(np.int64)

    rows, cols = [], []
    for node, nbrs in dict(graph).items():
        for v in nbrs:
            rows.append(int(node))
            cols.append(int(v))
    n = max(n, (max(max(rows), max(cols)) + 1) if rows else 0)
    if n > feats.shape[0]:
        raise DataError(f"graph mentions node {n - 1} but only {feats.shape[0]} have features", str(root))
    adj = csr_from_edges(np.asarray(rows, np.int64), np.asarray(cols, np.int64), n)
    n_train = int(_dense(y).shape[0])
    return Graph(
        indptr=adj.indptr,
        indices=adj.indices,
        num_nodes=n,
        features=np.asarray(feats.todense(), dtype=np.float32),
        labels=labels,
        train_idx=np.arange(n_train, dtype=np.int64),
        val_idx=np.arange(n_train, min(n_train + 500, n), dtype=np.int64),  # fewer when the graph is small
        test_idx=np.sort(test_index).astype(np.int64),
        name=name,
    )


def csr_from_edges(u: np.ndarray, v: np.ndarray, n: int) -> Any:
    """Symmetric 0/1 CSR adjacency from an edge list: both directions, no self-loops, no duplicates."""
    import scipy.sparse as sp

    keep = u != v
    u, v = u[keep], v[keep]
    data = np.ones(2 * u.shape[0], dtype=np.float32)
    adj = sp.csr_matrix((data, (np.concatenate([u, v]), np.concatenate([v, u]))), shape=(n, n))
    adj.sum_duplicates()
    adj.data[:] = 1.0
    adj.indices = adj.indices.astype(np.int32)
    adj.indptr = adj.indptr.astype(np.int64) if adj.nnz >= 2**31 else adj.indptr.astype(np.int32)
    adj.sort_indices()
    return adj


def load_planetoid(root: str | Path, name: str) -> Graph:
    """Read `root/ind.<name>.*`; any malformed file is a one-line DataError (exit 3), the graph checked."""
    from mlkit.graph.checks import check_graph, reading

    with reading(root, "Use the original Planetoid ind.* files."):
        return check_graph(_load_planetoid(root, name), str(root))


def write_planetoid(
    root: str | Path,
    name: str,
    features: np.ndarray,
    labels: np.ndarray,
    adjacency: dict[int, list[int]],
    num_train: int,
    test_index: Any,
) -> Path:
    """Write one dataset in the Planetoid raw layout (`ind.<name>.*`, protocol-2 pickles as the GCN code has them).

    x/y = nodes 0..num_train-1, allx/ally = nodes 0..min(test_index)-1, tx/ty = the test_index rows (in the order
    given, which test.index keeps); nodes between min and max of test_index that it does not list are dropped
    (Citeseer's gaps: zero rows on load). `adjacency` maps a node to its neighbour list (the `graph` file).
    """
    import scipy.sparse as sp

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    x = np.asarray(features, dtype=np.float32)
    y = np.asarray(labels, dtype=np.int64)
    onehot = np.eye(int(y.max()) + 1, dtype=np.float64)[y]
    test = np.asarray(test_index, dtype=np.int64)
    first = int(test.min())
    parts = {
        "x": sp.csr_matrix(x[:num_train]), "y": onehot[:num_train],
        "allx": sp.csr_matrix(x[:first]), "ally": onehot[:first],
        "tx": sp.csr_matrix(x[test]), "ty": onehot[test],
        "graph": collections.defaultdict(list, {int(k): [int(v) for v in vs] for k, vs in adjacency.items()}),
    }  # fmt: skip
    for part, obj in parts.items():
        (root / f"ind.{name}.{part}").write_bytes(pickle.dumps(obj, protocol=2))
    (root / f"ind.{name}.test.index").write_text("".join(f"{i}\n" for i in test.tolist()))
    return root
