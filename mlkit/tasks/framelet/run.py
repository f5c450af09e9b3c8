"""train / evaluate / predict for the framelet task. Node classification lives here; graph-level runs
(UFGPool and pooling baselines on TU data) in graphs.py.

Node protocol (spec 2.8): full batch, NLL on the training nodes, Adam with weight decay on every parameter,
`epochs` epochs; after every epoch an eval-mode forward gives val/test accuracy and the epoch with strictly
higher val accuracy is kept. `reps` repetitions with fresh initialisation continue one RNG stream; metrics
are the mean and std over reps. Repetition 0 runs inside EpochLoop (results.csv, best.pt/last.pt, resume):
the saved weights are repetition 0's best epoch (metrics key saved_rep = 0).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

from mlkit.core.errors import DataError, UsageError
from mlkit.core.runtime import Ctx
from mlkit.core.trainer import EpochLoop
from mlkit.tasks.framelet import data as D
from mlkit.tasks.framelet import framelets as F
from mlkit.tasks.framelet.model import GCN, MLP, Features, FrameletOp, UFGNet, gcn_adjacency


def _dtype(cfg: dict[str, Any]) -> torch.dtype:
    return torch.float64 if cfg["dtype"] == "float64" else torch.float32


def build_framelet(cfg: dict[str, Any], adj: Any, ctx: Ctx | None = None) -> F.Framelet:
    f = cfg["framelet"]
    fw = F.build(
        adj,
        frame=f["frame"],
        lev=int(f["lev"]),
        s=float(f["s"]),
        n=int(f["n"]),
        operator=f["operator"],
        max_nnz=int(f["max_nnz"]),
        lam_method=str(f["lambda_max"]),
        seed=int(cfg["seed"]),
        cache=bool(f["cache"]),
        cache_root=f["cache_dir"],
    )
    if ctx is not None:
        ctx.log(
            f"framelet: {f['frame']} r={fw.r} Lev={f['lev']} s={f['s']} n={f['n']} lambda_max={fw.lam_max:.5f} "
            f"blocks={fw.num_blocks} operator={fw.operator}"
            + (f" nnz={fw.stacked.nnz:,}" if fw.stacked is not None else "")
        )
    return fw


class NodeSetup:
    """Tensors, graph operator and model factory of one node-classification run."""

    def __init__(self, cfg: dict[str, Any], ctx: Ctx, g: Any, verbose: bool = True) -> None:
        self.cfg, self.ctx, self.g = cfg, ctx, g
        dev, dt = ctx.device, _dtype(cfg)
        self.x = Features(g.features, dev, dt)
        self.y = torch.from_numpy(np.array(g.labels, dtype=np.int64)).to(dev)
        self.idx = {
            k: torch.from_numpy(np.array(v, dtype=np.int64)).to(dev)
            for k, v in (("train", g.train_idx), ("val", g.val_idx), ("test", g.test_idx))
        }
        self.classes = int(g.labels.max()) + 1
        adj = g.to_scipy()
        arch = cfg["arch"]
        self.fw = None
        if arch.startswith("ufg"):
            self.fw = build_framelet(cfg, adj, ctx if verbose else None)
            if verbose and cfg["framelet"]["n"] <= 3 and g.num_nodes <= 50_000:
                rng = np.random.default_rng(0)
                ctx.log(
                    f"framelet: reconstruction error ||sum W^T W x - x|| / ||x|| = "
                    f"{self.fw.tightness(rng.standard_normal((g.num_nodes, 4))):.3f} (0 = tight frame)"
                )
            self.op: Any = FrameletOp(self.fw, dev, dt)
        elif arch == "gcn":
            from mlkit.kernels.spmm import to_torch_csr

            self.op = to_torch_csr(gcn_adjacency(adj), dt, dev)
        else:
            self.op = None

    def model(self) -> torch.nn.Module:
        cfg, m = self.cfg, self.cfg["model"]
        fin, hid, drop = self.g.features.shape[1], int(m["hidden"]), float(m["dropout"])
        arch = cfg["arch"]
        if arch.startswith("ufg"):
            sh = cfg["shrinkage"]
            net: torch.nn.Module = UFGNet(
                fin,
                hid,
                self.classes,
                self.fw.num_blocks,
                self.g.num_nodes,
                drop,
                relu=arch == "ufg-r",
                theta=m["theta"],
                shrinkage=sh["mode"] if arch == "ufg-s" else None,
                sigma=float(sh["sigma"]),
                scaling=sh["threshold_scaling"],
            )
        elif arch == "gcn":
            net = GCN(fin, hid, self.classes, drop)
        else:
            net = MLP(fin, hid, self.classes, drop)
        return net.to(self.ctx.device, _dtype(cfg))

    def scores(self, model: torch.nn.Module) -> dict[str, float]:
        model.eval()
        with torch.no_grad():
            logp = torch.log_softmax(model(self.x, self.op), 1)
        out = {}
        for split in ("val", "test"):
            i = self.idx[split]
            out[f"{split}/acc"] = (
                float((logp[i].argmax(1) == self.y[i]).float().mean()) if len(i) else float("nan")
            )
        out["val/loss"] = float(torch.nn.functional.nll_loss(logp[self.idx["val"]], self.y[self.idx["val"]]))
        if getattr(getattr(model, "conv1", None), "shrinkage", None):
            out["shrink/zero_frac"] = model.zero_fraction()
        return out

    def fit(
        self,
        model: torch.nn.Module,
        run_cfg: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, float]:
        """Train one repetition (inside EpochLoop when run_cfg is given); return the best-val-accuracy epoch's
        metrics with the model's weights left at that epoch."""
        cfg = self.cfg
        opt = torch.optim.Adam(
            model.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"])
        )
        loop = None
        if run_cfg is not None:
            loop = EpochLoop(self.ctx, run_cfg, model, opt, monitor="val/acc", mode="max", extra=extra)
        self.loop = loop
        best: dict[str, float] = {"val/acc": 0.0}
        best_state = None
        epochs = loop if loop is not None else range(int(cfg["epochs"]))
        tr = self.idx["train"]
        for epoch in epochs:
            model.train()
            opt.zero_grad()
            loss = torch.nn.functional.nll_loss(torch.log_softmax(model(self.x, self.op), 1)[tr], self.y[tr])
            loss.backward()
            opt.step()
            metrics = {"train/loss": float(loss.detach()), **self.scores(model)}
            if loop is not None:
                loop.log(metrics)
            if metrics["val/acc"] > best["val/acc"]:
                best = {**metrics, "epoch": float(epoch)}
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if loop is not None:
            model.load_state_dict(loop.best_state())
            best = {**self.scores(model), "epoch": float(loop.best_epoch)}
        elif best_state is not None:
            model.load_state_dict(best_state)
        return best


def _extra(cfg: dict[str, Any], g: Any, classes: int) -> dict[str, Any]:
    return {"num_nodes": int(g.num_nodes), "graph_key": F.graph_key(g.to_scipy()), "classes": int(classes)}


def train(cfg: dict, ctx: Ctx) -> dict:
    cfg_r = D.resolve(cfg)
    if D.graph_level(cfg_r):
        from mlkit.tasks.framelet.graphs import train_graphs

        return train_graphs(cfg, cfg_r, ctx)
    g = D.load_nodes(cfg_r)
    if cfg["data"] is None and ctx.run_dir is not None and ctx.is_main:
        from mlkit.graph.io import save_generic

        rows = np.repeat(np.arange(g.num_nodes), np.diff(g.indptr))
        keep = rows < g.indices
        save_generic(
            ctx.run_dir / "data",
            np.stack([rows[keep], g.indices[keep]], 1),
            g.num_nodes,
            g.features,
            g.labels,
            {"train": g.train_idx, "val": g.val_idx, "test": g.test_idx},
            name=g.name,
        )
    ctx.log(
        f"data: {g.name} N={g.num_nodes:,} edges={g.num_edges // 2:,} F={g.features.shape[1]} "
        f"classes={int(g.labels.max()) + 1} split={len(g.train_idx)}/{len(g.val_idx)}/{len(g.test_idx)}"
    )
    setup = NodeSetup(cfg_r, ctx, g)
    reps = int(cfg_r["reps"])
    results = []
    for rep in ctx.track(range(reps), "repetitions"):
        model = setup.model()
        if rep == 0:
            res = setup.fit(model, cfg, _extra(cfg_r, g, setup.classes))
            loop = setup.loop
        else:
            res = setup.fit(model)
        results.append(res)
        ctx.log(
            f"rep {rep + 1}/{reps}: best epoch {int(res['epoch']) + 1}  val/acc {res['val/acc']:.4f}  "
            f"test/acc {res['test/acc']:.4f}"
        )
    out = summarize(results)
    out["saved_rep"] = 0.0
    ctx.log(
        f"test/acc {out['test/acc']:.4f} +- {out['test/acc_std']:.4f} over {reps} reps (weights saved: rep 1)"
    )
    return loop.finish(out)


def summarize(results: list[dict[str, float]]) -> dict[str, float]:
    """Mean and (population) std over repetitions of every metric; rep 0's accuracies kept as rep0/*."""
    out: dict[str, float] = {}
    for key in results[0]:
        if key == "epoch":
            continue
        vals = np.array([r[key] for r in results], dtype=np.float64)
        out[key] = float(vals.mean())
        out[f"{key}_std"] = float(vals.std())
    out["reps"] = float(len(results))
    out["rep0/val/acc"] = results[0].get("val/acc", float("nan"))
    out["rep0/test/acc"] = results[0].get("test/acc", float("nan"))
    return out


def _restore_node(cfg: dict, ctx: Ctx, ckpt: dict) -> tuple[NodeSetup, torch.nn.Module]:
    cfg_r = D.resolve(cfg)
    g = D.load_nodes(cfg_r)
    extra = ckpt.get("extra", {})
    if extra.get("num_nodes") not in (None, g.num_nodes):
        raise DataError(
            f"the model was trained on a graph with {extra['num_nodes']} nodes, this one has {g.num_nodes}",
            str(cfg["data"]),
            "UFGConv with per-node theta is transductive: use the training graph.",
        )
    setup = NodeSetup(cfg_r, ctx, g, verbose=False)
    model = setup.model()
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return setup, model


def evaluate(cfg: dict, ctx: Ctx, ckpt: dict) -> dict:
    if D.graph_level(D.resolve(cfg)):
        from mlkit.tasks.framelet.graphs import evaluate_graphs

        return evaluate_graphs(cfg, ctx, ckpt)
    setup, model = _restore_node(cfg, ctx, ckpt)
    return setup.scores(model)


def _ids(records: Iterable[str], limit: int, what: str) -> Iterator[tuple[int, str]]:
    for n, line in enumerate(records, 1):
        text = line.strip()
        try:
            i = int(text)
        except ValueError:
            raise DataError(
                f"bad {what} id '{text}'", f"input line {n}", f"Write one integer {what} id per line."
            ) from None
        if not 0 <= i < limit:
            raise DataError(
                f"{what} id {i} out of range 0..{limit - 1}",
                f"input line {n}",
                f"Use ids of the {what}s the model knows.",
            )
        yield i, text


def predict(cfg: dict, ctx: Ctx, ckpt: dict, records: Iterable[str]) -> Iterator[dict]:
    if D.graph_level(D.resolve(cfg)):
        from mlkit.tasks.framelet.graphs import predict_graphs

        yield from predict_graphs(cfg, ctx, ckpt, records)
        return
    setup: NodeSetup | None = None
    probs = None
    for i, _text in _ids(records, 2**62, "node"):
        if probs is None:  # first record: run the one full-graph forward pass
            setup, model = _restore_node(cfg, ctx, ckpt)
            with torch.no_grad():
                probs = torch.softmax(model(setup.x, setup.op), 1).cpu().numpy()
        if i >= probs.shape[0]:
            raise DataError(
                f"node id {i} out of range 0..{probs.shape[0] - 1}", "input", "Use ids of the training graph."
            )
        p = probs[i]
        yield {"node": i, "pred": int(p.argmax()), "prob": [round(float(v), 6) for v in p]}


__all__ = ["UsageError", "evaluate", "predict", "train"]
