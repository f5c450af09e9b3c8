"""One training epoch of UFGConv-R / -S (forward, backward, Adam step, eval forward) against a re-statement of the
original UFG code's epoch, in the same process: every block W_{j,l} materialized by sparse products as a torch
sparse COO matrix, float64 throughout (the original's global default), the r*Lev blocks concatenated into one
(r Lev N x N) operator on every forward and the used blocks side by side for the reconstruction, dense features,
a per-node filter over all r*Lev blocks, and an eval forward with autograd on (no torch.no_grad).

    python benchmarks/framelet_epoch.py                       # Cora (shared/data/planetoid) + a 1e5-node graph
    python benchmarks/framelet_epoch.py --sizes --epochs 30   # Cora only
Times are CPU seconds per epoch (median over interleaved epochs, both paths at the same torch thread count).
Prints a table (stderr) and one JSON object (stdout).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as tf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the original's operator: framelet_transform.py

from framelet_transform import original_levels  # noqa: E402

from mlkit.tasks.framelet import framelets as F  # noqa: E402
from mlkit.tasks.framelet.model import Features, FrameletOp, UFGNet  # noqa: E402

CORA = Path(__file__).resolve().parents[2] / "shared" / "data" / "planetoid"


# --- the original's computation, re-stated -------------------------------------------------------------------


def original_blocks(a_hat: sp.csr_matrix, coef: np.ndarray, alphas: list[float]) -> list[torch.Tensor]:
    """All r*Lev blocks (intermediate low-pass included), block index j*Lev + l, as float64 torch COO tensors."""
    out = []
    for block in original_levels(a_hat, coef, alphas):
        c = sp.coo_matrix(block)
        idx = torch.from_numpy(np.vstack([c.row, c.col]).astype(np.int64))
        out.append(torch.sparse_coo_tensor(idx, torch.from_numpy(c.data), c.shape, dtype=torch.float64,
                                           check_invariants=False))  # fmt: skip
    return out


class OrigConv(torch.nn.Module):
    def __init__(self, fin: int, fout: int, r: int, lev: int, n: int, shrink: bool) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(fin, fout, dtype=torch.float64))
        self.filter = torch.nn.Parameter(torch.empty(r * lev * n, 1, dtype=torch.float64))
        self.bias = torch.nn.Parameter(torch.zeros(fout, dtype=torch.float64))
        torch.nn.init.xavier_uniform_(self.weight)
        torch.nn.init.uniform_(self.filter, 0.9, 1.1)
        self.lev, self.n, self.crop, self.shrink = lev, n, (lev - 1) * n, shrink

    def forward(self, x: torch.Tensor, d_list: list[torch.Tensor]) -> torch.Tensor:
        x = x @ self.weight
        x = torch.sparse.mm(torch.cat(d_list, dim=0), x)
        x = self.filter * x
        if (
            self.shrink
        ):  # soft threshold (spec 2.7, scale 1) on the high-pass rows: all after the first Lev blocks
            lam = math.sqrt(2 * math.log(self.n)) / math.sqrt(self.n)
            high = x[self.lev * self.n :]
            x = torch.cat([x[: self.lev * self.n], torch.sign(high) * torch.clamp(high.abs() - lam, min=0)])
        x = torch.sparse.mm(torch.cat(d_list[self.lev - 1 :], dim=1), x[self.crop :])
        return x + self.bias


class OrigNet(torch.nn.Module):
    def __init__(self, fin: int, hid: int, c: int, r: int, lev: int, n: int, relu: bool, drop: float) -> None:
        super().__init__()
        self.c1, self.c2 = OrigConv(fin, hid, r, lev, n, not relu), OrigConv(hid, c, r, lev, n, not relu)
        self.relu, self.drop = relu, drop

    def forward(self, x: torch.Tensor, d_list: list[torch.Tensor]) -> torch.Tensor:
        h = self.c1(x, d_list)
        h = tf.dropout(torch.relu(h) if self.relu else h, self.drop, self.training)
        return tf.log_softmax(self.c2(h, d_list), dim=1)


# --- epochs ----------------------------------------------------------------------------------------------------


def epoch_original(model, opt, x, d_list, y, masks):  # noqa: ANN001, ANN201
    model.train()
    opt.zero_grad()
    out = model(x, d_list)
    tf.nll_loss(out[masks[0]], y[masks[0]]).backward()
    opt.step()
    model.eval()
    out = model(x, d_list)  # autograd on, as the original's evaluation
    return [float((out[m].argmax(1) == y[m]).double().mean()) for m in masks]


def epoch_ours(model, opt, x, op, y, masks):  # noqa: ANN001, ANN201
    model.train()
    opt.zero_grad()
    out = torch.log_softmax(model(x, op), 1)
    tf.nll_loss(out[masks[0]], y[masks[0]]).backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        out = torch.log_softmax(model(x, op), 1)
    return [float((out[m].argmax(1) == y[m]).float().mean()) for m in masks]


def random_graph(n: int, degree: float, feats: int, classes: int, seed: int):  # noqa: ANN201
    """A homophilous random graph with sparse binary features (Cora-like density) for the size test."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    m = int(n * degree / 2)
    u = rng.integers(0, n, m)
    same = rng.random(m) < 0.8
    pool = [np.flatnonzero(y == c) for c in range(classes)]
    v = np.where(same, [rng.choice(pool[c]) for c in y[u]], rng.integers(0, n, m))
    keep = u != v
    a = sp.csr_matrix((np.ones(2 * keep.sum()), (np.r_[u[keep], v[keep]], np.r_[v[keep], u[keep]])), (n, n))
    a.data[:] = 1
    x = (rng.random((n, feats)) < 0.013).astype(np.float32)
    x[np.arange(n), y] = 1  # a weak class signal
    return a, x, y


def bench_graph(name: str, adj, x_np, y_np, train, val, test, arch: str, epochs: int,  # noqa: ANN001
                operator: str = "auto") -> dict:  # fmt: skip
    relu = arch == "ufg-r"
    s, lr = (2.0, 0.01) if relu else (2.5, 0.005)
    n = adj.shape[0]
    fw = F.build(adj, frame="haar", lev=2, s=s, n=2, operator="materialized", cache=False)
    mine_fw = fw if operator == "materialized" else F.build(adj, frame="haar", lev=2, s=s, n=2, operator=operator,
                                                             cache=False)  # fmt: skip
    classes = int(y_np.max()) + 1
    torch.manual_seed(0)
    # original
    t = time.process_time()
    d_list = original_blocks(fw.a_hat, fw.coef, fw.alphas)
    t_build_o = time.process_time() - t
    xo = torch.from_numpy(np.asarray(x_np, dtype=np.float64))
    y = torch.from_numpy(np.asarray(y_np, dtype=np.int64))
    masks = [torch.from_numpy(np.asarray(i, dtype=np.int64)) for i in (train, val, test)]
    mo = OrigNet(x_np.shape[1], 16, classes, fw.r, 2, n, relu, 0.7)
    oo = torch.optim.Adam(mo.parameters(), lr=lr, weight_decay=0.01)
    # ours (the task's model and operator, float32)
    mine = UFGNet(x_np.shape[1], 16, classes, fw.num_blocks, n, 0.7, relu=relu, theta="per-node",
                  shrinkage=None if relu else "soft", sigma=1.0, scaling="none")  # fmt: skip
    om = torch.optim.Adam(mine.parameters(), lr=lr, weight_decay=0.01)
    xf, op = (
        Features(np.asarray(x_np, np.float32), "cpu", torch.float32),
        FrameletOp(mine_fw, "cpu", torch.float32),
    )
    times = {"original": [], "ours": []}
    acc = {"original": [], "ours": []}
    for e in range(epochs + 1):
        for key in ("original", "ours") if e % 2 == 0 else ("ours", "original"):
            c = time.process_time()
            if key == "original":
                a = epoch_original(mo, oo, xo, d_list, y, masks)
            else:
                a = epoch_ours(mine, om, xf, op, y, masks)
            if e > 0:  # epoch 0 warms up both
                times[key].append(time.process_time() - c)
            acc[key].append(a)
    med = {k: float(np.median(v)) for k, v in times.items()}
    best = {k: max(acc[k], key=lambda a: a[1])[2] for k in acc}  # test acc at the best val epoch
    return {"graph": name, "nodes": n, "arch": arch, "epochs": epochs, "operator": mine_fw.operator, "threads": torch.get_num_threads(),
            "original_cpu_s_per_epoch": med["original"], "ours_cpu_s_per_epoch": med["ours"],
            "speedup": med["original"] / med["ours"], "original_build_cpu_s": t_build_o,
            "original_test_acc_at_best_val": best["original"], "ours_test_acc_at_best_val": best["ours"]}  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sizes", type=int, nargs="*", default=[100_000], help="random graphs of these node counts"
    )
    ap.add_argument("--epochs", type=int, default=40, help="timed epochs per path (interleaved)")
    ap.add_argument("--archs", nargs="*", default=["ufg-r", "ufg-s"])
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both paths (the original: 1)")
    ap.add_argument("--operator", default="auto", help="ours: auto | matrix-free | materialized")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    graphs = []
    if (CORA / "ind.cora.x").exists():
        from mlkit.graph.planetoid import load_planetoid

        g = load_planetoid(CORA, "cora")
        graphs.append(
            ("cora", g.to_scipy(), np.asarray(g.features), g.labels, g.train_idx, g.val_idx, g.test_idx)
        )
    for size in args.sizes:
        a, x, y = random_graph(size, 10.0, 500, 7, 0)
        idx = np.random.default_rng(1).permutation(size)
        graphs.append((f"random-{size:.0e}", a, x, y, idx[:140], idx[140:640], idx[640:1640]))
    for name, *g in graphs:
        for arch in args.archs:
            r = bench_graph(name, *g, arch=arch, epochs=args.epochs, operator=args.operator)
            rows.append(r)
            print(f"{name} {arch}: original {r['original_cpu_s_per_epoch'] * 1e3:.1f} ms/epoch, ours "
                  f"{r['ours_cpu_s_per_epoch'] * 1e3:.1f} ms/epoch ({r['operator']}; CPU, {r['threads']} thread) -> "
                  f"{r['speedup']:.1f}x", file=sys.stderr, flush=True)  # fmt: skip
    print(json.dumps({"rows": rows}))
    return rows


if __name__ == "__main__":
    main()
