"""The epoch loop every trained task shares: results.csv, best/last checkpoints, early stopping, exact resume.

    loop = EpochLoop(ctx, cfg, model, optimizer, monitor="val/f1")
    for epoch in loop:
        gen = loop.generator()           # seeded by (seed, epoch): data order survives a resume
        ... train, validate ...
        loop.log({"train/loss": loss, "val/f1": f1})

The runner (mlkit.core.runner) drives it with the task's hooks; tasks do not use it directly.

`last.pt` is written before the first epoch and after every epoch, so Ctrl-C at any moment leaves a
consistent checkpoint, and `--resume` continues from it with the same weights and metrics as an
uninterrupted run.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from typing import Any

from mlkit.core import checkpoint
from mlkit.core.errors import RunFailure
from mlkit.core.rundir import ResultsCSV, write_metrics
from mlkit.core.runtime import Ctx


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as weights_only-safe values."""
    import numpy as np
    import torch

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what rng_state() captured."""
    import numpy as np
    import torch

    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def epoch_generator(seed: int, epoch: int) -> Any:
    """A torch.Generator for one epoch's data order, independent of anything that ran before."""
    import torch

    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))


def _test_interrupt(epoch: int) -> None:
    """Test hook: MLKIT_TEST_INTERRUPT_EPOCH=N sends this process SIGINT once epoch N (0-based) is saved."""
    import os

    at = os.environ.get("MLKIT_TEST_INTERRUPT_EPOCH")
    if at is not None and at.strip() and int(at) == epoch:
        import signal

        os.kill(os.getpid(), signal.SIGINT)


class EpochLoop:
    """Iterate epochs; log metrics; keep best.pt and last.pt; stop early; resume exactly.

    Used by the runner (mlkit.core.runner), not by tasks: a task supplies train_epoch/validate hooks.
    """

    def __init__(
        self,
        ctx: Ctx,
        cfg: Mapping[str, Any],
        model: Any,
        optimizer: Any = None,
        scheduler: Any = None,
        *,
        monitor: str,
        mode: str = "max",
        epochs: int | None = None,
        patience: int | None = None,
        extra: Mapping[str, Any] | None = None,
        rep: int = 0,
        carry: Mapping[str, Any] | None = None,
        resume: Any = None,
    ) -> None:
        self.ctx = ctx
        self.cfg = dict(cfg)
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.monitor = monitor
        self.mode = mode
        self.epochs = int(epochs if epochs is not None else cfg["epochs"])
        self.patience = patience
        self.extra = dict(extra or {})
        # repetition 0 owns best.pt and results.csv; later repetitions keep their best weights in memory
        self.rep = int(rep)
        self.carry = dict(carry or {})  # runner state saved with last.pt (finished repetitions' results)
        self._best_sd: dict[str, Any] | None = None
        self.best: float | None = None
        self.best_epoch = -1
        self.bad_epochs = 0
        self.epoch = -1
        self.start_epoch = 0
        self.stop = False
        self.last_metrics: dict[str, Any] = {}
        self.best_metrics: dict[str, Any] = {}
        run_dir = ctx.run_dir
        use_csv = run_dir is not None and ctx.is_main and self.rep == 0
        self.csv = ResultsCSV(run_dir / "results.csv") if use_csv else None
        if resume is not None:
            self._restore(resume)
        else:
            self._save_last(-1)

    # --- checkpoints ---
    def _state_dict(self) -> dict[str, Any]:
        return self.ctx.unwrap(self.model).state_dict()

    def _train_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "rng": rng_state(),
            "best": self.best,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "best_metrics": dict(self.best_metrics),
            "rep": self.rep,
            "carry": dict(self.carry),
        }
        if self.rep > 0 and self._best_sd is not None:
            state["rep_best"] = self._best_sd
        if self.optimizer is not None:
            state["optimizer"] = self.optimizer.state_dict()
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        return state

    def _save(self, name: str, epoch: int, with_train_state: bool) -> None:
        if self.ctx.run_dir is None or not self.ctx.is_main:
            return
        if name == "best.pt" and self.rep > 0:
            return
        ck = checkpoint.make(
            self.ctx.task,
            self.cfg,
            self._state_dict(),
            epoch=epoch,
            metrics=self.last_metrics,
            best_metric=self.best,
            extra=self.extra,
            train_state=self._train_state() if with_train_state else None,
        )
        checkpoint.save(ck, self.ctx.run_dir / "weights" / name)

    def _save_last(self, epoch: int) -> None:
        self._save("last.pt", epoch, with_train_state=True)

    def _save_best(self, epoch: int) -> None:
        self._save("best.pt", epoch, with_train_state=False)

    def _restore(self, path: Any) -> None:
        ck = path if isinstance(path, dict) else checkpoint.load(path, self.ctx.task)
        self.ctx.unwrap(self.model).load_state_dict(ck["state_dict"])
        ts = ck["train_state"]
        if self.optimizer is not None and "optimizer" in ts:
            self.optimizer.load_state_dict(ts["optimizer"])
        if self.scheduler is not None and "scheduler" in ts:
            self.scheduler.load_state_dict(ts["scheduler"])
        set_rng_state(ts["rng"])
        self.best = ts["best"]
        self.best_epoch = int(ts["best_epoch"])
        self.bad_epochs = int(ts["bad_epochs"])
        self.best_metrics = dict(ts.get("best_metrics", {}))
        self.last_metrics = dict(ck.get("metrics", {}))
        self.start_epoch = int(ck["epoch"]) + 1
        self.stop = self.patience is not None and self.bad_epochs >= self.patience
        if self.rep > 0 and self.best_epoch >= 0:
            self._best_sd = dict(ts["rep_best"]) if "rep_best" in ts else None
        if self.csv is not None:
            self.csv.truncate(self.start_epoch)
        where = f"repetition {self.rep + 1}, " if self.rep else ""
        self.ctx.log(f"resuming at {where}epoch {self.start_epoch + 1}")

    # --- the loop ---
    def __iter__(self) -> Iterator[int]:
        if self.stop:  # resumed after early stopping had already ended the loop
            return
        for epoch in self.ctx.track(range(self.start_epoch, self.epochs), "epochs"):
            self.epoch = epoch
            yield epoch
            if self.stop:
                break

    def generator(self) -> Any:
        """The seeded torch.Generator for this epoch's data order."""
        return epoch_generator(self.ctx.seed, self.epoch + 7919 * self.rep)

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def log(self, metrics: Mapping[str, Any]) -> bool:
        """Record one epoch; save last.pt (and best.pt when the monitor improved); return whether it did."""
        import math

        metrics = {k: float(v) for k, v in metrics.items()}
        loss = metrics.get("train/loss")
        if loss is not None and not math.isfinite(loss):
            raise RunFailure(
                f"training loss is {loss} at epoch {self.epoch}", None, "Lower the learning rate or check the data."
            )
        self.last_metrics = metrics
        if self.csv is not None:
            self.csv.add(self.epoch + 1, metrics)  # people count epochs from 1: CSV, JSON and console agree
        value = metrics.get(self.monitor)
        better = value is not None and self.improved(value)
        if better:
            self.best = value
            self.best_epoch = self.epoch
            self.best_metrics = dict(metrics)
            self.bad_epochs = 0
            if self.rep > 0:
                self._best_sd = {k: v.detach().clone() for k, v in self._state_dict().items()}
            self._save_best(self.epoch)
        else:
            self.bad_epochs += 1
            if self.patience is not None and self.bad_epochs >= self.patience:
                self.stop = True
        if self.ctx.is_main and not self.ctx.quiet:
            shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            self.ctx.console.print(f"epoch {self.epoch + 1}/{self.epochs}  {shown}" + ("  *" if better else ""))
        self._save_last(self.epoch)
        _test_interrupt(self.epoch)
        return better

    def best_state(self) -> dict[str, Any]:
        """The best checkpoint's weights (from best.pt), or the current weights if none was saved."""
        if self.rep > 0:
            return self._best_sd if self._best_sd is not None else self._state_dict()
        if self.ctx.run_dir is not None and (self.ctx.run_dir / "weights" / "best.pt").exists():
            return checkpoint.load(self.ctx.run_dir / "weights" / "best.pt", self.ctx.task)["state_dict"]
        return self._state_dict()

    def finish(self, metrics: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Write metrics.json (best epoch's metrics plus `metrics`) and return them."""
        out: dict[str, Any] = {**self.best_metrics, **{k: float(v) for k, v in (metrics or {}).items()}}
        out["best_epoch"] = self.best_epoch + 1
        write_final(self.ctx, out)
        return out


def write_final(ctx: Ctx, out: Mapping[str, Any]) -> None:
    """metrics.json, and the final metrics inside best.pt (rank 0 only)."""
    if ctx.run_dir is None or not ctx.is_main:
        return
    write_metrics(ctx.run_dir, out)
    best = ctx.run_dir / "weights" / "best.pt"
    if best.exists():
        ck = checkpoint.load(best, ctx.task)
        ck["metrics"] = {**ck.get("metrics", {}), **dict(out)}
        checkpoint.save(ck, best)
