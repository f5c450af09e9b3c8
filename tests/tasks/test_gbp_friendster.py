"""The Friendster path (issue 21): one self-loop per node, the original's BiP.transition thresholds, both rules
against exact propagation, on a fixture written in the Friendster chunk layout and read through the preset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from mlkit.kernels import gbp_combine as gc
from mlkit.kernels import gbp_walks as gw

N, F, R = 60, 5, 0.5


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    monkeypatch.setenv("MLKIT_CACHE", str(tmp_path / "cache"))


def _undirected(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pairs = {(min(u, v), max(u, v)) for u, v in rng.integers(0, n, size=(3 * n, 2)) if u != v}
    pairs |= {(i, i + 1) for i in range(n - 1)}  # connected
    return np.array(sorted(pairs), dtype=np.int64)


def write_friendster(d: Path, n: int = N, f: int = F, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The GBP converter's layout: edge chunks (row 0 of chunk 1 = [n, m]), z-scored one-hot float64 feature
    chunks, labels with train/val/test ids, the walk targets. Returns (undirected edges, features, targets)."""
    d.mkdir(parents=True, exist_ok=True)
    und = _undirected(n, seed)
    h = len(und) // 2
    np.save(d / "friendster1.npy", np.concatenate([[[n, len(und)]], und[:h]]))
    np.save(d / "friendster2.npy", und[h:])
    rng = np.random.default_rng(seed + 1)
    onehot = np.eye(f)[rng.integers(0, f, size=n)]
    x = (onehot - onehot.mean(0)) / onehot.std(0)
    np.save(d / "friendster_feat1.npy", x[: n // 2])
    np.save(d / "friendster_feat2.npy", x[n // 2 :])
    ids = rng.permutation(n)
    tr, va, te = ids[:12], ids[12:18], ids[18:24]
    np.savez(d / "friendster_labels.npz", train_idx=tr, val_idx=va, test_idx=te, train_labels=tr % 3,
             val_labels=va % 3, test_labels=te % 3)  # fmt: skip
    targets = np.sort(np.concatenate([tr, va, te]))
    np.save(d / "friendster_rw_index.npy", targets)
    return und, x, targets


def original_t(und: np.ndarray, n: int, r: float) -> sp.csr_matrix:
    """The original's operator: A = both directions of every edge + ONE self-loop, T = D^(r-1) A D^-r."""
    a = sp.coo_matrix((np.ones(2 * len(und)), (np.r_[und[:, 0], und[:, 1]], np.r_[und[:, 1], und[:, 0]])), (n, n))
    a = (a + sp.identity(n)).tocsr()
    d = np.asarray(a.sum(1)).ravel()
    return (sp.diags(d ** (r - 1)) @ a @ sp.diags(d**-r)).tocsr()


def original_transition(ip, ix, x, rmax, r, s_levels, targets):  # noqa: ANN001, ANN201
    """A line-by-line NumPy re-statement of the original's BackwardPush (BiP.transition, L = 4, w_4 = 1):
    push R when R > rmax * pos_sum or R < rmax * neg_sum / 50 (raw sums), combine leftovers of level t with
    the (4 - t)-step walk rows, pushes out of level 3 land in the output, times d^r at the end."""
    n = ip.shape[0] - 1
    deg = np.diff(ip).astype(np.float64)
    out = np.zeros((len(targets), x.shape[1]))
    for c in range(x.shape[1]):
        col = x[:, c]
        hi, lo = rmax * col[col > 0].sum(), rmax * col[col <= 0].sum() / 50
        cur = col / deg**r
        acc = np.zeros(n)
        for t in range(4):
            nxt = np.zeros(n)
            for u in range(n):
                if cur[u] > hi or cur[u] < lo:
                    for v in ix[ip[u] : ip[u + 1]]:
                        nxt[v] += cur[u] / deg[v]
                    cur[u] = 0.0
            acc[targets] += s_levels[3 - t] @ cur
            cur = nxt
        acc += cur  # pushes out of level 3
        out[:, c] = acc[targets] * deg[targets] ** r
    return out


def _cfg(d: Path, **prop) -> dict:
    from mlkit.core.config import apply_preset, load_defaults, resolve

    cfg = apply_preset(resolve(load_defaults("mlkit.tasks.gbp"), (), ["preset=friendster", f"data={d}"]))
    cfg["propagation"].update(prop)
    return cfg


def test_friendster_layout_through_the_preset_has_one_self_loop_and_the_original_t(tmp_path):
    from mlkit.tasks.gbp.data import build_rows, load_dataset, standardizer
    from mlkit.tasks.gbp.precompute import add_self_loops, loops_to_add

    d = tmp_path / "fr"
    und, x, targets = write_friendster(d)
    cfg = _cfg(d, rmax=0.0, walks=20)  # rmax 0: every residue is pushed, the estimate is exact
    assert cfg["propagation"]["self_loops"] and cfg["propagation"]["thresholds"] == "original"
    g = load_dataset(cfg, lambda _m: None)
    assert g.self_loops and not loops_to_add(g, cfg["propagation"])
    ip, ix = np.asarray(g.indptr), np.asarray(g.indices)
    undeg = np.bincount(und.ravel(), minlength=N)
    np.testing.assert_array_equal(np.diff(ip), undeg + 1)  # one self-loop: d + 1, not d + 2
    loops = np.array([np.count_nonzero(ix[ip[u] : ip[u + 1]] == u) for u in range(N)])
    assert (loops == 1).all()
    t_ref = original_t(und, N, R)
    a = sp.csr_matrix((np.ones(ix.shape[0]), ix, ip), shape=(N, N))
    dg = np.diff(ip).astype(np.float64)
    t_ours = sp.diags(dg ** (R - 1)) @ a @ sp.diags(dg**-R)
    np.testing.assert_allclose(t_ours.toarray(), t_ref.toarray(), rtol=1e-12, atol=0)
    # the rows the preset propagates (bidirectional, original thresholds) are T^4 X of the standardised features
    mean, std = standardizer(cfg, g)
    xs = (x.astype(np.float32) - mean) / std
    exact = xs.astype(np.float64)
    for _ in range(4):
        exact = t_ref @ exact
    rows = build_rows(cfg, g, "cpu").full
    assert rows.estimator == "bidirectional"
    np.testing.assert_allclose(rows.take(targets), exact[targets], rtol=1e-6, atol=1e-6 * np.abs(exact).max())
    # a graph without the loader's loops (generic layout) gets exactly one from the propagation step
    g.self_loops = False
    assert loops_to_add(g, cfg["propagation"])
    assert add_self_loops(ip, ix)[1].shape[0] == ix.shape[0] + N


@pytest.mark.parametrize("rule", ["paper", "original"])
@pytest.mark.parametrize("rmax", [1e-1, 1e-2, 1e-4])
def test_both_threshold_rules_equal_exact_propagation_with_exact_walk_rows(tmp_path, rule, rmax):
    und, x, targets = write_friendster(tmp_path / "fr", seed=3)
    ref = (original_t(und, N, R) @ (original_t(und, N, R) @ (original_t(und, N, R) @ (original_t(und, N, R) @ x))))
    from mlkit.graph.io import load_graph

    g = load_graph(tmp_path / "fr")
    ip, ix = np.asarray(g.indptr), np.asarray(g.indices)
    w = np.array([0.0, 0, 0, 0, 1.0])
    levels = []
    for sj in gw.walks_reference(ip, ix, targets, 4):
        rows_, cols = np.nonzero(sj)
        ptr = np.zeros(len(targets) + 1, np.int64)
        np.cumsum(np.bincount(rows_, minlength=len(targets)), out=ptr[1:])
        levels.append((ptr, cols.astype(np.int64), sj[rows_, cols]))
    coef = gc.coefficients(levels, w, targets)
    for mode in ("push", "pull"):
        est = gc.bidirectional_numba(ip, ix, x, w, R, rmax, targets, coef, out_dtype=np.float64, mode=mode,
                                     thresholds=rule).T  # fmt: skip
        np.testing.assert_allclose(est, ref[targets], rtol=1e-9, atol=1e-9 * np.abs(ref).max())


def test_original_rule_reproduces_the_original_transition_with_the_same_walks(tmp_path):
    """With Monte-Carlo walk rows the leftovers matter: the 'original' rule gives the original's numbers (its
    BackwardPush re-stated), and the paper's rule gives other numbers on z-scored one-hot features."""
    und, x, targets = write_friendster(tmp_path / "fr", n=80, seed=5)
    from mlkit.graph.io import load_graph

    g = load_graph(tmp_path / "fr")
    ip, ix = np.asarray(g.indptr), np.asarray(g.indices)
    w = np.array([0.0, 0, 0, 0, 1.0])
    lv = gw.walks_numba(ip, ix, targets, 50, 4, seed=1)
    dense = [gw.to_dense(level, 80) for level in lv]
    coef = gc.coefficients(lv, w, targets)
    rmax = 2e-3
    want = original_transition(ip, ix, x, rmax, R, dense, targets)
    outs = {}
    for rule in ("original", "paper"):
        for mode in ("push", "pull", "auto"):
            est = gc.bidirectional_numba(ip, ix, x, w, R, rmax, targets, coef, out_dtype=np.float64, mode=mode,
                                         thresholds=rule).T  # fmt: skip
            ref = gc.bidirectional_reference(ip, ix, x, w, R, rmax, targets, dense, thresholds=rule)
            np.testing.assert_allclose(est, ref, rtol=1e-9, atol=1e-12)
            outs[rule] = est
    np.testing.assert_allclose(outs["original"], want, rtol=1e-9, atol=1e-12)
    assert np.abs(outs["paper"] - want).max() > 1e-3 * np.abs(want).max()


def test_large_friendster_features_stay_on_disk_and_give_the_same_rows(tmp_path, monkeypatch):
    """Above FEATURES_IN_RAM the loader keeps the features in a column-major cache file read by chunks."""
    import mlkit.graph.io as gio
    from mlkit.graph.colfile import ColumnFile
    from mlkit.tasks.gbp.data import build_rows, load_dataset

    d = tmp_path / "fr"
    _, x, targets = write_friendster(d, seed=7)
    cfg = _cfg(d, rmax=1e-3, walks=30, cache=False)
    in_ram = load_dataset(cfg, lambda _m: None)
    monkeypatch.setattr(gio, "FEATURES_IN_RAM", 0)
    on_disk = load_dataset(cfg, lambda _m: None)
    assert isinstance(on_disk.features, ColumnFile) and on_disk.features.shape == (N, F)
    x32 = x.astype(np.float32)
    np.testing.assert_array_equal(np.asarray(on_disk.features), x32)
    np.testing.assert_array_equal(on_disk.features[targets[::-1]], x32[targets[::-1]])
    np.testing.assert_array_equal(on_disk.features[5:17, 1:4], x32[5:17, 1:4])
    np.testing.assert_array_equal(on_disk.features.columns(2, 5), x32[:, 2:5].T)
    a = build_rows(cfg, in_ram, "cpu").full.take(targets)
    b = build_rows(cfg, on_disk, "cpu").full.take(targets)
    np.testing.assert_array_equal(a, b)
