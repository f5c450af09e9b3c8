"""GBP pieces the hooks share: the (graph, rows) data object, the model factory, chunked scoring and split metrics,
and the distributed-safe load (rank 0 builds the precompute cache first)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from mlkit.core.metrics import accuracy, micro_f1
from mlkit.core.runtime import Ctx
from mlkit.graph.graph import Graph
from mlkit.tasks.gbp.data import SPLITS, SplitRows, build_rows, labels_of, load_dataset, timing_table
from mlkit.tasks.gbp.model import GnnBP


@dataclass
class GraphRows:
    """A graph, its propagated rows, and (after restore) the model."""

    g: Graph
    rows: SplitRows
    model: GnnBP | None = None


def gnnbp(cfg: dict[str, Any], in_dim: int, out_dim: int) -> GnnBP:
    m = cfg["model"]
    return GnnBP(in_dim, int(m["hidden"]), out_dim, int(m["layers"]), float(m["dropout"]), str(m["bias"]),
                 bool(m["residual"]))  # fmt: skip


def scores(model: nn.Module, x: np.ndarray, device: str, batch: int) -> np.ndarray:
    """Logits for rows x (eval mode, no grad), in chunks."""
    model.eval()
    outs = []
    with torch.no_grad():
        for s in range(0, x.shape[0], batch):
            xb = torch.as_tensor(np.array(x[s : s + batch], dtype=np.float32), device=device)  # copy: may be a memmap
            outs.append(model(xb).float().cpu().numpy())
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)


def split_metrics(model: nn.Module, d: GraphRows, cfg: dict, device: str, splits: tuple = SPLITS) -> dict:
    """micro-F1 (== accuracy for multiclass) and accuracy (per label entry when multilabel) per split."""
    out: dict[str, float] = {}
    for s in splits:
        logits = scores(model, d.rows.rows(d.g, s), device, int(cfg["train"]["eval_batch_size"]))
        pred = (logits > 0).astype(np.int64) if d.g.multilabel else logits.argmax(1)
        gold = labels_of(d.g, getattr(d.g, f"{s}_idx"))
        out[f"{s}/f1"] = micro_f1(pred, gold)
        out[f"{s}/acc"] = accuracy(pred, gold)
    return out


def load(cfg: dict[str, Any], ctx: Ctx) -> GraphRows:
    """Graph and rows; under torchrun rank 0 builds (and caches) them, then the other ranks read the cache."""
    d = None
    for turn in (0,) if not ctx.dist.enabled else (0, 1):
        if ctx.dist.enabled and (turn == 0) != ctx.is_main:
            ctx.barrier()
            continue
        t0 = time.perf_counter()
        g = load_dataset(cfg, ctx.log)
        load_s = time.perf_counter() - t0
        d = GraphRows(g, build_rows(cfg, g, ctx.device, ctx.log))
        if ctx.is_main and not ctx.quiet:
            ctx.console.print(timing_table(d.rows, load_s))
        if ctx.dist.enabled:
            ctx.barrier()
    assert d is not None
    return d
