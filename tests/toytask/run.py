"""Train, evaluate and predict for the toy task."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mlkit.core.errors import DataError
from mlkit.core.runtime import Ctx
from mlkit.core.trainer import EpochLoop


def write_data(root: Path, n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 2)) + (2 * y[:, None] - 1)
    root.mkdir(parents=True, exist_ok=True)
    with (root / "data.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["x1", "x2", "label"])
        for xi, yi in zip(x, y):
            w.writerow([f"{xi[0]:.6f}", f"{xi[1]:.6f}", int(yi)])
    return root


def load(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    path = Path(root) / "data.csv"
    if not path.is_file():
        raise DataError("data.csv not found", str(root), "Expected layout: <root>/data.csv with x1,x2,label.")
    rows = list(csv.DictReader(path.open()))
    try:
        x = torch.tensor([[float(r["x1"]), float(r["x2"])] for r in rows])
        y = torch.tensor([int(r["label"]) for r in rows])
    except (KeyError, ValueError) as exc:
        raise DataError(f"bad row in data.csv: {exc}", str(path), "Rows must be x1,x2,label.") from None
    return x, y


def build(cfg: dict) -> nn.Module:
    if cfg["arch"] == "linear":
        return nn.Linear(2, 2)
    return nn.Sequential(nn.Linear(2, cfg["hidden"]), nn.Tanh(), nn.Dropout(cfg["dropout"]), nn.Linear(cfg["hidden"], 2))


def _split(x, y):
    n = len(y)
    a, b = int(n * 0.6), int(n * 0.8)
    return (x[:a], y[:a]), (x[a:b], y[a:b]), (x[b:], y[b:])


def _score(model, x, y) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = model(x)
        return float((logits.argmax(1) == y).float().mean()), float(nn.functional.cross_entropy(logits, y))


def train(cfg: dict, ctx: Ctx) -> dict:
    root = Path(cfg["data"]) if cfg["data"] else write_data(ctx.run_dir / "data", cfg["samples"], cfg["seed"])
    x, y = load(root)
    (xt, yt), (xv, yv), (xs, ys) = _split(x, y)
    model = build(cfg).to(ctx.device)
    ddp = ctx.wrap(model)
    opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"])
    ds = torch.utils.data.TensorDataset(xt, yt)
    loop = EpochLoop(ctx, cfg, model, opt, monitor="val/accuracy", extra={"classes": [0, 1]})
    for epoch in loop:
        sampler = ctx.sampler(ds, shuffle=True, drop_last=True)
        if sampler is not None:
            sampler.set_epoch(epoch)
            dl = torch.utils.data.DataLoader(ds, batch_size=cfg["batch_size"], sampler=sampler)
        else:
            dl = torch.utils.data.DataLoader(ds, batch_size=cfg["batch_size"], shuffle=True, generator=loop.generator())
        ddp.train()
        total = 0.0
        for xb, yb in ctx.track(dl, "batches"):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(ddp(xb.to(ctx.device)), yb.to(ctx.device))
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(yb)
        acc, vloss = _score(model, xv.to(ctx.device), yv.to(ctx.device))
        loop.log({"train/loss": ctx.all_reduce_mean(total / len(yt)), "val/accuracy": acc, "val/loss": vloss})
        if epoch == cfg["interrupt_after"]:
            raise KeyboardInterrupt
    if cfg["rank_hash"]:  # test hook: every rank records a hash of its final weights
        import hashlib

        blob = b"".join(v.detach().cpu().numpy().tobytes() for v in model.state_dict().values())
        (ctx.run_dir / f"rank{ctx.dist.rank}.sha").write_text(hashlib.sha256(blob).hexdigest())
    model.load_state_dict(loop.best_state())
    acc, loss = _score(model, xs.to(ctx.device), ys.to(ctx.device))
    return loop.finish({"test/accuracy": acc, "test/loss": loss})


def evaluate(cfg: dict, ctx: Ctx, ckpt: dict) -> dict:
    model = build(cfg)
    model.load_state_dict(ckpt["state_dict"])
    root = Path(cfg["data"]) if cfg["data"] else write_data(Path(ctx.project) / ".toy-data", cfg["samples"], cfg["seed"])
    x, y = load(root)
    _, _, (xs, ys) = _split(x, y)
    acc, loss = _score(model, xs, ys)
    return {"test/accuracy": acc, "test/loss": loss}


def predict(cfg: dict, ctx: Ctx, ckpt: dict, records: Iterable[str]) -> Iterator[dict]:
    model = build(cfg)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    for n, line in enumerate(records, 1):
        try:
            x1, x2 = (float(v) for v in line.split(","))
        except ValueError:
            raise DataError(f"bad record '{line}'", f"input line {n}", "Write 'x1,x2' per line.") from None
        with torch.no_grad():
            p = torch.softmax(model(torch.tensor([[x1, x2]])), 1)[0]
        yield {"input": line, "label": int(p.argmax()), "prob": float(p.max())}
