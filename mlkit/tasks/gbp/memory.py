"""`mlkit gbp precompute --dry-run` and the line the bidirectional precompute logs first: the memory model's
projection (mlkit.kernels.gbp_memory) for this graph, its parameters and the thread count."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlkit.graph.graph import Graph


def projection(graph: Graph, prop: dict[str, Any], targets: np.ndarray | None, seed: int = 0) -> dict[str, Any]:
    """The memory model's projected peak of this propagation (kernels.gbp_memory), in GiB per part."""
    import numba

    from mlkit.kernels import gbp_memory as gm
    from mlkit.tasks.gbp.precompute import loops_to_add, plan, thresholds_of, xt_chunk

    est, w, _, tgt = plan(graph, prop, targets, seed)
    n = graph.num_nodes
    nnz = int(np.asarray(graph.indptr)[-1]) + (n if loops_to_add(graph, prop) else 0)
    f = 0 if graph.features is None else int(graph.features.shape[1])
    threads = int(prop.get("threads", 0)) or numba.config.NUMBA_NUM_THREADS
    mode = "pull" if thresholds_of(prop) == "original" else "push"
    t = n if tgt is None else int(tgt.shape[0])
    p = gm.project(n, nnz, f, t, int(prop["walks"]), len(w) - 1, threads, mode, chunk=xt_chunk(n, f),
                   on_disk=hasattr(graph.features, "columns"),
                   pull_budget=float(prop.get("pull_memory", 1.0)) * 2**30)  # fmt: skip
    out = {k: round(v / 2**30, 3) for k, v in p.items() if k != "walk_entries"}
    return {"estimator": est, "nodes": n, "entries": nnz, "features": f, "targets": t, "threads": threads,
            "mode": mode, "walk_entries": int(p["walk_entries"]), "projected_gib": out}  # fmt: skip
