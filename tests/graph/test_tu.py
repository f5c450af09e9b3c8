"""TU raw reader: hand-written two-graph dataset, round trip through write_tu, error paths."""

from __future__ import annotations

import numpy as np
import pytest

from mlkit.core.errors import DataError
from mlkit.graph.tu import load_tu, write_tu


def _write_toy(root):
    # graph 1: triangle (nodes 1-3); graph 2: path 4-5 plus isolated node 6
    (root / "TOY_A.txt").write_text("1, 2\n2, 1\n2, 3\n3, 2\n1, 3\n3, 1\n4, 5\n5, 4\n")
    (root / "TOY_graph_indicator.txt").write_text("1\n1\n1\n2\n2\n2\n")
    (root / "TOY_graph_labels.txt").write_text("-1\n1\n")
    (root / "TOY_node_labels.txt").write_text("0\n2\n1\n0\n0\n2\n")
    (root / "TOY_node_attributes.txt").write_text("0.5, 1\n1, 1\n2, 1\n3, 1\n4, 1\n5, 1\n")


def test_load_toy(tmp_path):
    _write_toy(tmp_path)
    ds = load_tu(tmp_path)
    assert ds.name == "TOY" and len(ds.graphs) == 2 and ds.targets.tolist() == [0, 1] and ds.num_classes == 2
    g0, g1 = ds.graphs
    assert g0.num_nodes == 3 and g0.num_edges == 6 and g1.num_nodes == 3 and g1.num_edges == 2
    np.testing.assert_array_equal(g0.features, np.eye(3)[[0, 2, 1]])  # one-hot node labels, attributes ignored
    assert ds.num_features == 3
    with_attr = load_tu(tmp_path, node_attributes=True)
    assert with_attr.num_features == 5 and with_attr.graphs[1].features[2, 3] == 5.0


def test_degree_features_and_round_trip(tmp_path):
    _write_toy(tmp_path)
    for extra in ("node_labels", "node_attributes"):
        (tmp_path / f"TOY_{extra}.txt").unlink()
    ds = load_tu(tmp_path, degree_feature="raw")
    np.testing.assert_array_equal(ds.graphs[1].features[:, 0], [1, 1, 0])
    # default: the degree standardised over all nodes of the set (degrees 2, 2, 2, 1, 1, 0)
    norm = np.concatenate([g.features[:, 0] for g in load_tu(tmp_path).graphs])
    deg = np.array([2, 2, 2, 1, 1, 0.0])
    np.testing.assert_allclose(norm, (deg - deg.mean()) / deg.std(), rtol=1e-6)
    with pytest.raises(ValueError):
        load_tu(tmp_path, degree_feature="onehot")
    out = tmp_path / "copy"
    write_tu(out, "COPY", ds.graphs, ds.targets)
    back = load_tu(out, node_attributes=True)
    assert back.targets.tolist() == ds.targets.tolist()
    for a, b in zip(ds.graphs, back.graphs):
        np.testing.assert_array_equal(a.indptr, b.indptr)
        np.testing.assert_array_equal(a.indices, b.indices)


def test_regression_targets(tmp_path):
    _write_toy(tmp_path)
    (tmp_path / "TOY_graph_labels.txt").unlink()
    (tmp_path / "TOY_graph_attributes.txt").write_text("-1.5\n2.25\n")
    ds = load_tu(tmp_path)
    assert ds.regression and ds.targets[:, 0].tolist() == [-1.5, 2.25]


def test_errors(tmp_path):
    with pytest.raises(DataError, match="no TU dataset"):
        load_tu(tmp_path)
    _write_toy(tmp_path)
    (tmp_path / "TOY_A.txt").write_text("1, 4\n")
    with pytest.raises(DataError, match="another graph"):
        load_tu(tmp_path)
