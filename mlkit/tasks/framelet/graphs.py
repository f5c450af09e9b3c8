"""Graph-level runs (spec 2.9): UFGPool-SUM / -Spectrum and mean/sum pooling baselines on TU data.

Per graph, precomputed once: the GCN adjacency D~^-1/2 (A+I) D~^-1/2 and the materialized pooling operator
P_i = vstack[W_{0,Lev}; W_{1,1..Lev}; ...] (K N_i x N_i). A mini-batch stacks them block-diagonally.
Protocol per repetition: fresh random 80/10/10 split, Adam, loss summed over the batch (cross-entropy, or MSE
on standardised targets for regression), ReduceLROnPlateau(0.7, 5) on the val loss, early stop after
graph.patience epochs without val-loss improvement, test the best-val-loss weights. Repetition 0 runs
inside EpochLoop and its best weights are saved (saved_rep = 0).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from mlkit.core.errors import DataError
from mlkit.core.runtime import Ctx
from mlkit.core.trainer import EpochLoop
from mlkit.kernels.spmm import to_torch_csr
from mlkit.tasks.framelet import data as D
from mlkit.tasks.framelet import framelets as F
from mlkit.tasks.framelet.model import GraphNet, gcn_adjacency


class Prepared:
    """Per-graph operators plus batching."""

    def __init__(self, cfg: dict[str, Any], ds: Any, ctx: Ctx) -> None:
        self.cfg, self.ds, self.ctx = cfg, ds, ctx
        f = cfg["framelet"]
        self.adj, self.pool = [], []
        self.blocks = (len(F.masks(f["frame"])) - 1) * int(f["lev"]) + 1
        for g in ctx.track(ds.graphs, "framelet operators"):
            a = g.to_scipy()
            self.adj.append(sp.coo_matrix(gcn_adjacency(a)))
            if cfg["arch"] == "ufgpool":
                fw = F.build(
                    a,
                    frame=f["frame"],
                    lev=int(f["lev"]),
                    s=float(f["s"]),
                    n=int(f["n"]),
                    operator="materialized",
                    lam_method=str(f["lambda_max"]),
                    seed=int(cfg["seed"]),
                )
                self.pool.append(sp.coo_matrix(fw.stacked))
        self.dtype = torch.float64 if cfg["dtype"] == "float64" else torch.float32
        t = ds.targets
        if ds.regression:
            self.mean, self.std = t.mean(0), t.std(0) + 1e-12
        self.out_dim = t.shape[1] if ds.regression else ds.num_classes

    def batch(self, ids: np.ndarray) -> tuple:
        dev, dt = self.ctx.device, self.dtype
        sizes = np.array([self.ds.graphs[i].num_nodes for i in ids])
        offs = np.concatenate([[0], np.cumsum(sizes)])
        total = int(offs[-1])
        x = torch.from_numpy(np.concatenate([self.ds.graphs[i].features for i in ids])).to(dev, dt)
        rows = np.concatenate([self.adj[i].row + offs[k] for k, i in enumerate(ids)])
        cols = np.concatenate([self.adj[i].col + offs[k] for k, i in enumerate(ids)])
        vals = np.concatenate([self.adj[i].data for i in ids])
        adj = to_torch_csr(sp.csr_matrix((vals, (rows, cols)), shape=(total, total)), dt, dev)
        batch = torch.from_numpy(np.repeat(np.arange(len(ids)), sizes)).to(dev)
        pool = None
        if self.pool:
            k = self.blocks
            r, c, v = [], [], []
            for j, i in enumerate(ids):
                p, n = self.pool[i], sizes[j]
                blk, local = p.row // n, p.row % n
                r.append(blk * total + offs[j] + local)
                c.append(p.col + offs[j])
                v.append(p.data)
            m = sp.csr_matrix(
                (np.concatenate(v), (np.concatenate(r), np.concatenate(c))), shape=(k * total, total)
            )
            pool = (to_torch_csr(m, dt, dev), to_torch_csr(m.T, dt, dev))
        t = self.ds.targets[ids]
        if self.ds.regression:
            y = torch.from_numpy(((t - self.mean) / self.std).astype(np.float64)).to(dev, dt)
        else:
            y = torch.from_numpy(t).to(dev)
        return x, adj, batch, len(ids), pool, y

    def model(self) -> GraphNet:
        m = self.cfg["model"]
        net = GraphNet(
            self.ds.num_features,
            int(m["hidden"]),
            self.out_dim,
            float(m["dropout"]),
            self.cfg["arch"],
            self.blocks,
            self.cfg["pool"]["readout"],
        )
        return net.to(self.ctx.device, self.dtype)

    def run(self, model: GraphNet, ids: np.ndarray, opt: Any = None, gen: Any = None) -> dict[str, float]:
        """One pass over `ids` (training when opt is given); summed loss, accuracy or MAE."""
        bs = int(self.cfg["batch_size"])
        if opt is not None:
            ids = ids[torch.randperm(len(ids), generator=gen).numpy()]
        model.train(opt is not None)
        loss_sum, correct, abs_err = 0.0, 0, 0.0
        for s in range(0, len(ids), bs):
            x, adj, batch, ng, pool, y = self.batch(ids[s : s + bs])
            with torch.set_grad_enabled(opt is not None):
                out = model(x, adj, batch, ng, pool)
                if self.ds.regression:
                    loss = torch.nn.functional.mse_loss(out, y, reduction="sum")
                else:
                    loss = torch.nn.functional.cross_entropy(out, y, reduction="sum")
            if opt is not None:
                opt.zero_grad()
                loss.backward()
                opt.step()
            loss_sum += float(loss.detach())
            if self.ds.regression:
                abs_err += float(
                    (
                        (out.detach() - y).abs()
                        * torch.as_tensor(self.std, dtype=out.dtype, device=out.device)
                    ).sum()
                )
            else:
                correct += int((out.argmax(1) == y).sum())
        n = max(len(ids), 1)
        if self.ds.regression:
            return {"loss": loss_sum / n, "mae": abs_err / (n * self.out_dim)}
        return {"loss": loss_sum / n, "acc": correct / n}


def _split(n: int, fracs: list[float], rng: np.random.Generator) -> dict[str, np.ndarray]:
    perm = rng.permutation(n)
    a = int(round(fracs[0] * n))
    b = a + int(round(fracs[1] * n))
    return {"train": perm[:a], "val": perm[a:b], "test": perm[b:]}


def _fit(
    prep: Prepared, model: GraphNet, split: dict[str, np.ndarray], ctx: Ctx, run_cfg: dict | None, extra: dict
) -> tuple[dict[str, float], EpochLoop | None]:
    cfg = prep.cfg
    opt = torch.optim.Adam(model.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]))
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.7, patience=5)
    patience = int(cfg["graph"]["patience"])
    loop = None
    if run_cfg is not None:
        loop = EpochLoop(
            ctx, run_cfg, model, opt, sched, monitor="val/loss", mode="min", patience=patience, extra=extra
        )
    best, best_state, bad = float("inf"), None, 0
    epochs = loop if loop is not None else range(int(cfg["epochs"]))
    for epoch in epochs:
        gen = (
            loop.generator()
            if loop is not None
            else torch.Generator().manual_seed(int(cfg["seed"]) * 7919 + epoch)
        )
        tr = prep.run(model, split["train"], opt, gen)
        va = prep.run(model, split["val"])
        sched.step(va["loss"])
        metrics = {f"train/{k}": v for k, v in tr.items()} | {f"val/{k}": v for k, v in va.items()}
        if loop is not None:
            loop.log(metrics)
            continue
        if va["loss"] < best:
            best, bad = va["loss"], 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
            if bad >= patience:
                break
    if loop is not None:
        model.load_state_dict(loop.best_state())
    elif best_state is not None:
        model.load_state_dict(best_state)
    res = {f"val/{k}": v for k, v in prep.run(model, split["val"]).items()}
    res |= {f"test/{k}": v for k, v in prep.run(model, split["test"]).items()}
    return res, loop


def train_graphs(cfg: dict, cfg_r: dict, ctx: Ctx) -> dict:
    from mlkit.tasks.framelet.run import summarize

    ds = D.load_graphs(cfg_r)
    kind = "regression" if ds.regression else f"{ds.num_classes} classes"
    ctx.log(f"data: {ds.name} {len(ds.graphs)} graphs, F={ds.num_features}, {kind}")
    prep = Prepared(cfg_r, ds, ctx)
    rng = np.random.default_rng(int(cfg_r["seed"]))
    results, loop = [], None
    for rep in ctx.track(range(int(cfg_r["reps"])), "repetitions"):
        split = _split(len(ds.graphs), list(cfg_r["graph"]["split"]), rng)
        model = prep.model()
        extra = {
            "graph_level": True,
            "split_test": split["test"].tolist(),
            "split_val": split["val"].tolist(),
        }
        res, lp = _fit(prep, model, split, ctx, cfg if rep == 0 else None, extra)
        loop = lp or loop
        results.append(res)
        ctx.log(f"rep {rep + 1}: " + "  ".join(f"{k} {v:.4f}" for k, v in res.items()))
    out = summarize(results)
    out["saved_rep"] = 0.0
    return loop.finish(out)


def _restore(cfg: dict, ctx: Ctx, ckpt: dict) -> tuple[Prepared, GraphNet]:
    cfg_r = D.resolve(cfg)
    ds = D.load_graphs(cfg_r)
    prep = Prepared(cfg_r, ds, ctx)
    model = prep.model()
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return prep, model


def evaluate_graphs(cfg: dict, ctx: Ctx, ckpt: dict) -> dict:
    """Scores of the saved model on the val/test graphs of the repetition it was trained in."""
    prep, model = _restore(cfg, ctx, ckpt)
    extra = ckpt.get("extra", {})
    out = {}
    for split in ("val", "test"):
        ids = np.asarray(extra.get(f"split_{split}", []), dtype=np.int64)
        if ids.size and ids.max() >= len(prep.ds.graphs):
            raise DataError(
                "the dataset has fewer graphs than the one the model was trained on", str(cfg["data"])
            )
        out |= {f"{split}/{k}": v for k, v in prep.run(model, ids).items()}
    return out


def predict_graphs(cfg: dict, ctx: Ctx, ckpt: dict, records: Iterable[str]) -> Iterator[dict]:
    """Graph id (0-based, file order) per line -> predicted class and probabilities (or regression values)."""
    from mlkit.tasks.framelet.run import _ids

    prep: Prepared | None = None
    for i, _text in _ids(records, 2**62, "graph"):
        if prep is None:
            prep, model = _restore(cfg, ctx, ckpt)
        if i >= len(prep.ds.graphs):
            raise DataError(
                f"graph id {i} out of range 0..{len(prep.ds.graphs) - 1}", "input", "Use 0-based graph ids."
            )
        x, adj, batch, ng, pool, _y = prep.batch(np.array([i]))
        with torch.no_grad():
            out = model(x, adj, batch, ng, pool)[0]
        if prep.ds.regression:
            yield {"graph": i, "value": [float(v) for v in out.cpu().numpy() * prep.std + prep.mean]}
        else:
            p = torch.softmax(out, 0).cpu().numpy()
            yield {"graph": i, "pred": int(p.argmax()), "prob": [round(float(v), 6) for v in p]}
