"""Toy task hooks (the template: a task is hooks plus its own data, model and loss; the runner does the rest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlkit.core.artifact import cached
from mlkit.core.errors import DataError, UsageError
from mlkit.core.task import Task, TrainState
from toytask import data as D
from toytask.model import build


def _score(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = model(x)
    return float((logits.argmax(1) == y).float().mean()), float(nn.functional.cross_entropy(logits, y))


class ToyTask(Task):
    def finalize(self, cfg: dict, explicit: frozenset[str], mode: str) -> dict:
        if cfg["arch"] not in ("mlp", "linear"):
            raise UsageError(f"unknown arch '{cfg['arch']}'", "arch", "Use mlp or linear.")
        return cfg

    def _root(self, cfg: dict) -> Path:
        if cfg["data"]:
            return Path(cfg["data"])
        settings = {"samples": cfg["samples"], "seed": cfg["seed"]}
        return cached("toy-data", settings, lambda tmp: D.write_data(tmp, cfg["samples"], cfg["seed"]))

    def load_data(self, cfg: dict, ctx: Any) -> dict:
        x, y = D.load(self._root(cfg))
        return {k: (torch.from_numpy(a).to(ctx.device), torch.from_numpy(b).to(ctx.device))
                for k, (a, b) in D.split(x, y).items()}  # fmt: skip

    def build_model(self, cfg: dict, ctx: Any, data: Any) -> nn.Module:
        return build(cfg["arch"], cfg["hidden"], cfg["dropout"]).to(ctx.device)

    def build_optimizer(self, cfg: dict, model: nn.Module) -> tuple[Any, Any]:
        return torch.optim.SGD(model.parameters(), lr=cfg["lr"]), None

    def train_epoch(self, cfg: dict, ctx: Any, st: TrainState) -> dict:
        xt, yt = st.data["train"]
        ds = torch.utils.data.TensorDataset(xt, yt)
        sampler = ctx.sampler(ds, shuffle=True, drop_last=True)
        if sampler is not None:
            sampler.set_epoch(st.epoch)
            dl = torch.utils.data.DataLoader(ds, batch_size=cfg["batch_size"], sampler=sampler)
        else:
            dl = torch.utils.data.DataLoader(ds, batch_size=cfg["batch_size"], shuffle=True, generator=st.generator)
        st.net.train()
        total = 0.0
        for xb, yb in ctx.track(dl, "batches"):
            st.optimizer.zero_grad()
            loss = nn.functional.cross_entropy(st.net(xb), yb)
            loss.backward()
            st.optimizer.step()
            total += float(loss.detach()) * len(yb)
            if st.tick():
                break
        if cfg["rank_hash"]:  # test hook: every rank records a hash of its weights
            import hashlib

            blob = b"".join(v.detach().cpu().numpy().tobytes() for v in st.model.state_dict().values())
            (ctx.run_dir / f"rank{ctx.dist.rank}.sha").write_text(hashlib.sha256(blob).hexdigest())
        return {"train/loss": ctx.all_reduce_mean(total / len(yt))}

    def validate(self, cfg: dict, ctx: Any, st: TrainState) -> dict:
        acc, loss = _score(st.model, *st.data["val"])
        return {"val/accuracy": acc, "val/loss": loss}

    def test(self, cfg: dict, ctx: Any, st: TrainState) -> dict:
        acc, loss = _score(st.model, *st.data["test"])
        return {"test/accuracy": acc, "test/loss": loss}

    def checkpoint_extra(self, cfg: dict, ctx: Any, data: Any) -> dict:
        return {"classes": [0, 1]}

    def restore(self, cfg: dict, ctx: Any, ckpt: dict) -> nn.Module:
        model = build(cfg["arch"], cfg["hidden"], cfg["dropout"])
        model.load_state_dict(ckpt["state_dict"])
        return model.to(ctx.device).eval()

    def evaluate(self, cfg: dict, ctx: Any, restored: nn.Module) -> dict:
        x, y = D.load(self._root(cfg))
        xs, ys = D.split(x, y)["test"]
        acc, loss = _score(restored, torch.from_numpy(xs).to(ctx.device), torch.from_numpy(ys).to(ctx.device))
        return {"test/accuracy": acc, "test/loss": loss}

    def parse_record(self, cfg: dict, restored: Any, line: str, n: int) -> tuple[str, list[float]]:
        try:
            x1, x2 = (float(v) for v in line.split(","))
        except ValueError:
            raise DataError(f"bad record '{line}'", f"input line {n}", "Write 'x1,x2' per line.") from None
        return line, [x1, x2]

    def predict_batch(self, cfg: dict, ctx: Any, restored: nn.Module, records: list) -> list[dict]:
        with torch.no_grad():
            probs = torch.softmax(restored(torch.tensor([x for _, x in records], device=ctx.device)), 1).cpu()
        return [{"id": line, "label": int(p.argmax()), "probs": [round(float(v), 6) for v in p]}
                for (line, _), p in zip(records, probs)]  # fmt: skip

    def sample_inputs(self, run_dir: Path) -> list[str]:
        return ["0.5,0.5", "-1,-1", "2,1"]


TASK = ToyTask()
