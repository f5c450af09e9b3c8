"""Degree-corrected planted-partition graphs (GBP spec §3), streamed to disk in the generic layout.

K communities; propensity theta_i ~ 1 + Pareto(2.1) (power-law degrees); `degree * n` edge draws with both
endpoints drawn proportional to theta, `intra` of them rewired to the source's community; a ring i -- i+1 so
no node is isolated; features 0.5 * mu_class + N(0, I_F); splits by fraction. Each undirected edge is written
once to edges.npy (meta.json says symmetric) and the CSR (both directions) to indptr.npy / indices.npy.
Memory stays O(n) plus one chunk of edges, so 1e7 nodes fit in a few GB.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mlkit.graph.io import INT32_MAX, csr_from_edge_chunks

CHUNK = 1 << 22


def planted_partition(
    out: str | Path,
    nodes: int,
    classes: int = 5,
    features: int = 16,
    degree: float = 5.0,
    intra: float = 0.8,
    signal: float = 0.5,
    fracs: tuple[float, float, float] = (0.01, 0.01, 0.02),
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write a synthetic graph folder (edges.npy, indptr.npy, indices.npy, feats.npy, labels.npy, split.npz, meta.json)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = int(nodes)
    say = progress or (lambda _m: None)
    comm = rng.integers(0, classes, size=n).astype(np.int64)
    theta = 1.0 + rng.pareto(2.1, size=n)
    # global and per-community samplers: cumulative propensities, searched with uniform draws
    cum = np.cumsum(theta)
    order = np.argsort(comm, kind="stable")
    bounds = np.searchsorted(comm[order], np.arange(classes + 1))
    ccum = np.cumsum(theta[order])
    m_draw = int(round(degree * n))
    m = m_draw + n
    idx_t = np.int32 if n <= INT32_MAX else np.int64
    edges = np.lib.format.open_memmap(out / "edges.npy", mode="w+", dtype=idx_t, shape=(m, 2))
    say(f"edges: {m:,} undirected ({m_draw:,} draws + {n:,} ring)")
    for s in range(0, m_draw, CHUNK):
        k = min(CHUNK, m_draw - s)
        src = np.searchsorted(cum, rng.random(k) * cum[-1], side="right")
        dst = np.searchsorted(cum, rng.random(k) * cum[-1], side="right")
        rewire = rng.random(k) < intra
        c = comm[src[rewire]]
        lo = np.where(bounds[c] > 0, ccum[np.maximum(bounds[c] - 1, 0)], 0.0)
        hi = ccum[np.maximum(bounds[c + 1] - 1, 0)]
        pick = np.searchsorted(ccum, lo + rng.random(c.shape[0]) * (hi - lo), side="right")
        dst[rewire] = order[np.minimum(pick, np.maximum(bounds[c + 1] - 1, 0))]
        src = np.minimum(src, n - 1)
        dst = np.minimum(dst, n - 1)
        edges[s : s + k, 0] = src
        edges[s : s + k, 1] = dst
    ring = np.arange(n, dtype=np.int64)
    edges[m_draw:, 0] = ring
    edges[m_draw:, 1] = (ring + 1) % n
    edges.flush()
    del edges
    say("csr: indptr.npy / indices.npy")
    arr = np.load(out / "edges.npy", mmap_mode="r")

    def chunks():  # noqa: ANN202
        for s in range(0, m, CHUNK):
            block = np.asarray(arr[s : s + CHUNK])
            yield block[:, 0].astype(np.int64), block[:, 1].astype(np.int64)

    csr_from_edge_chunks(chunks, n, symmetric=True, out_dir=out)
    say("features")
    mu = rng.standard_normal((classes, features)).astype(np.float32)
    feats = np.lib.format.open_memmap(out / "feats.npy", mode="w+", dtype=np.float32, shape=(n, features))
    for s in range(0, n, CHUNK // 4):
        e = min(n, s + CHUNK // 4)
        feats[s:e] = signal * mu[comm[s:e]] + rng.standard_normal((e - s, features), dtype=np.float32)
    feats.flush()
    del feats
    np.save(out / "labels.npy", comm)
    perm = rng.permutation(n)
    a = max(1, int(round(fracs[0] * n)))
    b = a + max(1, int(round(fracs[1] * n)))
    c = b + max(1, int(round(fracs[2] * n)))
    np.savez(out / "split.npz", train=np.sort(perm[:a]), val=np.sort(perm[a:b]), test=np.sort(perm[b:c]))
    meta = {
        "num_nodes": n,
        "symmetric": True,
        "name": f"synth{n}",
        "generator": "planted_partition",
        "classes": classes,
        "features": features,
        "degree": degree,
        "intra": intra,
        "seed": seed,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return out
