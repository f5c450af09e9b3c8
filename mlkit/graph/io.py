"""Graph loaders: one `load_graph(path)` that detects the on-disk layout and returns a `Graph`.

Layouts (a folder):
- generic: CSR `indptr.npy` + `indices.npy` (memory-mapped), or `adj.npz` (scipy sparse), or `edges.npy`
  (int [m, 2]) / `edges.txt` ("u v" per line; "#" comments); `feats.npy` [n, F] (or `feats.npz` sparse);
  `labels.npy` ([n] int, or [n, C] 0/1 multilabel); `split.npz` with `train`/`val`/`test` (index arrays or
  boolean masks; `train_idx`/`idx_train` spellings accepted); optional `meta.json` {"num_nodes": n,
  "symmetric": true} (symmetric: each undirected edge is listed once and both directions are added).
- gbp (the original GBP repo): `<name>.txt` (line 1 = n, then one "u v" directed adjacency entry per line),
  `<name>_feat.npy`, `<name>_labels.npz` (`labels`, `idx_train`, `idx_val`, `idx_test`); inductive extras
  `<name>_train.txt` / `<name>_train_feat.npy` are read by `load_gbp_train`.
- saint (GraphSAINT): `adj_full.npz`, `feats.npy`, `class_map.json`, `role.json` {tr, va, te}.
- friendster (GBP's converter): `friendster1..K.npy` int64 [k, 2] edge chunks (row 0 of chunk 1 = [n, m]),
  `friendster_feat1..K.npy`, `friendster_labels.npz`, optional `friendster_rw_index.npy`.
- planetoid raw (`ind.<name>.*`): delegated to `mlkit.graph.planetoid.load_planetoid`.

CSR: indices int32 while n < 2**31, indptr int32 while nnz < 2**31 (int64 beyond). Edge entries are
unweighted; duplicate entries are kept (they count twice in degrees and sums, as in the original).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from mlkit.core.errors import DataError
from mlkit.graph.checks import check_graph, load_npy, load_npz, numeric, read_json, reading
from mlkit.graph.csr import (  # noqa: F401 - CSR helpers used to live here; kept importable from io
    INT32_MAX,
    _array_chunks,
    _check_ids,
    csr_from_edge_chunks,
    index_dtypes,
    induced_subgraph,  # noqa: F401 - importable from io, as before
)
from mlkit.graph.graph import Graph
from mlkit.graph.names import dataset_names, pick_name  # noqa: F401 - part of io's interface

LAYOUTS = ("generic", "gbp", "saint", "friendster", "planetoid")
FEATURES_IN_RAM = 1 << 30  # Friendster features larger than this (as float32) stay on disk (graph.colfile)


def _read_edge_text(path: Path, header_count: bool) -> tuple[int | None, np.ndarray]:
    """Read 'u v' lines (optionally line 1 = node count) into an int64 [m, 2] array."""
    with reading(path, "Write one 'u v' pair of integers per line (UTF-8 text)."), open(path, encoding="utf-8") as f:
        n = None
        if header_count:
            first = f.readline().split()
            if len(first) != 1 or not first[0].isdigit():
                raise DataError("first line must hold the node count", f"{path} line 1", "Write n alone on line 1.")
            n = int(first[0])
        try:
            arr = np.loadtxt(f, dtype=np.int64, comments="#", ndmin=2)
        except ValueError as exc:
            m = re.search(r"at row (\d+)", str(exc))
            line = f" line {int(m.group(1)) + 1 + (1 if header_count else 0)}" if m else ""
            raise DataError(
                "bad edge line: " + str(exc).split(" at row")[0], f"{path}{line}",
                "Write one 'u v' pair of integers per line ('#' starts a comment).",
            ) from None
    if arr.size == 0:
        arr = np.zeros((0, 2), dtype=np.int64)
    if arr.shape[1] < 2:
        raise DataError("edge lines need two columns", str(path), "Write one 'u v' pair per line.")
    return n, arr[:, :2]


# ----------------------------------------------------------------------------------------- features
def _load_features(path: Path) -> np.ndarray:
    """Memory-map a .npy feature matrix (any float dtype, C or F order); densify a scipy .npz."""
    if path.suffix == ".npz":
        import scipy.sparse as sp

        with reading(path, "Write it with scipy.sparse.save_npz."):
            return np.asarray(sp.load_npz(path).todense(), dtype=np.float32)
    arr = numeric(load_npy(path), "features", str(path))
    if arr.ndim != 2:
        raise DataError(f"features must be 2-D [n, F], got shape {arr.shape}", str(path))
    if arr.dtype == np.float32:
        return arr
    if arr.nbytes // max(arr.dtype.itemsize, 1) * 4 < (1 << 30):
        return np.ascontiguousarray(arr, dtype=np.float32)
    return arr  # large non-float32: keep the memory map, consumers cast per block


def _split_array(store, keys: tuple[str, ...], n: int) -> np.ndarray | None:  # noqa: ANN001
    """Node ids of one split from an index array, or from a boolean/uint8 mask of length n."""
    for k in keys:
        if k in store:
            a = np.asarray(store[k]).reshape(-1)
            numeric(a, f"split '{k}'", "split file")
            if a.dtype in (np.bool_, np.uint8) or k.endswith("mask"):
                if a.shape[0] != n:
                    raise DataError(f"split mask '{k}' has length {a.shape[0]}, expected {n}")
                return np.flatnonzero(a).astype(np.int64)
            return a.astype(np.int64)
    return None


# ----------------------------------------------------------------------------------------- layouts
def detect_layout(path: str | Path) -> tuple[str, str | None]:
    """Guess (layout, dataset name) from the files in a folder; raise DataError listing the layouts.

    The name is None where the layout has none, or where the folder holds several datasets (pick_name chooses).
    """
    p = Path(path)
    if p.is_file():
        p = p.parent
    if not p.is_dir():
        raise DataError("dataset folder not found", str(p), "Pass a folder to --data.")
    names = {f.name for f in p.iterdir()}
    if "adj_full.npz" in names and "role.json" in names:
        return "saint", None
    if "friendster1.npy" in names:
        return "friendster", "friendster"
    if ("indptr.npy" in names and "indices.npy" in names) or names & {"edges.npy", "edges.txt", "adj.npz"}:
        return "generic", None
    for layout in ("gbp", "planetoid"):
        held = dataset_names(p, layout)
        if held:
            return layout, held[0] if len(held) == 1 else None
    raise DataError(
        "no known graph layout",
        str(p),
        "Expected generic (indptr.npy+indices.npy | edges.npy | edges.txt | adj.npz, feats.npy, labels.npy, "
        "split.npz), gbp (<name>.txt, <name>_feat.npy, <name>_labels.npz), saint (adj_full.npz, feats.npy, "
        "class_map.json, role.json), friendster (friendster1.npy.., friendster_feat1.npy..) or planetoid "
        "(ind.<name>.*).",
    )


def load_graph(path: str | Path, fmt: str = "auto", name: str | None = None) -> Graph:
    """Load a graph folder in any supported layout (fmt "auto" detects it) as a Graph.

    `name` picks one dataset of a gbp/planetoid folder (case-insensitive; required when it holds several).
    """
    p = Path(path)
    if p.is_file():
        p = p.parent
    if fmt == "auto":
        fmt, _ = detect_layout(p)
    if fmt not in LAYOUTS:
        raise DataError(f"unknown graph format '{fmt}'", None, f"Use one of: auto, {', '.join(LAYOUTS)}.")
    if fmt in ("gbp", "planetoid"):
        name = pick_name(p, fmt, name)
    with reading(p):
        g = check_graph(_load(p, fmt, name), str(p))
    from mlkit.graph.names import files_read

    g.source = f"{fmt} layout: {', '.join(files_read(p, fmt, name))} in {p}"
    return g


def _load(p: Path, fmt: str, name: str | None) -> Graph:
    if fmt == "generic":
        return load_generic(p)
    if fmt == "gbp":
        return load_gbp(p, name)
    if fmt == "saint":
        return load_saint(p)
    if fmt == "friendster":
        return load_friendster(p)
    try:
        from mlkit.graph.planetoid import load_planetoid
    except ImportError:
        raise DataError(
            "Planetoid reader is not available", str(p), "Convert the data to the generic layout."
        ) from None
    assert name is not None
    return load_planetoid(p, name)


def load_generic(path: str | Path) -> Graph:
    """Load the generic layout (see module doc)."""
    p = Path(path)
    meta = read_json(p / "meta.json") if (p / "meta.json").exists() else {}
    if not isinstance(meta, dict):
        raise DataError("meta.json must hold an object", str(p / "meta.json"), 'Write {"num_nodes": n}.')
    symmetric = bool(meta.get("symmetric", False))
    feats = None
    for fname in ("feats.npy", "feats.npz", "features.npy"):
        if (p / fname).exists():
            feats = _load_features(p / fname)
            break
    labels = None
    if (p / "labels.npy").exists():
        labels = numeric(load_npy(p / "labels.npy"), "labels", str(p / "labels.npy"))
        labels = np.asarray(labels, dtype=np.int64 if labels.ndim == 1 else np.float32)
    n = meta.get("num_nodes")
    if n is None and feats is not None:
        n = feats.shape[0]
    if n is None and labels is not None:
        n = labels.shape[0]
    if (p / "indptr.npy").exists() and (p / "indices.npy").exists():
        indptr = load_npy(p / "indptr.npy")
        indices = load_npy(p / "indices.npy")
        n = indptr.shape[0] - 1 if n is None else int(n)
        if indptr.shape[0] != n + 1 or int(indptr[-1]) != indices.shape[0]:
            raise DataError("indptr.npy / indices.npy do not form a CSR of the node count", str(p))
        indptr = np.asarray(indptr)  # small: n + 1 entries
    elif (p / "adj.npz").exists():
        indptr, indices, n = _scipy_csr(p / "adj.npz", n)
    else:
        if (p / "edges.npy").exists():
            edges = numeric(load_npy(p / "edges.npy"), "edges", str(p / "edges.npy"))
        elif (p / "edges.txt").exists():
            _, edges = _read_edge_text(p / "edges.txt", header_count=False)
        else:
            raise DataError(
                "no adjacency found", str(p), "Add indptr.npy+indices.npy, adj.npz, edges.npy or edges.txt."
            )
        if edges.ndim != 2 or edges.shape[1] != 2:
            raise DataError(f"edges must be [m, 2], got {edges.shape}", str(p))
        if n is None:
            n = int(np.asarray(edges).max()) + 1 if edges.shape[0] else 0
        if edges.shape[0] and (int(np.min(edges)) < 0 or int(np.max(edges)) >= int(n)):
            raise DataError(f"edge endpoint outside 0..{int(n) - 1}", str(p / "edges"), "Number nodes 0..n-1.")
        indptr, indices = csr_from_edge_chunks(_array_chunks(edges), int(n), symmetric=symmetric)
    n = int(n)
    _check_rows(p, n, feats, labels)
    split = {}
    if (p / "split.npz").exists():
        z = load_npz(p / "split.npz")
        with reading(p / "split.npz"):
            split = {
                "train": _split_array(z, ("train", "train_idx", "idx_train", "train_mask"), n),
                "val": _split_array(z, ("val", "val_idx", "idx_val", "val_mask"), n),
                "test": _split_array(z, ("test", "test_idx", "idx_test", "test_mask"), n),
            }
    return Graph(
        indptr=indptr,
        indices=indices,
        num_nodes=n,
        features=feats,
        labels=labels,
        train_idx=split.get("train"),
        val_idx=split.get("val"),
        test_idx=split.get("test"),
        name=str(meta.get("name", p.name)),
    )


def _check_rows(p: Path, n: int, feats: np.ndarray | None, labels: np.ndarray | None) -> None:
    if feats is not None and feats.shape[0] != n:
        raise DataError(
            f"features have {feats.shape[0]} rows for {n} nodes", str(p), "One feature row per node."
        )
    if labels is not None and labels.shape[0] != n:
        raise DataError(f"labels have {labels.shape[0]} rows for {n} nodes", str(p), "One label per node.")


def _scipy_csr(path: Path, n: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    import scipy.sparse as sp

    with reading(path, "Write it with scipy.sparse.save_npz."):
        m = sp.load_npz(path).tocsr()
    if m.shape[0] != m.shape[1]:
        raise DataError(f"adjacency must be square, got {m.shape}", str(path))
    if n is not None and m.shape[0] != n:
        raise DataError(f"adjacency is {m.shape[0]} nodes, features say {n}", str(path))
    # weighted entries: an entry of weight w>0 is one adjacency entry (GraphSAINT stores 1s)
    ptr_t, idx_t = index_dtypes(m.shape[0], m.nnz)
    return m.indptr.astype(ptr_t), m.indices.astype(idx_t), int(m.shape[0])


def load_gbp(path: str | Path, name: str | None = None) -> Graph:
    """Load the original GBP layout `<name>.txt`, `<name>_feat.npy`, `<name>_labels.npz`."""
    p = Path(path)
    if name is None:
        name = pick_name(p, "gbp", None)
    txt = p / f"{name}.txt"
    if not txt.exists():
        raise DataError(f"{txt.name} not found", str(p), "The gbp layout needs <name>.txt with n on line 1.")
    n, edges = _read_edge_text(txt, header_count=True)
    assert n is not None
    indptr, indices = csr_from_edge_chunks(_array_chunks(edges), n)
    feats = _load_features(p / f"{name}_feat.npy") if (p / f"{name}_feat.npy").exists() else None
    labels = train = val = test = None
    if (p / f"{name}_labels.npz").exists():
        z = load_npz(p / f"{name}_labels.npz")
        with reading(p / f"{name}_labels.npz", "It needs labels, idx_train, idx_val and idx_test arrays."):
            lab = numeric(np.asarray(z["labels"]), "labels", f"{name}_labels.npz")
            labels = lab.astype(np.int64) if lab.ndim == 1 else lab.astype(np.float32)
            train = _split_array(z, ("idx_train", "train_idx"), n)
            val = _split_array(z, ("idx_val", "val_idx"), n)
            test = _split_array(z, ("idx_test", "test_idx"), n)
    _check_rows(p, n, feats, labels)
    return Graph(indptr, indices, n, feats, labels, train, val, test, name=name)


def load_gbp_train(path: str | Path, name: str) -> Graph | None:
    """The inductive training subgraph `<name>_train.txt` / `<name>_train_feat.npy`, if the folder has it."""
    p = Path(path)
    txt = p / f"{name}_train.txt"
    if not txt.exists():
        return None
    n, edges = _read_edge_text(txt, header_count=True)
    assert n is not None
    indptr, indices = csr_from_edge_chunks(_array_chunks(edges), n)
    f = p / f"{name}_train_feat.npy"
    feats = _load_features(f) if f.exists() else None
    return Graph(indptr, indices, n, feats, name=f"{name}_train")


def load_saint(path: str | Path) -> Graph:
    """Load GraphSAINT's adj_full.npz / feats.npy / class_map.json / role.json."""
    p = Path(path)
    indptr, indices, n = _scipy_csr(p / "adj_full.npz", None)
    feats = _load_features(p / "feats.npy")
    cmap = read_json(p / "class_map.json")
    first = next(iter(cmap.values()))
    if isinstance(first, list):
        labels = np.zeros((n, len(first)), dtype=np.float32)
        for k, v in cmap.items():
            labels[int(k)] = v
    else:
        labels = np.full(n, -1, dtype=np.int64)
        for k, v in cmap.items():
            labels[int(k)] = int(v)
    role = read_json(p / "role.json")
    _check_rows(p, n, feats, labels)
    return Graph(
        indptr,
        indices,
        n,
        feats,
        labels,
        np.asarray(role["tr"], dtype=np.int64),
        np.asarray(role["va"], dtype=np.int64),
        np.asarray(role["te"], dtype=np.int64),
        name=p.name,
    )


def load_friendster(path: str | Path) -> Graph:
    """Load GBP's Friendster chunks: both directions of every edge and ONE self-loop per node, as the original's
    loader (LoadSplitAdjs). The graph records it (`self_loops=True`), so a propagation asked for self-loops
    (the friendster preset) adds none: every node weighs itself 1/(d+1), never 2/(d+2)."""
    p = Path(path)
    k = 1
    files = []
    while (p / f"friendster{k}.npy").exists():
        files.append(p / f"friendster{k}.npy")
        k += 1
    head = np.load(files[0], mmap_mode="r")
    n = int(head[0, 0])

    def chunks():  # noqa: ANN202
        for i, f in enumerate(files):
            arr = np.load(f, mmap_mode="r")
            arr = arr[1:] if i == 0 else arr
            yield from _array_chunks(arr)()

    indptr, indices = csr_from_edge_chunks(chunks, n, symmetric=True, self_loops=True)
    ffiles = sorted(p.glob("friendster_feat*.npy"), key=lambda f: int(re.sub(r"\D", "", f.stem) or 0))
    feats = None
    if ffiles:
        rows, cols = 0, 0
        for f in ffiles:
            with reading(f):
                shape = np.load(f, mmap_mode="r").shape
            rows, cols = rows + shape[0], shape[-1]
        if rows * cols * 4 > FEATURES_IN_RAM:  # e.g. 65.6M x 100: kept on disk, read by column chunks
            from mlkit.core.artifact import cache_root
            from mlkit.graph.colfile import ColumnFile

            feats = ColumnFile.from_npy_chunks(ffiles, cache_root() / "graph-features")
        else:
            feats = _stack_rows(ffiles)
    labels = train = val = test = None
    if (p / "friendster_labels.npz").exists():
        with np.load(p / "friendster_labels.npz") as z:
            train, val, test = (np.asarray(z[f"{s}_idx"], dtype=np.int64) for s in ("train", "val", "test"))
            labels = np.full(n, -1, dtype=np.int64)
            for s, idx in (("train", train), ("val", val), ("test", test)):
                labels[idx] = np.asarray(z[f"{s}_labels"]).astype(np.int64).reshape(-1)
    return Graph(indptr, indices, n, feats, labels, train, val, test, name="friendster", self_loops=True)


def _stack_rows(files: list[Path]) -> np.ndarray:
    """The feature chunks as one float32 [n, F] array, filled slice by slice (no float64 copy of the whole)."""
    maps = [load_npy(f) for f in files]
    for f, m in zip(files, maps):
        if m.ndim != 2 or m.shape[1] != maps[0].shape[1]:
            raise DataError(f"feature chunk of shape {m.shape}, expected [k, {maps[0].shape[1]}]", str(f))
        numeric(m, "features", str(f))
    out = np.empty((sum(m.shape[0] for m in maps), maps[0].shape[1]), dtype=np.float32)
    row = 0
    for i in range(len(maps)):
        m, maps[i] = maps[i], None  # unmap each chunk once copied: its pages leave the resident set
        for s in range(0, m.shape[0], 1 << 16):
            blk = np.asarray(m[s : s + (1 << 16)])
            out[row + s : row + s + blk.shape[0]] = blk
        row += m.shape[0]
        del m
    return out


def friendster_targets(path: str | Path) -> np.ndarray | None:
    """The Friendster target node ids (`friendster_rw_index.npy`), if present."""
    f = Path(path) / "friendster_rw_index.npy"
    return np.load(f).astype(np.int64) if f.exists() else None


# ----------------------------------------------------------------------------------------- writers
def save_generic(
    path: str | Path,
    edges: np.ndarray,
    num_nodes: int,
    features: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    split: dict[str, np.ndarray] | None = None,
    symmetric: bool = True,
    name: str = "graph",
) -> Path:
    """Write a graph in the generic layout (edges.npy + CSR indptr/indices, feats, labels, split, meta)."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    edges = np.asarray(edges)
    np.save(p / "edges.npy", edges.astype(np.int32 if num_nodes <= INT32_MAX else np.int64))
    csr_from_edge_chunks(_array_chunks(edges), num_nodes, symmetric=symmetric, out_dir=p)
    if features is not None:
        np.save(p / "feats.npy", np.asarray(features, dtype=np.float32))
    if labels is not None:
        np.save(p / "labels.npy", np.asarray(labels))
    if split is not None:
        np.savez(p / "split.npz", **{k: np.asarray(v, dtype=np.int64) for k, v in split.items()})
    (p / "meta.json").write_text(
        json.dumps({"num_nodes": int(num_nodes), "symmetric": symmetric, "name": name})
    )
    return p
