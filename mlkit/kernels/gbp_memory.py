"""Memory model of the bidirectional precompute (issue 21): the projected peak RSS for n, nnz, F, |S|, threads.

    project(n, nnz, features, targets, walks, levels=4, threads=1, mode="pull", ...) -> dict of bytes
    describe(p) -> str                                                              one line per component

Every term follows an allocation in the code (gbp_walks, gbp_combine, gbp_scatter, gbp_pull, precompute):
  inputs     CSR (indptr + int32 indices) and float32 features [n, F] as loaded; the column chunk of the
             features transposed for the kernels ([C, n] float32, C = propagate_rows' chunk);
  walks      per level and target the distinct end nodes of n_r walks: E = |S| sum_j k_j entries, with
             k_j = K_j (1 - (1 - 1/K_j)^n_r) the expected distinct draws from a support of K_j = min(n, d^j) nodes;
             16 bytes each (int64 node + float64 probability) while the walks are built and concatenated (twice),
             then packed [L, max_j |S| k_j] for the kernels, plus the batch buffer [2048, L, n_r] int32;
  pull       the targets' ball B_k = min(n, |S| d^k) (k hops), its relabelled CSR (rows of B_(L-1)), the level
             buffer sum_k |B_k| x W float32, O(n) BFS scratch (int16 + 3 int32 per node), shared by the threads;
  scatter    per worker: slots for the touched nodes (L W + W float64, L + 1 flags, node id, hash 2 x 16 bytes,
             level lists) and the level-0 leftovers on the walk nodes U ([|U|, W] float64). `touched` is the
             fraction of nodes a worker's pushes reach (1 = worst case).
The constants were checked against measured peaks (tests/kernels/test_gbp_memory.py, benchmarks/gbp_memory.py).
"""

from __future__ import annotations

import math

KERNELS = 0.1 * 2**30  # numba's runtime and the compiled kernels once loaded from its cache (measured)
BASE = 0.12 * 2**30  # python + numpy + numba + scipy + the compiled kernels (ru_maxrss of a tiny run, no torch)
BATCH = 2048  # targets per walk batch (gbp_walks.walks_numba)
PULL_BUDGET = 1 << 30  # gbp_pull.bidir_pull's level-buffer budget


def _distinct(support: float, draws: int) -> float:
    if support <= 1:
        return min(1.0, draws)
    return support * -math.expm1(draws * math.log1p(-1.0 / support))


def walk_entries(n: int, nnz: int, targets: int, walks: int, levels: int) -> list[float]:
    """Expected distinct (target, node) entries per level j = 1..L."""
    d = max(nnz / max(n, 1), 1.0)
    return [targets * _distinct(min(float(n), d**j), walks) for j in range(1, levels + 1)]


def project(
    n: int,
    nnz: int,
    features: int,
    targets: int,
    walks: int,
    levels: int = 4,
    threads: int = 1,
    mode: str = "pull",
    chunk: int | None = None,
    width: int = 16,
    touched: float = 1.0,
    base: float = BASE,
    on_disk: bool | None = None,
    pull_budget: float = PULL_BUDGET,
) -> dict[str, float]:
    """Projected peak bytes of one bidirectional precompute and its parts (see the module doc).

    on_disk: features kept in a column file and read by chunks (the Friendster loader does so above
    mlkit.graph.io.FEATURES_IN_RAM; None = decide by that threshold)."""
    d = max(nnz / max(n, 1), 1.0)
    ptr_b = 4 if nnz <= 2**31 - 1 else 8
    graph = (n + 1) * ptr_b + nnz * 4.0
    from mlkit.graph.io import FEATURES_IN_RAM

    feats = n * features * 4.0
    if on_disk or (on_disk is None and feats > FEATURES_IN_RAM):
        feats = 0.0
    cols = features if chunk is None else min(features, chunk)
    xt = n * cols * 4.0
    per_level = walk_entries(n, nnz, targets, walks, levels)
    e = sum(per_level)
    widest = max(per_level + [1.0])
    packed = levels * widest * 16.0 + levels * (targets + 1) * 8.0
    tb = min(BATCH, targets)
    batch = tb * levels * walks * 4.0 + levels * widest * (tb / max(targets, 1)) * 16.0
    walk_phase = 2 * e * 16.0 + batch
    pack_phase = e * 16.0 + packed
    if mode == "pull":
        ball = [min(float(n), targets * d**k) for k in range(levels + 1)]
        rows = sum(ball)
        inner = ball[levels - 1] if levels > 0 else 0.0
        w = max(1, min(64, cols, int(pull_budget // max(rows * 4, 1))))
        kernel = (14.0 * n + 8.0 * ball[-1] + inner * (8.0 + 8.0 + 4.0 * d) + rows * w * 4.0
                  + targets * w * 8.0 + levels * widest * 4.0)  # fmt: skip
    else:
        workers = max(1, min(threads, math.ceil(cols / width)))
        slots = touched * n
        cap = 2 ** math.ceil(math.log2(max(slots, 1024)))
        hcap = 2 ** math.ceil(math.log2(max(2 * slots, 2048)))
        u = min(float(n), e + targets)
        per_worker = cap * (levels * width * 8.0 + width * 8.0 + levels + 1 + 8.0) + hcap * 16.0 + \
            2 * cap * 8.0 + u * width * 8.0  # fmt: skip
        kernel = workers * per_worker + levels * widest * 4.0 + 2.0 * u * 8.0
    out = 2.0 * features * targets * 4.0
    kernel += 48.0 * n  # degrees, d^-r, d^r, 1/d (float64) and their temporaries
    inputs = graph + feats + xt
    peak = base + inputs + max(walk_phase, pack_phase, packed + kernel + out)
    return {"peak": peak, "base": base, "graph": graph, "features": feats, "features_t": xt,
            "walk_entries": e, "walks": max(walk_phase, pack_phase), "kernel": kernel + packed, "out": out}  # fmt: skip


def describe(p: dict[str, float]) -> str:
    """The projection as 'name GiB' lines (walk entries as a count)."""
    lines = [f"{k:>12}: {v / 2**30:8.2f} GiB" for k, v in p.items() if k != "walk_entries"]
    lines.append(f"{'walk entries':>12}: {p['walk_entries']:.3g}")
    return "\n".join(lines)
