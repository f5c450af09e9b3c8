"""mlkit gbp train | eval | predict: precompute propagated features (cached), then train the GnnBP MLP (spec §2.4).

Top-down: config (preset) -> graph -> propagated rows (memory-mapped cache) -> model -> Adam loop with early
stopping on validation micro-F1 -> test with the best weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from mlkit.core.errors import DataError
from mlkit.core.metrics import accuracy, micro_f1
from mlkit.core.runtime import Ctx, seed_everything
from mlkit.core.trainer import EpochLoop
from mlkit.graph.graph import Graph
from mlkit.tasks.gbp.data import SPLITS, SplitRows, apply_preset, build_rows, labels_of, load_dataset
from mlkit.tasks.gbp.model import GnnBP


# ------------------------------------------------------------------------------------ pieces
def build_model(cfg: dict[str, Any], in_dim: int, out_dim: int) -> GnnBP:
    m = cfg["model"]
    return GnnBP(
        in_dim,
        int(m["hidden"]),
        out_dim,
        int(m["layers"]),
        float(m["dropout"]),
        str(m["bias"]),
        bool(m["residual"]),
    )


def timing_table(rows: SplitRows, load_s: float) -> Any:
    """The precompute timing breakdown as a rich Table."""
    from rich.table import Table

    table = Table(title="gbp precompute")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_row("load", f"{load_s:.3f}")
    for tag, res in (("", rows.full), ("train subgraph ", rows.train)):
        if res is None:
            continue
        for k, v in res.timings.items():
            table.add_row(f"{tag}{k} ({res.estimator})", f"{v:.3f}")
    return table


def prepare(cfg: dict[str, Any], ctx: Ctx, run_dir: Any) -> tuple[Graph, SplitRows]:
    """Graph and rows; under torchrun rank 0 builds (and caches) them first, the others then read the cache."""
    import time

    rows = None
    g = None
    for turn in (0,) if not ctx.dist.enabled else (0, 1):
        if ctx.dist.enabled and (turn == 0) != ctx.is_main:
            ctx.barrier()
            continue
        t0 = time.perf_counter()
        g = load_dataset(cfg, run_dir, ctx.log)
        load_s = time.perf_counter() - t0
        rows = build_rows(cfg, g, ctx.device, ctx.log)
        if ctx.is_main and not ctx.quiet:
            ctx.console.print(timing_table(rows, load_s))
        if ctx.dist.enabled:
            ctx.barrier()
    assert g is not None and rows is not None
    return g, rows


def scores(model: nn.Module, x: np.ndarray, device: str, batch: int) -> np.ndarray:
    """Logits for rows x (eval mode, no grad), in chunks."""
    model.eval()
    outs = []
    with torch.no_grad():
        for s in range(0, x.shape[0], batch):
            xb = torch.from_numpy(np.ascontiguousarray(x[s : s + batch], dtype=np.float32)).to(device)
            outs.append(model(xb).float().cpu().numpy())
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)


def decide(logits: np.ndarray, multilabel: bool) -> np.ndarray:
    return (logits > 0).astype(np.int64) if multilabel else logits.argmax(1)


def split_metrics(
    model: nn.Module,
    g: Graph,
    rows: SplitRows,
    cfg: dict[str, Any],
    device: str,
    splits: Iterable[str] = SPLITS,
) -> dict[str, float]:
    """micro-F1 (== accuracy for multiclass) and accuracy (per label entry when multilabel) per split."""
    out: dict[str, float] = {}
    for s in splits:
        ids = getattr(g, f"{s}_idx")
        pred = decide(
            scores(model, rows.rows(g, s), device, int(cfg["train"]["eval_batch_size"])), g.multilabel
        )
        gold = labels_of(g, ids)
        out[f"{s}/f1"] = micro_f1(pred, gold)
        out[f"{s}/acc"] = accuracy(pred, gold)
    return out


# ------------------------------------------------------------------------------------ train
def train(cfg: dict[str, Any], ctx: Ctx) -> dict[str, float]:
    """Precompute, then train GnnBP with Adam and early stopping on val micro-F1; test with the best weights."""
    cfg = apply_preset(cfg)
    if int(cfg["seed"]) != ctx.seed:  # a preset's seed (the original scripts' 20159) replaces the default 0
        seed_everything(int(cfg["seed"]), bool(cfg["deterministic"]))
        ctx.seed = int(cfg["seed"])
    g, rows = prepare(cfg, ctx, ctx.run_dir)
    device = ctx.device
    multilabel = g.multilabel
    n_cls = g.num_classes
    in_dim = rows.full.rows.shape[1]
    model = build_model(cfg, in_dim, n_cls).to(device)
    net = ctx.wrap(model)
    opt = torch.optim.Adam(
        model.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg["train"]["weight_decay"])
    )
    loss_fn: nn.Module = nn.BCEWithLogitsLoss() if multilabel else nn.CrossEntropyLoss()
    extra = {
        "num_features": int(in_dim),
        "num_classes": int(n_cls),
        "multilabel": bool(multilabel),
        "graph": g.name,
        "num_nodes": int(g.num_nodes),
        "estimator": rows.full.estimator,
    }
    loop = EpochLoop(
        ctx,
        cfg,
        model,
        opt,
        monitor="val/f1",
        mode="max",
        patience=int(cfg["train"]["patience"]),
        extra=extra,
    )
    train_ids = np.asarray(g.train_idx, dtype=np.int64)
    y_train = labels_of(g, train_ids)
    inductive_rows = rows.train.rows if rows.train is not None else None
    world, rank = ctx.dist.world_size, ctx.dist.rank
    bs = max(1, int(cfg["batch_size"]) // world)
    bn = cfg["model"]["bias"] == "bn"
    for _epoch in loop:
        perm = torch.randperm(train_ids.shape[0], generator=loop.generator()).numpy()
        if ctx.dist.enabled:  # equal shares, so every rank runs the same number of steps
            perm = perm[: perm.shape[0] // world * world][rank::world]
        net.train()
        total, count = 0.0, 0
        for s in range(0, perm.shape[0], bs):
            pos = perm[s : s + bs]
            if bn and pos.shape[0] < 2:
                continue  # BatchNorm cannot normalise a single row
            if inductive_rows is not None:
                xb = np.asarray(inductive_rows[np.sort(pos)], dtype=np.float32)
                pos = np.sort(pos)
            else:
                xb = rows.full.take(train_ids[pos])
            x = torch.from_numpy(xb).to(device)
            y = torch.from_numpy(y_train[pos]).to(device)
            loss = loss_fn(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.item()) * pos.shape[0]
            count += pos.shape[0]
        val = split_metrics(model, g, rows, cfg, device, ("val",))
        loop.log({"train/loss": ctx.all_reduce_mean(total / max(count, 1)), "val/f1": val["val/f1"]})
    model.load_state_dict(loop.best_state())
    final = split_metrics(model, g, rows, cfg, device)
    return loop.finish(final)


# ------------------------------------------------------------------------------------ eval / predict
def _restore(
    cfg: dict[str, Any], ctx: Ctx, ckpt: dict[str, Any]
) -> tuple[dict[str, Any], Graph, SplitRows, GnnBP]:
    cfg = apply_preset(cfg)
    g = load_dataset(cfg, None, ctx.log)
    rows = build_rows(cfg, g, ctx.device, ctx.log)
    ex = ckpt.get("extra", {})
    if rows.full.rows.shape[1] != ex.get("num_features"):
        raise DataError(
            f"data has {rows.full.rows.shape[1]} features, the model wants {ex.get('num_features')}",
            cfg.get("data") or "synthetic",
            "Evaluate on the graph the model was trained on.",
        )
    model = build_model(cfg, int(ex["num_features"]), int(ex["num_classes"])).to(ctx.device)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return cfg, g, rows, model


def evaluate(cfg: dict[str, Any], ctx: Ctx, ckpt: dict[str, Any]) -> dict[str, float]:
    """Micro-F1 and accuracy on train, val and test."""
    cfg, g, rows, model = _restore(cfg, ctx, ckpt)
    return split_metrics(model, g, rows, cfg, ctx.device)


def predict(cfg: dict[str, Any], ctx: Ctx, ckpt: dict[str, Any], records: Iterable[str]) -> Iterator[dict]:
    """One JSON object per node id: predicted class (or labels) and probabilities."""
    cfg, g, rows, model = _restore(cfg, ctx, ckpt)
    multilabel = bool(ckpt.get("extra", {}).get("multilabel", g.multilabel))
    for rec in records:
        text = rec.strip()
        try:
            node = int(text)
        except ValueError:
            raise DataError(
                f"not a node id: {text!r}", "predict input", "Give one integer node id per line."
            ) from None
        if not 0 <= node < g.num_nodes:
            raise DataError(
                f"node {node} outside 0..{g.num_nodes - 1}", "predict input", "Give an existing node id."
            )
        x = _row(cfg, g, rows, node, ctx)
        logit = scores(model, x, ctx.device, 1)[0]
        if multilabel:
            prob = 1.0 / (1.0 + np.exp(-logit))
            yield {
                "node": node,
                "labels": np.flatnonzero(logit > 0).tolist(),
                "probs": [round(float(p), 6) for p in prob],
            }
        else:
            e = np.exp(logit - logit.max())
            prob = e / e.sum()
            yield {"node": node, "class": int(logit.argmax()), "probs": [round(float(p), 6) for p in prob]}


def _row(cfg: dict[str, Any], g: Graph, rows: SplitRows, node: int, ctx: Ctx) -> np.ndarray:
    """The propagated row of one node; a node outside the bidirectional target set is propagated on demand."""
    if rows.full.position(np.array([node]))[0] >= 0:
        return rows.full.take(np.array([node]))
    from mlkit.tasks.gbp.data import standardizer
    from mlkit.tasks.gbp.precompute import propagate_rows

    mean, std = standardizer(cfg, g)
    one = propagate_rows(
        g, cfg["propagation"], targets=np.array([node]), seed=int(cfg["seed"]), mean=mean, std=std
    )
    return np.asarray(one.rows, dtype=np.float32)
