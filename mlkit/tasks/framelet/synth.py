"""Synthetic data of spec section 3: contextual stochastic block models (node classification) and a two-class
graph-classification set whose classes differ spectrally (the degree signal is high-frequency on one randomly
wired community, low-frequency on two loosely linked communities of different density)."""

from __future__ import annotations

import numpy as np

from mlkit.graph.graph import Graph
from mlkit.graph.planetoid import csr_from_edges

RATIOS = {"homophilous": 8.0, "heterophilous": 0.1}


def _block_edges(rng: np.random.Generator, members: list[np.ndarray], p: np.ndarray) -> np.ndarray:
    """Undirected edges between class blocks: a binomial count per block pair, then uniform pairs."""
    out = []
    c = len(members)
    for a in range(c):
        for b in range(a, c):
            na, nb = members[a].shape[0], members[b].shape[0]
            pairs = na * (na - 1) // 2 if a == b else na * nb
            m = rng.binomial(pairs, min(float(p[a, b]), 1.0)) if pairs else 0
            u = members[a][rng.integers(0, na, m)]
            v = members[b][rng.integers(0, nb, m)]
            out.append(np.stack([u, v], 1))
    return np.concatenate(out) if out else np.zeros((0, 2), np.int64)


def csbm(
    nodes: int = 3000,
    classes: int = 4,
    features: int = 200,
    degree: float = 10.0,
    ratio: float = 8.0,
    mu: float = 1.0,
    train_per_class: int = 20,
    val: int = 500,
    test: int = 1000,
    seed: int = 0,
    name: str = "csbm",
) -> Graph:
    """CSBM graph: balanced classes, P(edge) = p_in within a class, p_out across, p_in / p_out = ratio,
    expected degree `degree`; features x_i = mu sqrt(F/C) e(y_i) + N(0, I_F) (spec 3, sigma_x = 1), where e(k) is
    the unit indicator of the k-th of C equal feature blocks (orthonormal class directions; the mean is mu on
    each of the F/C coordinates of the class's block; features beyond C * (F // C) carry noise only).
    Split: train_per_class nodes per class, then `val` and `test` nodes (capped to what is left)."""
    rng = np.random.default_rng(seed)
    n, c = int(nodes), int(classes)
    labels = rng.permutation(np.arange(n) % c).astype(np.int64)
    members = [np.flatnonzero(labels == k) for k in range(c)]
    size = n / c
    p_out = degree / (ratio * (size - 1) + (n - size))
    p = np.full((c, c), p_out)
    np.fill_diagonal(p, ratio * p_out)
    edges = _block_edges(rng, members, p)
    adj = csr_from_edges(edges[:, 0], edges[:, 1], n)
    width = features // c
    if width < 1:
        raise ValueError(f"need at least one feature per class (F = {features}, C = {c})")
    means = np.zeros((c, features))
    for k in range(c):
        means[k, k * width : (k + 1) * width] = mu * np.sqrt(features / c) / np.sqrt(width)
    x = (means[labels] + rng.standard_normal((n, features))).astype(np.float32)
    train = np.concatenate([rng.permutation(m)[:train_per_class] for m in members])
    rest = rng.permutation(np.setdiff1d(np.arange(n), train))
    v = min(val, rest.shape[0] // 3)
    return Graph(
        indptr=adj.indptr,
        indices=adj.indices,
        num_nodes=n,
        features=x,
        labels=labels,
        train_idx=np.sort(train),
        val_idx=np.sort(rest[:v]),
        test_idx=np.sort(rest[v : v + test]),
        name=name,
    )


def feature_noise(g: Graph, eta: float, seed: int) -> Graph:
    """x <- x + N(0, eta^2) (a new Graph; the input is unchanged)."""
    if eta <= 0:
        return g
    rng = np.random.default_rng(seed)
    x = g.features + rng.normal(0.0, eta, g.features.shape).astype(np.float32)
    return Graph(**{**g.__dict__, "features": x})


def structure_noise(g: Graph, rho: float, seed: int) -> Graph:
    """Rewire a fraction rho of the undirected edges to uniformly random endpoints."""
    if rho <= 0:
        return g
    rng = np.random.default_rng(seed + 1)
    rows = np.repeat(np.arange(g.num_nodes), np.diff(g.indptr))
    cols = np.asarray(g.indices, dtype=np.int64)
    keep = rows < cols
    u, v = rows[keep], cols[keep]
    hit = rng.random(u.shape[0]) < rho
    u, v = u.copy(), v.copy()
    u[hit] = rng.integers(0, g.num_nodes, int(hit.sum()))
    v[hit] = rng.integers(0, g.num_nodes, int(hit.sum()))
    adj = csr_from_edges(u, v, g.num_nodes)
    return Graph(**{**g.__dict__, "indptr": adj.indptr, "indices": adj.indices})


def _bernoulli_graph(rng: np.random.Generator, prob: np.ndarray) -> np.ndarray:
    """Undirected edges [E, 2] of a graph with independent edges, P(i ~ j) = prob[i, j] (i < j)."""
    u, v = np.triu_indices(prob.shape[0], 1)
    keep = rng.random(u.shape[0]) < np.minimum(prob[u, v], 1.0)
    return np.stack([u[keep], v[keep]], 1)


def two_class_graphs(
    count: int = 600,
    min_nodes: int = 20,
    max_nodes: int = 60,
    degree: float = 2.0,
    ratio: float = 3.0,
    bridges: int = 2,
    noise: float = 0.5,
    seed: int = 0,
) -> tuple[list[Graph], np.ndarray]:
    """Two classes with the same node-count and (expected) degree distributions whose degree signal differs
    in frequency content (spec 3: low- vs high-frequency energy). Every graph has a low-degree group of
    ratio / (1 + ratio) of its nodes (expected degree `degree`) and a high-degree group of the rest (expected
    degree ratio * degree), so both groups carry the same number of edge ends:
    class 0: one planted-partition graph whose edges all run across the two groups (bipartite), so the degree
             signal flips along every edge (high-frequency);
    class 1: the two groups as two loosely connected communities (Erdos-Renyi inside each, joined by `bridges`
             random edges), so the degree signal is piecewise constant (low-frequency).
    Edge probabilities are capped at 1 (the high-degree community of the smallest graphs). Node feature =
    degree + N(0, noise^2) (written as TU node attributes; the TU loader's default, like PyG's, ignores them and
    uses the exact degree, standardised over the set). Node order is shuffled."""
    rng = np.random.default_rng(seed)
    graphs, labels = [], []
    for i in range(count):
        y = i % 2
        n = int(rng.integers(min_nodes, max_nodes + 1))
        n_lo = int(round(n * ratio / (1.0 + ratio)))
        n_hi = n - n_lo
        prob = np.zeros((n, n))
        if y == 0:
            prob[:n_lo, n_lo:] = prob[n_lo:, :n_lo] = degree / n_hi
            edges = _bernoulli_graph(rng, prob)
        else:
            prob[:n_lo, :n_lo] = degree / max(n_lo - 1, 1)
            prob[n_lo:, n_lo:] = ratio * degree / max(n_hi - 1, 1)
            edges = _bernoulli_graph(rng, prob)
            link = np.stack([rng.integers(0, n_lo, bridges), rng.integers(n_lo, n, bridges)], 1)
            edges = np.concatenate([edges, link])
        perm = rng.permutation(n)  # node order carries no information
        adj = csr_from_edges(perm[edges[:, 0]], perm[edges[:, 1]], n)
        deg = np.diff(adj.indptr).astype(np.float32)
        x = (deg + rng.normal(0, noise, n)).astype(np.float32)[:, None]
        graphs.append(Graph(indptr=adj.indptr, indices=adj.indices, num_nodes=n, features=x, name=f"g{i}"))
        labels.append(y)
    order = rng.permutation(count)
    return [graphs[i] for i in order], np.asarray(labels, np.int64)[order]
