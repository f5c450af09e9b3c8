"""Extra verb of `mlkit attack`: `target` trains a built-in target model (A/B/C, ResNet-8/20/32) and writes a
target file.

A config verb: the runner merges and finalizes the config as for train (--target-arch, --set target_epochs=...,
--data). Light module: torch is imported inside the body.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def target(cfg: dict[str, Any], ctx: Any, kw: dict[str, Any]) -> None:
    """Train target_arch on the train split (the last `val` images held out), write it to --out (default
    runs/attack/target_<arch>.pt) and print one JSON object: the file and its clean test accuracy."""
    from mlkit.core.console import emit
    from mlkit.tasks.attack.sources import dataset, load_split, resolve
    from mlkit.tasks.attack.target import accuracy, save_target, train_target

    info = resolve(cfg, dataset(cfg, ctx))
    arch = info["arch"]
    out = Path(kw.get("t_out") or Path(kw.get("project") or "runs") / "attack" / f"target_{arch}.pt")
    x, y = load_split(cfg, ctx, "train")
    net = train_target(cfg, x, y, ctx.log, arch, info["k"], info["mean"], info["std"])
    acc = accuracy(net, *load_split(cfg, ctx, "test"))
    save_target(net, arch, out)
    ctx.log(f"target {arch.upper()}: clean test accuracy {acc:.4f}; use it with --target {out}")
    emit({"schema_version": 1, "task": "attack", "mode": "target", "target": str(out), "arch": arch,
          "metrics": {"test/clean_accuracy": acc}})
