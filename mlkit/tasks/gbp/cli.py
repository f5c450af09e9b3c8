"""Extra verbs of `mlkit gbp`: `synth` (write a planted-partition graph) and `precompute` (propagate, cache).

`precompute` is a config verb: the runner merges and finalizes the config (presets included) as for train.

Light module: numpy, torch and the kernels are imported inside the command bodies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def synth(
    out: Path = typer.Option(..., "--out", help="Folder to write the graph into (generic layout)."),
    nodes: int = typer.Option(100_000, "--nodes", help="Number of nodes."),
    classes: int = typer.Option(5, "--classes", help="Communities = classes."),
    features: int = typer.Option(16, "--features", help="Feature dimensions."),
    degree: float = typer.Option(5.0, "--degree", help="Edge draws per node (plus a ring edge)."),
    train: float = typer.Option(0.01, "--train", help="Fraction of nodes in the train split."),
    val: float = typer.Option(0.01, "--val", help="Fraction of nodes in the validation split."),
    test: float = typer.Option(0.02, "--test", help="Fraction of nodes in the test split."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    quiet: bool = typer.Option(False, "--quiet", help="No info lines."),
) -> None:
    """Write a degree-corrected planted-partition graph (spec §3), streamed to disk; prints the folder."""
    import sys
    import time

    from mlkit.core.console import make_console
    from mlkit.core.errors import UsageError
    from mlkit.graph.synth import planted_partition

    if nodes < 2 or classes < 1 or features < 1 or degree < 0:
        raise UsageError("need --nodes >= 2, --classes >= 1, --features >= 1, --degree >= 0")
    console = make_console(quiet)
    t0 = time.perf_counter()
    planted_partition(
        out,
        nodes,
        classes,
        features,
        degree,
        fracs=(train, val, test),
        seed=seed,
        progress=lambda m: console.print(f"synth: {m}"),
    )
    console.print(f"wrote {out} in {time.perf_counter() - t0:.1f} s")
    sys.stdout.write(f"{out}\n")


def precompute(cfg: dict[str, Any], ctx: Any, kw: dict[str, Any]) -> None:
    """Propagate the features (push | bidirectional | exact) and cache float32 rows; prints one JSON line.

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
    from mlkit.tasks.gbp.precompute import cache_key, merge_shards, parse_shard, plan, propagate_rows

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
