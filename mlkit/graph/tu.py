"""TU raw format (graph classification / regression datasets of the TU Dortmund collection).

Files in one folder, NAME = the dataset name (case-insensitive; needed only when the folder holds several sets):
  NAME_A.txt                 "i, j" per line: 1-based global node ids, an edge per direction
  NAME_graph_indicator.txt   graph id (1-based) of every node, one per line
  NAME_graph_labels.txt      one integer class per graph          (classification)
  NAME_graph_attributes.txt  one or more floats per graph          (regression, used when there are no labels)
  NAME_node_labels.txt       optional: int per node -> one-hot features (PyG's default x)
  NAME_node_attributes.txt   optional: comma-separated floats per node (appended only when asked)
Graphs without node labels or attributes get the node degree as their single feature: standardised over the
whole set by default (`degree_feature="normalized"`, what PyG's graph-kernel benchmarks do for featureless TU sets
with high degrees), or the raw count (`"raw"`). Raw counts grow with the graph and, summed by a pooling readout,
put hundreds into the first dense layer, where Adam's fixed-size steps kill its ReLUs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlkit.core.errors import DataError
from mlkit.graph.graph import Graph
from mlkit.graph.names import dataset_names, pick_name
from mlkit.graph.planetoid import csr_from_edges

LAYOUT = "DIR/NAME_A.txt, NAME_graph_indicator.txt, NAME_graph_labels.txt (or NAME_graph_attributes.txt)"


@dataclass
class GraphSet:
    """A list of small graphs plus graph-level targets (int classes, or float [G, T] regression targets)."""

    graphs: list[Graph]
    targets: np.ndarray
    name: str = "tu"

    @property
    def regression(self) -> bool:
        return self.targets.dtype.kind == "f"

    @property
    def num_classes(self) -> int:
        return 0 if self.regression else int(self.targets.max()) + 1

    @property
    def num_features(self) -> int:
        return int(self.graphs[0].features.shape[1]) if self.graphs else 0


def find_names(root: str | Path) -> list[str]:
    """Dataset names with an _A.txt and a _graph_indicator.txt file in `root`."""
    root = Path(root)
    return sorted(p.name[: -len("_A.txt")] for p in root.glob("*_A.txt") if (root / (p.name[:-6] + "_graph_indicator.txt")).exists())


def _read(path: Path, dtype: type, sep: str | None = None) -> np.ndarray:
    try:
        rows = [line.replace(",", " ").split() for line in path.read_text().splitlines() if line.strip()]
        return np.array(rows, dtype=dtype)
    except ValueError as exc:
        raise DataError(f"cannot parse {path.name}: {exc}", str(path), "Write numbers separated by commas.") from None


def _load_tu(
    root: str | Path, name: str | None = None, node_attributes: bool = False, degree_feature: str = "normalized"
) -> GraphSet:
    """Read a TU raw dataset folder into per-graph CSR adjacency with features."""
    if degree_feature not in ("normalized", "raw"):
        raise ValueError(f"degree_feature must be normalized or raw, not {degree_feature!r}")
    root = Path(root)
    if not dataset_names(root, "tu"):
        raise DataError("no TU dataset found", str(root), f"Expected layout: {LAYOUT}.")
    name = pick_name(root, "tu", name)  # case-insensitive; several sets and no name: exit 3 listing them
    f = lambda suffix: root / f"{name}_{suffix}.txt"  # noqa: E731
    for part in ("A", "graph_indicator"):
        if not f(part).is_file():
            raise DataError(f"missing {f(part).name}", str(root), f"Expected layout: {LAYOUT}.")
    indicator = _read(f("graph_indicator"), np.int64).ravel() - 1
    n_total = indicator.shape[0]
    if n_total == 0 or indicator.min() < 0 or np.any(np.diff(indicator) < 0):
        raise DataError("graph_indicator must list 1-based graph ids, nodes grouped by graph", str(f("graph_indicator")))
    n_graphs = int(indicator.max()) + 1
    edges = _read(f("A"), np.int64).reshape(-1, 2) - 1
    if edges.size and (edges.min() < 0 or edges.max() >= n_total):
        raise DataError("edge endpoint outside 1..number of nodes", str(f("A")))
    if f("graph_labels").is_file():
        raw = _read(f("graph_labels"), np.int64).ravel()
        classes, targets = np.unique(raw, return_inverse=True)
        targets = targets.astype(np.int64)
    elif f("graph_attributes").is_file():
        targets = _read(f("graph_attributes"), np.float64).reshape(n_graphs, -1).astype(np.float32)
    else:
        raise DataError("no graph targets", str(root), f"Add {name}_graph_labels.txt or {name}_graph_attributes.txt.")
    if targets.shape[0] != n_graphs:
        raise DataError(f"{targets.shape[0]} graph targets for {n_graphs} graphs", str(root))
    feats = []
    if f("node_labels").is_file():
        nl = _read(f("node_labels"), np.int64)[:, 0]
        nl = nl - nl.min()
        feats.append(np.eye(int(nl.max()) + 1, dtype=np.float32)[nl])
    if node_attributes and f("node_attributes").is_file():
        feats.append(_read(f("node_attributes"), np.float32).reshape(n_total, -1))
    x_all = np.concatenate(feats, 1) if feats else None

    starts = np.searchsorted(indicator, np.arange(n_graphs + 1))
    eg = indicator[edges[:, 0]] if edges.size else np.zeros(0, np.int64)
    order = np.argsort(eg, kind="stable")
    edges, eg = edges[order], eg[order]
    ebounds = np.searchsorted(eg, np.arange(n_graphs + 1))
    graphs = []
    for g in range(n_graphs):
        lo, hi = int(starts[g]), int(starts[g + 1])
        e = edges[ebounds[g]: ebounds[g + 1]] - lo
        if e.size and (e.min() < 0 or e.max() >= hi - lo):
            raise DataError(f"graph {g + 1} has an edge to another graph", str(f("A")))
        adj = csr_from_edges(e[:, 0], e[:, 1], hi - lo)
        x = x_all[lo:hi] if x_all is not None else np.diff(adj.indptr).astype(np.float32)[:, None]
        graphs.append(Graph(indptr=adj.indptr, indices=adj.indices, num_nodes=hi - lo, features=x, name=f"{name}:{g}"))
    if x_all is None and degree_feature == "normalized":
        deg = np.concatenate([g.features[:, 0] for g in graphs]).astype(np.float64)
        mean, std = float(deg.mean()), float(deg.std()) or 1.0
        for g in graphs:
            g.features = ((g.features - mean) / std).astype(np.float32)
    return GraphSet(graphs=graphs, targets=targets, name=name)


def write_tu(root: str | Path, name: str, graphs: list[Graph], targets: np.ndarray, node_attributes: bool = True) -> Path:
    """Write graphs (CSR adjacency, float features) and targets in the TU raw format."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    offset = 0
    a_lines, ind_lines, attr_lines = [], [], []
    for gi, g in enumerate(graphs):
        rows = np.repeat(np.arange(g.num_nodes), np.diff(g.indptr))
        a_lines += [f"{offset + u + 1}, {offset + v + 1}" for u, v in zip(rows.tolist(), np.asarray(g.indices).tolist())]
        ind_lines += [str(gi + 1)] * g.num_nodes
        if node_attributes and g.features is not None:
            attr_lines += [", ".join(f"{v:.6g}" for v in row) for row in g.features]
        offset += g.num_nodes
    (root / f"{name}_A.txt").write_text("\n".join(a_lines) + "\n")
    (root / f"{name}_graph_indicator.txt").write_text("\n".join(ind_lines) + "\n")
    if np.asarray(targets).dtype.kind == "f":
        (root / f"{name}_graph_attributes.txt").write_text("\n".join(", ".join(f"{v:.8g}" for v in np.atleast_1d(t)) for t in targets) + "\n")
    else:
        (root / f"{name}_graph_labels.txt").write_text("\n".join(str(int(t)) for t in targets) + "\n")
    if attr_lines:
        (root / f"{name}_node_attributes.txt").write_text("\n".join(attr_lines) + "\n")
    return root


def load_tu(
    root: str | Path, name: str | None = None, node_attributes: bool = False, degree_feature: str = "normalized"
) -> GraphSet:
    """Read a TU raw dataset folder; any malformed file is a one-line DataError naming the folder (exit 3)."""
    from mlkit.graph.checks import reading

    if degree_feature not in ("normalized", "raw"):
        raise ValueError(f"degree_feature must be normalized or raw, not {degree_feature!r}")
    with reading(root, f"Expected layout: {LAYOUT}."):
        return _load_tu(root, name, node_attributes, degree_feature)
