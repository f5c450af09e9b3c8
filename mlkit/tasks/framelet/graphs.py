"""Graph-level runs (spec 2.9): UFGPool-SUM / -Spectrum and mean/sum pooling baselines on TU data.

Per graph, precomputed once: the GCN adjacency D~^-1/2 (A+I) D~^-1/2 and the materialized pooling operator
P_i = vstack[W_{0,Lev}; W_{1,1..Lev}; ...] (K N_i x N_i). A mini-batch stacks them block-diagonally.
Protocol per repetition: fresh random 80/10/10 split, Adam, loss summed over the batch (cross-entropy, or MSE
on standardised targets for regression), ReduceLROnPlateau(0.7, 5) on the val loss, early stop after
graph.patience epochs without a val-accuracy improvement (the spec's monitor), test the best-val-accuracy
weights. Repetition 0's best weights are saved (saved_rep = 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from mlkit.core.errors import DataError
from mlkit.core.runtime import Ctx
from mlkit.core.task import TrainState
from mlkit.kernels.spmm import to_torch_csr
from mlkit.tasks.framelet import data as D
from mlkit.tasks.framelet import framelets as F
from mlkit.tasks.framelet.model import GraphNet, gcn_adjacency


class Prepared:
    """Per-graph operators plus batching, and the per-epoch steps of one repetition."""

    what = "graph"

    @classmethod
    def load(cls, cfg: dict[str, Any], ctx: Ctx, verbose: bool = True) -> Prepared:
        """Load the TU dataset of cfg and precompute its operators."""
        ds = D.load_graphs(cfg)
        kind = "regression" if ds.regression else f"{ds.num_classes} classes"
        if verbose:
            ctx.log(f"data: {ds.name} {len(ds.graphs)} graphs, F={ds.num_features}, {kind}")
        return cls(cfg, ds, ctx)

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

    def run(self, model: GraphNet, ids: np.ndarray, opt: Any = None, gen: Any = None, tick: Any = None
            ) -> dict[str, float]:  # fmt: skip
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
            stop = False
            if opt is not None:
                opt.zero_grad()
                loss.backward()
                opt.step()
                stop = tick is not None and tick()  # --max-steps / --time-budget-s spent: end the pass here
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
            if stop:
                ids = ids[: s + bs]
                break
        n = max(len(ids), 1)
        if self.ds.regression:
            return {"loss": loss_sum / n, "mae": abs_err / (n * self.out_dim)}
        return {"loss": loss_sum / n, "acc": correct / n}

    def split(self, rep: int) -> dict[str, np.ndarray]:
        """Repetition rep's random train/val/test split: the (rep+1)-th draw of a stream seeded by `seed`."""
        rng = np.random.default_rng(int(self.cfg["seed"]))
        n, fracs = len(self.ds.graphs), list(self.cfg["graph"]["split"])
        for _ in range(rep + 1):
            perm = rng.permutation(n)
        a = int(round(fracs[0] * n))
        b = a + int(round(fracs[1] * n))
        return {"train": perm[:a], "val": perm[a:b], "test": perm[b:]}

    def predict(self, model: GraphNet, ids: list[int]) -> list[dict[str, Any]]:
        """Predict rows for graph ids (0-based, file order): class and probabilities, or regression values."""
        rows = []
        for i in ids:
            x, adj, batch, ng, pool, _y = self.batch(np.array([i]))
            with torch.no_grad():
                out = model(x, adj, batch, ng, pool)[0]
            if self.ds.regression:
                rows.append({"id": i, "value": [float(v) for v in out.cpu().numpy() * self.std + self.mean]})
            else:
                p = torch.softmax(out, 0).cpu().numpy()
                rows.append({"id": i, "label": int(p.argmax()), "probs": [round(float(v), 6) for v in p]})
        return rows

    @property
    def count(self) -> int:
        return len(self.ds.graphs)

    def extra(self) -> dict[str, Any]:
        """Checkpoint extras: repetition 0's val/test graphs (eval scores the saved model on them)."""
        split = self.split(0)
        return {"graph_level": True, "split_test": split["test"].tolist(), "split_val": split["val"].tolist()}

    def check(self, extra: dict[str, Any]) -> None:
        return None

    def _split(self, st: TrainState) -> dict[str, np.ndarray]:
        if "split" not in st.scratch:
            st.scratch["split"] = self.split(st.rep)
        return st.scratch["split"]

    def train_epoch(self, st: TrainState) -> dict[str, float]:
        """One pass over the training graphs. Shuffling: the runner's generator in repetition 0; later
        repetitions keep the stream they had before the runner owned repetitions (seed * 7919 + epoch)."""
        gen = (
            st.generator
            if st.rep == 0
            else torch.Generator().manual_seed(int(self.cfg["seed"]) * 7919 + st.epoch)
        )
        return {
            f"train/{k}": v
            for k, v in self.run(st.model, self._split(st)["train"], st.optimizer, gen, st.tick).items()
        }

    def validate(self, st: TrainState) -> dict[str, float]:
        """val/loss and val/acc (val/mae for regression); steps the plateau scheduler on the val loss."""
        va = self.run(st.model, self._split(st)["val"])
        st.scheduler.step(va["loss"])
        return {f"val/{k}": v for k, v in va.items()}

    def test(self, st: TrainState) -> dict[str, float]:
        """val/* and test/* of the best weights on this repetition's split."""
        split = self._split(st)
        res = {f"val/{k}": v for k, v in self.run(st.model, split["val"]).items()}
        return res | {f"test/{k}": v for k, v in self.run(st.model, split["test"]).items()}

    def evaluate(self, model: GraphNet, extra: dict[str, Any]) -> dict[str, float]:
        """Scores on the val/test graphs of the repetition the checkpoint was trained in."""
        out = {}
        for split in ("val", "test"):
            ids = np.asarray(extra.get(f"split_{split}", []), dtype=np.int64)
            if ids.size and ids.max() >= len(self.ds.graphs):
                raise DataError(
                    "the dataset has fewer graphs than the one the model was trained on",
                    str(self.cfg["data"]),
                )
            out |= {f"{split}/{k}": v for k, v in self.run(model, ids).items()}
        return out
