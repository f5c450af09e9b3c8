"""Planetoid raw loader: real Cora (skipped when shared/data is absent) and a synthetic Citeseer-style gap."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from mlkit.core.errors import DataError
from mlkit.graph.planetoid import find_names, load_planetoid, safe_load, write_planetoid

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "planetoid"


@pytest.mark.skipif(not (DATA / "ind.cora.x").exists(), reason="shared Planetoid data absent")
def test_cora_public_split():
    g = load_planetoid(DATA, "cora")
    assert g.num_nodes == 2708 and g.features.shape == (2708, 1433)
    assert g.num_edges == 10556  # symmetric, no self-loops: 5,278 undirected edges
    assert (len(g.train_idx), len(g.val_idx), len(g.test_idx)) == (140, 500, 1000)
    assert g.num_classes == 7
    adj = g.to_scipy()
    assert (adj != adj.T).nnz == 0 and adj.diagonal().sum() == 0
    # training labels are balanced: 20 per class in the public split
    assert np.bincount(g.labels[g.train_idx], minlength=7).tolist() == [20] * 7
    assert set(np.unique(g.features)) <= {0.0, 1.0}
    assert "cora" in find_names(DATA)


def _write_gapped(root: Path, name: str = "toy", seed: int = 0, classes: int = 3) -> None:
    """A 10-node Citeseer-like set: train 2, allx 6, test ids {6, 7, 9} (8 missing)."""
    rng = np.random.default_rng(seed)
    feats = (rng.random((10, 4)) > 0.5).astype(np.float32)
    labels = rng.integers(0, classes, 10)
    labels[0] = classes - 1  # every class index below `classes` is representable
    graph = {0: [1, 0], 1: [0, 2], 6: [9], 8: []}
    write_planetoid(root, name, feats, labels, graph, num_train=2, test_index=[9, 6, 7])  # file order shuffled
    np.save(root / f"truth_feats_{name}.npy", feats)
    np.save(root / f"truth_labels_{name}.npy", labels)


def test_gapped_test_index_padding(tmp_path):
    _write_gapped(tmp_path)
    g = load_planetoid(tmp_path, "toy")
    truth = np.load(tmp_path / "truth_feats_toy.npy")
    labels = np.load(tmp_path / "truth_labels_toy.npy")
    assert g.num_nodes == 10
    for i in (0, 1, 2, 3, 4, 5, 6, 7, 9):
        np.testing.assert_array_equal(g.features[i], truth[i])
        assert g.labels[i] == labels[i]
    assert not g.features[8].any()  # the missing test id is a zero row
    assert g.test_idx.tolist() == [6, 7, 9]
    adj = g.to_scipy().toarray()
    assert adj[0, 0] == 0 and adj[0, 1] == 1 and adj[1, 0] == 1 and adj[9, 6] == 1 and adj.sum() == 6


def test_restricted_unpickler_refuses_other_classes(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    (tmp_path / "bad").write_bytes(pickle.dumps(Evil(), protocol=2))
    with pytest.raises(DataError):
        safe_load(tmp_path / "bad")


def test_missing_files_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="missing"):
        load_planetoid(tmp_path, "cora")
