"""Graph loaders: every layout round-trips to the same CSR, features, labels and splits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from mlkit.core.errors import DataError
from mlkit.graph.io import (
    csr_from_edge_chunks,
    detect_layout,
    index_dtypes,
    induced_subgraph,
    load_gbp_train,
    load_graph,
    save_generic,
)
from mlkit.graph.synth import planted_partition


def _dense(g):
    return g.to_scipy().toarray()


@pytest.fixture()
def small():
    rng = np.random.default_rng(0)
    n = 40
    und = np.unique(np.sort(rng.integers(0, n, size=(120, 2)), axis=1), axis=0)
    und = und[und[:, 0] != und[:, 1]]
    a = np.zeros((n, n))
    a[und[:, 0], und[:, 1]] = 1
    a[und[:, 1], und[:, 0]] = 1
    x = rng.standard_normal((n, 5))
    y = rng.integers(0, 3, n)
    return n, und, a, x, y


def test_index_dtypes_switch_at_2_31():
    assert index_dtypes(10, 2**31 - 1) == (np.int32, np.int32)
    assert index_dtypes(10, 2**31) == (np.int64, np.int32)
    assert index_dtypes(2**31, 2**31)[1] == np.int64


def test_csr_from_chunks_matches_scipy_with_duplicates_and_self_loops():
    rng = np.random.default_rng(3)
    e = rng.integers(0, 50, size=(10_000, 2))  # many duplicates; > 4096 entries uses the numba filler
    chunks = lambda: iter([(e[:6000, 0], e[:6000, 1]), (e[6000:, 0], e[6000:, 1])])  # noqa: E731
    indptr, indices = csr_from_edge_chunks(chunks, 50, symmetric=True, self_loops=True)
    got = sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(50, 50)).toarray()
    want = np.zeros((50, 50))
    np.add.at(want, (e[:, 0], e[:, 1]), 1)
    np.add.at(want, (e[:, 1], e[:, 0]), 1)
    want += np.eye(50)
    np.testing.assert_array_equal(got, want)


def test_generic_edges_txt_and_masks(tmp_path, small):
    n, und, a, x, y = small
    d = tmp_path / "g"
    d.mkdir()
    lines = ["# u v"] + [f"{u} {v}\n{v} {u}" for u, v in und]
    (d / "edges.txt").write_text("\n".join(lines) + "\n")
    np.save(d / "feats.npy", x)  # float64 on disk -> float32 in memory
    np.save(d / "labels.npy", y)
    mask = np.zeros(n, bool)
    mask[:7] = True
    np.savez(d / "split.npz", train_mask=mask, val=np.array([10, 11]), test=np.array([20, 21, 22]))
    g = load_graph(d)
    assert detect_layout(d) == ("generic", None)
    np.testing.assert_array_equal(_dense(g), a)
    assert g.features.dtype == np.float32 and np.allclose(g.features, x)
    np.testing.assert_array_equal(g.train_idx, np.arange(7))
    np.testing.assert_array_equal(g.test_idx, [20, 21, 22])


def test_save_generic_roundtrip_memory_maps_csr(tmp_path, small):
    n, und, a, x, y = small
    save_generic(tmp_path / "s", und, n, x, y, {"train": [0, 1], "val": [2], "test": [3]}, symmetric=True)
    g = load_graph(tmp_path / "s")
    assert isinstance(g.indices, np.memmap)
    np.testing.assert_array_equal(_dense(g), a)
    assert g.indices.dtype == np.int32 and g.num_classes == int(y.max()) + 1


def test_gbp_layout_and_inductive_train_files(tmp_path, small):
    n, und, a, x, y = small
    ent = np.concatenate([und, und[:, ::-1]])
    (tmp_path / "toy.txt").write_text(f"{n}\n" + "\n".join(f"{u} {v}" for u, v in ent) + "\n")
    np.save(tmp_path / "toy_feat.npy", np.asfortranarray(x))  # any order is accepted
    np.savez(tmp_path / "toy_labels.npz", labels=y, idx_train=np.arange(5), idx_val=np.arange(5, 9),
             idx_test=np.arange(9, 20))
    tr = np.arange(5)
    sub = ent[np.isin(ent[:, 0], tr) & np.isin(ent[:, 1], tr)]
    (tmp_path / "toy_train.txt").write_text("5\n" + "\n".join(f"{u} {v}" for u, v in sub) + "\n")
    assert detect_layout(tmp_path) == ("gbp", "toy")
    g = load_graph(tmp_path)
    np.testing.assert_array_equal(_dense(g), a)
    np.testing.assert_allclose(g.features, x, rtol=1e-6)
    assert g.val_idx.tolist() == [5, 6, 7, 8] and not g.multilabel
    gt = load_gbp_train(tmp_path, "toy")
    np.testing.assert_array_equal(_dense(gt), a[:5, :5])
    ip, ix = induced_subgraph(g, tr)
    np.testing.assert_array_equal(sp.csr_matrix((np.ones(len(ix)), ix, ip), shape=(5, 5)).toarray(), a[:5, :5])


def test_saint_layout_multilabel(tmp_path, small):
    n, und, a, x, y = small
    sp.save_npz(tmp_path / "adj_full.npz", sp.csr_matrix(a))
    np.save(tmp_path / "feats.npy", x.astype(np.float32))
    ml = (np.arange(n)[:, None] % np.array([2, 3]) == 0).astype(int)
    (tmp_path / "class_map.json").write_text(json.dumps({str(i): ml[i].tolist() for i in range(n)}))
    (tmp_path / "role.json").write_text(json.dumps({"tr": [0, 1, 2], "va": [3], "te": [4, 5]}))
    g = load_graph(tmp_path)
    assert g.multilabel and g.labels.shape == (n, 2)
    np.testing.assert_array_equal(_dense(g), a)
    assert g.test_idx.tolist() == [4, 5]


def test_friendster_chunks_add_both_directions_and_self_loops(tmp_path, small):
    n, und, a, x, y = small
    half = len(und) // 2
    np.save(tmp_path / "friendster1.npy", np.concatenate([[[n, len(und)]], und[:half]]).astype(np.int64))
    np.save(tmp_path / "friendster2.npy", und[half:].astype(np.int64))
    np.save(tmp_path / "friendster_feat1.npy", x[:20])
    np.save(tmp_path / "friendster_feat2.npy", x[20:])
    np.savez(tmp_path / "friendster_labels.npz", train_idx=[0, 1], val_idx=[2], test_idx=[3],
             train_labels=[1, 2], val_labels=[0], test_labels=[2])
    g = load_graph(tmp_path)
    np.testing.assert_array_equal(_dense(g), a + np.eye(n))
    np.testing.assert_allclose(g.features, x, rtol=1e-6)
    assert g.labels[:4].tolist() == [1, 2, 0, 2] and g.labels[4] == -1


def test_unknown_layout_and_bad_ids_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="no known graph layout"):
        load_graph(tmp_path)
    np.save(tmp_path / "edges.npy", np.array([[0, 5]]))
    (tmp_path / "meta.json").write_text(json.dumps({"num_nodes": 3}))
    with pytest.raises(DataError, match="outside"):
        load_graph(tmp_path)


def test_synth_is_seeded_symmetric_and_homophilous(tmp_path):
    planted_partition(tmp_path / "a", 2000, classes=4, features=8, degree=4, seed=5)
    planted_partition(tmp_path / "b", 2000, classes=4, features=8, degree=4, seed=5)
    ga, gb = load_graph(tmp_path / "a"), load_graph(tmp_path / "b")
    np.testing.assert_array_equal(np.asarray(ga.indices), np.asarray(gb.indices))
    adj = ga.to_scipy()
    assert abs(adj - adj.T).sum() == 0
    assert ga.degrees().min() >= 2  # the ring leaves no node isolated
    rows = np.repeat(np.arange(ga.num_nodes), ga.degrees())
    same = (ga.labels[rows] == ga.labels[np.asarray(ga.indices)]).mean()
    assert 0.6 < same < 0.9  # 80 % rewired plus 1/K chance, diluted by the ring
    assert len(ga.train_idx) == 20 and len(np.intersect1d(ga.train_idx, ga.test_idx)) == 0
