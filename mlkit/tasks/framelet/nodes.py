"""Node classification (spec 2.8): tensors, the graph operator and the model factory of one graph.

Protocol: full batch, NLL on the training nodes, Adam with weight decay on every parameter; after every epoch
an eval-mode forward gives val/test accuracy (the runner keeps the epoch with the highest val accuracy).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mlkit.core.errors import DataError
from mlkit.core.runtime import Ctx
from mlkit.core.task import TrainState
from mlkit.tasks.framelet import data as D
from mlkit.tasks.framelet import framelets as F
from mlkit.tasks.framelet.model import GCN, MLP, Features, FrameletOp, UFGNet, gcn_adjacency


def dtype_of(cfg: dict[str, Any]) -> torch.dtype:
    """The torch dtype of cfg['dtype']."""
    return torch.float64 if cfg["dtype"] == "float64" else torch.float32


def build_framelet(cfg: dict[str, Any], adj: Any, ctx: Ctx | None = None) -> F.Framelet:
    """The framelet transform of the config on one graph (cached on disk when framelet.cache)."""
    f = cfg["framelet"]
    fw = F.build(adj, frame=f["frame"], lev=int(f["lev"]), s=float(f["s"]), n=int(f["n"]),
                 operator=f["operator"], max_nnz=int(f["max_nnz"]), lam_method=str(f["lambda_max"]),
                 seed=int(cfg["seed"]), cache=bool(f["cache"]), cache_root=f["cache_dir"])  # fmt: skip
    if ctx is not None:
        ctx.log(
            f"framelet: {f['frame']} r={fw.r} Lev={f['lev']} s={f['s']} n={f['n']} "
            f"lambda_max={fw.lam_max:.5f} blocks={fw.num_blocks} operator={fw.operator}"
            + (f" nnz={fw.stacked.nnz:,}" if fw.stacked is not None else "")
        )
    return fw


class NodeSetup:
    """Tensors, graph operator and model factory of one node-classification run, and its per-epoch steps."""

    what = "node"

    @classmethod
    def load(cls, cfg: dict[str, Any], ctx: Ctx, verbose: bool = True) -> NodeSetup:
        """Load the graph of cfg (--data, or the cached embedded default) and set it up."""
        g = D.load_nodes(cfg)
        if getattr(g, "source", ""):
            ctx.log(f"read {g.source}")
        if verbose:
            split = f"{len(g.train_idx)}/{len(g.val_idx)}/{len(g.test_idx)}"
            ctx.log(
                f"data: {g.name} N={g.num_nodes:,} edges={g.num_edges // 2:,} F={g.features.shape[1]} "
                f"classes={int(g.labels.max()) + 1} split={split}"
            )
        return cls(cfg, ctx, g, verbose)

    def __init__(self, cfg: dict[str, Any], ctx: Ctx, g: Any, verbose: bool = True) -> None:
        self.cfg, self.ctx, self.g = cfg, ctx, g
        dev, dt = ctx.device, dtype_of(cfg)
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
        self.probs: np.ndarray | None = None  # predict: softmax of one full-graph forward, computed once
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

    @property
    def count(self) -> int:
        return int(self.g.num_nodes)

    def extra(self) -> dict[str, Any]:
        """Checkpoint extras: the graph the (transductive) model was trained on."""
        key = F.graph_key(self.g.to_scipy())
        return {"num_nodes": int(self.g.num_nodes), "graph_key": key, "classes": self.classes}

    def check(self, extra: dict[str, Any]) -> None:
        """Refuse a checkpoint trained on another graph (per-node theta is transductive)."""
        if extra.get("num_nodes") not in (None, self.g.num_nodes):
            raise DataError(
                f"the model was trained on a graph with {extra['num_nodes']} nodes, "
                f"this one has {self.count}",
                str(self.cfg["data"]),
                "UFGConv with per-node theta is transductive: use the training graph.",
            )
        if extra.get("classes") is not None:
            from mlkit.core.data import check_classes

            check_classes(self.classes, int(extra["classes"]), str(self.cfg["data"]))
            self.classes = int(extra["classes"])  # fewer classes in the data: the model keeps its own outputs

    def model(self) -> torch.nn.Module:
        cfg, m = self.cfg, self.cfg["model"]
        fin, hid, drop = self.g.features.shape[1], int(m["hidden"]), float(m["dropout"])
        arch = cfg["arch"]
        if arch.startswith("ufg"):
            sh = cfg["shrinkage"]
            net: torch.nn.Module = UFGNet(
                fin, hid, self.classes, self.fw.num_blocks, self.g.num_nodes, drop, relu=arch == "ufg-r",
                theta=m["theta"], shrinkage=sh["mode"] if arch == "ufg-s" else None, sigma=float(sh["sigma"]),
                scaling=sh["threshold_scaling"],
            )  # fmt: skip
        elif arch == "gcn":
            net = GCN(fin, hid, self.classes, drop)
        else:
            net = MLP(fin, hid, self.classes, drop)
        return net.to(self.ctx.device, dtype_of(cfg))

    def train_epoch(self, st: TrainState) -> dict[str, float]:
        """One full-batch training step (= one epoch)."""
        tr, model = self.idx["train"], st.model
        model.train()
        st.optimizer.zero_grad()
        loss = torch.nn.functional.nll_loss(torch.log_softmax(model(self.x, self.op), 1)[tr], self.y[tr])
        loss.backward()
        st.optimizer.step()
        st.tick()
        return {"train/loss": float(loss.detach())}

    def validate(self, st: TrainState) -> dict[str, float]:
        """val/acc, test/acc, val/loss (and shrink/zero_frac) after an epoch, as results.csv had them."""
        return self.scores(st.model)

    def test(self, st: TrainState) -> dict[str, float]:
        return self.scores(st.model)

    def evaluate(self, model: torch.nn.Module, extra: dict[str, Any]) -> dict[str, float]:
        return self.scores(model)

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

    def predict(self, model: torch.nn.Module, ids: list[int]) -> list[dict[str, Any]]:
        """Predict rows for node ids (one full-graph forward, the first time)."""
        if self.probs is None:
            with torch.no_grad():
                self.probs = torch.softmax(model(self.x, self.op), 1).cpu().numpy()
        p = self.probs
        return [
            {"id": i, "label": int(p[i].argmax()), "probs": [round(float(v), 6) for v in p[i]]} for i in ids
        ]
