"""Extra verbs of `mlkit gbp`: `synth` (write a planted-partition graph) and `precompute` (propagate and cache).

Light module: numpy, torch and the kernels are imported inside the command bodies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

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


def precompute(
    data: Optional[str] = typer.Option(  # noqa: UP045
        None, "--data", help="Dataset folder (any layout); default: the synthetic graph."
    ),  # noqa: UP045
    config: Optional[list[str]] = typer.Option(None, "--config", help="YAML config file(s)."),  # noqa: UP045
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override a config key: a.b=value."),  # noqa: UP045
    preset: Optional[str] = typer.Option(  # noqa: UP045
        None, "--preset", help="Per-dataset defaults (cora, ppi, friendster, ...)."
    ),  # noqa: UP045
    estimator: Optional[str] = typer.Option(None, "--estimator", help="auto | push | bidirectional | exact."),  # noqa: UP045
    weights: Optional[str] = typer.Option(None, "--weights", help="ppr | heat | sgc | list."),  # noqa: UP045
    alpha: Optional[float] = typer.Option(None, "--alpha", help="PPR alpha."),  # noqa: UP045
    rmax: Optional[float] = typer.Option(None, "--rmax", help="Push threshold (relative)."),  # noqa: UP045
    r: Optional[float] = typer.Option(None, "--r", help="Convolution coefficient r."),  # noqa: UP045
    walks: Optional[int] = typer.Option(None, "--walks", help="Walks per target."),  # noqa: UP045
    levels: Optional[int] = typer.Option(None, "--levels", help="Propagation steps L (0: from tol)."),  # noqa: UP045
    targets: Optional[str] = typer.Option(None, "--targets", help="splits | all | file of node ids."),  # noqa: UP045
    threads: Optional[int] = typer.Option(None, "--threads", help="Numba threads (0 = all cores)."),  # noqa: UP045
    out: Optional[str] = typer.Option(  # noqa: UP045
        None, "--out", help="Cache folder for the rows (propagation.cache_dir)."
    ),  # noqa: UP045
    shard: Optional[str] = typer.Option(None, "--shard", help="Compute column block i of N only: i/N."),  # noqa: UP045
    merge: int = typer.Option(0, "--merge", help="Merge N finished shards into the full result."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the random walks."),  # noqa: UP045
    device: str = typer.Option("cpu", "--device", help="cpu, or cuda[:N] for the exact estimator."),
    quiet: bool = typer.Option(False, "--quiet", help="No tables or info lines."),
) -> None:
    """Propagate the features (push | bidirectional | exact) and cache float32 rows; prints one JSON line.

    Under torchrun every rank computes the feature-column shard of its rank and rank 0 assembles them.
    """
    import time

    from mlkit.core.config import load_defaults, resolve
    from mlkit.core.console import emit, make_console
    from mlkit.core.data import resolve_data
    from mlkit.core.registry import get_spec
    from mlkit.core.runtime import close_distributed, dist_from_env, init_distributed
    from mlkit.tasks.gbp.data import (
        apply_preset,
        build_rows,
        cache_dir,
        load_dataset,
        standardizer,
        targets_of,
    )
    from mlkit.tasks.gbp.precompute import cache_key, merge_shards, parse_shard, plan, propagate_rows

    flags: dict[str, Any] = {
        "preset": preset,
        "propagation.estimator": estimator,
        "propagation.weights": weights,
        "propagation.alpha": alpha,
        "propagation.rmax": rmax,
        "propagation.r": r,
        "propagation.walks": walks,
        "propagation.levels": levels,
        "propagation.targets": targets,
        "propagation.threads": threads,
        "propagation.cache_dir": out,
        "seed": seed,
    }
    cfg = resolve(load_defaults("mlkit.tasks.gbp"), config or (), set_ or (), flags)
    if data:
        cfg["data"] = str(resolve_data(data, get_spec("gbp").layout).resolve())
    cfg = apply_preset(cfg)
    dist = dist_from_env()
    console = make_console(quiet or dist.rank != 0)
    init_distributed(dist, "cpu")
    try:
        t0 = time.perf_counter()
        g = load_dataset(cfg, None, console.print)
        load_s = time.perf_counter() - t0
        cdir = cache_dir(cfg)
        if shard and dist.enabled:
            from mlkit.core.errors import UsageError

            raise UsageError("--shard and torchrun both pick shards", None, "Use one of them.")
        mean, std = standardizer(cfg, g)
        tg = targets_of(cfg, g)
        if merge or dist.enabled:
            count = merge or dist.world_size
            prop = cfg["propagation"]
            if dist.enabled:
                propagate_rows(
                    g,
                    prop,
                    targets=tg,
                    seed=int(cfg["seed"]),
                    cache_dir=cdir,
                    shard=(dist.rank, dist.world_size),
                    mean=mean,
                    std=std,
                    device=device,
                    log=console.print,
                )
                import torch.distributed as tdist

                tdist.barrier()
            res = None
            if dist.rank == 0:
                _, _, params, tgt = plan(g, prop, tg, int(cfg["seed"]))
                res = merge_shards(cdir, cache_key(g, params, tgt, mean, std), count, g.num_nodes)
            if dist.enabled:
                tdist.barrier()
            if res is None:
                return
        elif shard:
            res = propagate_rows(
                g,
                cfg["propagation"],
                targets=tg,
                seed=int(cfg["seed"]),
                cache_dir=cdir,
                shard=parse_shard(shard),
                mean=mean,
                std=std,
                device=device,
                log=console.print,
            )
        else:
            rows = build_rows(cfg, g, device, console.print)
            if not quiet:
                from mlkit.tasks.gbp.run import timing_table

                console.print(timing_table(rows, load_s))
            res = rows.full
        emit(
            {
                "rows": str(res.path),
                "nodes": None if res.nodes is None else str(res.path.with_name(res.path.stem + ".nodes.npy")),
                "shape": list(res.rows.shape),
                "estimator": res.estimator,
                "timings": {"load": round(load_s, 4), **{k: round(v, 4) for k, v in res.timings.items()}},
            }
        )
    finally:
        close_distributed()
