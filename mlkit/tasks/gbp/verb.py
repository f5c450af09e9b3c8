"""`mlkit gbp precompute`: propagate and cache the rows (all, a shard, a merge, or under torchrun), or print the
memory model's projection (--dry-run)."""

from __future__ import annotations

from typing import Any

from mlkit.tasks.gbp.precompute import cache_key, merge_shards, parse_shard, plan, propagate_rows


def precompute_command(cfg: dict[str, Any], kw: dict[str, Any]) -> None:
    """`mlkit gbp precompute`: propagate and cache the rows (a shard, a merge, or all); print one JSON line.

    Under torchrun every rank computes the feature-column shard of its rank and rank 0 assembles them.
    """
    import time

    from mlkit.core.console import emit, make_console
    from mlkit.core.errors import UsageError
    from mlkit.core.runtime import close_distributed, dist_from_env, init_distributed
    from mlkit.tasks.gbp.data import (
        build_rows,
        cache_dir,
        load_dataset,
        standardizer,
        targets_of,
        timing_table,
    )

    shard, merge, quiet = kw.get("t_shard"), int(kw.get("t_merge") or 0), bool(kw.get("quiet"))
    device = kw.get("device") or "cpu"  # precompute runs on the CPU unless --device names another
    dist = dist_from_env()  # the runner starts no process group for config verbs: the shards need one
    console = make_console(quiet or dist.rank != 0)
    if shard and dist.enabled:
        raise UsageError("--shard and torchrun both pick shards", None, "Use one of them.")
    init_distributed(dist, "cpu")
    try:
        t0 = time.perf_counter()
        g = load_dataset(cfg, console.print)
        load_s = time.perf_counter() - t0
        cdir, prop, seed = cache_dir(cfg), cfg["propagation"], int(cfg["seed"])
        mean, std = standardizer(cfg, g)
        tg = targets_of(cfg, g)
        if kw.get("t_dry_run"):
            from mlkit.tasks.gbp.memory import projection

            emit(projection(g, prop, tg, seed))
            return
        common = {"targets": tg, "seed": seed, "cache_dir": cdir, "mean": mean, "std": std, "device": device,
                  "log": console.print}  # fmt: skip
        if merge or dist.enabled:
            if dist.enabled:
                import torch.distributed as tdist

                propagate_rows(g, prop, shard=(dist.rank, dist.world_size), **common)
                tdist.barrier()
            res = None
            if dist.rank == 0:
                _, _, params, tgt = plan(g, prop, tg, seed)
                key = cache_key(g, params, tgt, mean, std)
                res = merge_shards(cdir, key, merge or dist.world_size, g.num_nodes)
            if dist.enabled:
                tdist.barrier()
            if res is None:
                return
        elif shard:
            res = propagate_rows(g, prop, shard=parse_shard(shard), **common)
        else:
            rows = build_rows(cfg, g, device, console.print)
            if not quiet:
                console.print(timing_table(rows, load_s))
            res = rows.full
        nodes = None if res.nodes is None else str(res.path.with_name(res.path.stem + ".nodes.npy"))
        timings = {"load": round(load_s, 4), **{k: round(v, 4) for k, v in res.timings.items()}}
        emit({"rows": str(res.path), "nodes": nodes, "shape": list(res.rows.shape),
              "estimator": res.estimator, "timings": timings})  # fmt: skip
    finally:
        close_distributed()
