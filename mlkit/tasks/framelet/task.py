"""framelet task hooks. The data object knows its kind: nodes.NodeSetup (UFGConv-R/-S, GCN, MLP on one graph)
or graphs.Prepared (UFGPool and the pooling baselines on TU data, picked by D.graph_level(cfg)); both supply
the per-epoch steps, so the hooks only delegate.

`reps` repetitions with fresh initialisations continue one RNG stream; metrics are their mean and std, and the
saved weights are repetition 0's best epoch (saved_rep = 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlkit.core.config import apply_preset
from mlkit.core.errors import DataError
from mlkit.core.runtime import Ctx
from mlkit.core.task import Task, TrainState
from mlkit.tasks.framelet import SAMPLE_INPUTS
from mlkit.tasks.framelet import data as D


def _open(cfg: dict, ctx: Ctx, verbose: bool = True) -> Any:
    if D.graph_level(cfg):
        from mlkit.tasks.framelet.graphs import Prepared

        return Prepared.load(cfg, ctx, verbose)
    from mlkit.tasks.framelet.nodes import NodeSetup

    return NodeSetup.load(cfg, ctx, verbose)


class FrameletTask(Task):
    def finalize(self, cfg: dict, explicit: frozenset[str], mode: str) -> dict:
        # --preset (never over a key the user set), then null hyper-parameters -> the arch's paper values and
        # value checks; idempotent (a saved config has every key explicit, so the preset never applies twice)
        return D.resolve(apply_preset(cfg, explicit))

    def repetitions(self, cfg: dict) -> int:
        return int(cfg["reps"])

    def monitor(self, cfg: dict) -> tuple[str, str]:
        """Node runs keep the epoch of highest val accuracy (spec 2.8); graph runs the lowest val loss (2.9)."""
        return ("val/loss", "min") if D.graph_level(cfg) else ("val/acc", "max")

    def patience(self, cfg: dict) -> int | None:
        return int(cfg["graph"]["patience"]) if D.graph_level(cfg) else None

    def load_data(self, cfg: dict, ctx: Ctx) -> Any:
        return _open(cfg, ctx)

    def build_model(self, cfg: dict, ctx: Ctx, data: Any) -> torch.nn.Module:
        return data.model()

    def build_optimizer(self, cfg: dict, model: torch.nn.Module) -> tuple[Any, Any]:
        opt = torch.optim.Adam(
            model.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"])
        )
        if D.graph_level(cfg):  # ReduceLROnPlateau(0.7, 5) on the val loss, stepped in validate
            return opt, torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.7, patience=5)
        return opt, None

    def train_epoch(self, cfg: dict, ctx: Ctx, st: TrainState) -> dict:
        return st.data.train_epoch(st)

    def validate(self, cfg: dict, ctx: Ctx, st: TrainState) -> dict:
        return st.data.validate(st)

    def test(self, cfg: dict, ctx: Ctx, st: TrainState) -> dict:
        return st.data.test(st)

    def summarize(self, cfg: dict, results: list[dict[str, float]]) -> dict[str, float]:
        """Mean and (population) std over repetitions of every metric; rep 0's accuracies kept as rep0/*."""
        out: dict[str, float] = {}
        for key in results[0]:
            vals = np.array([r[key] for r in results], dtype=np.float64)
            out[key], out[f"{key}_std"] = float(vals.mean()), float(vals.std())
        out["reps"] = float(len(results))
        out["rep0/val/acc"] = results[0].get("val/acc", float("nan"))
        out["rep0/test/acc"] = results[0].get("test/acc", float("nan"))
        out["saved_rep"] = 0.0
        return out

    def checkpoint_extra(self, cfg: dict, ctx: Ctx, data: Any) -> dict:
        return data.extra()

    def restore(self, cfg: dict, ctx: Ctx, ckpt: dict) -> tuple[Any, torch.nn.Module, dict]:
        data, extra = _open(cfg, ctx, verbose=False), dict(ckpt.get("extra", {}))
        data.check(extra)
        model = data.model()
        model.load_state_dict(ckpt["state_dict"])
        return data, model.eval(), extra

    def evaluate(self, cfg: dict, ctx: Ctx, restored: Any) -> dict:
        data, model, extra = restored
        return data.evaluate(model, extra)

    def parse_record(self, cfg: dict, restored: Any, line: str, n: int) -> int:
        what, count, text = restored[0].what, restored[0].count, line.strip()
        try:
            i = int(text)
        except ValueError:
            hint = f"Write one integer {what} id per line."
            raise DataError(f"bad {what} id '{text}'", f"input line {n}", hint) from None
        if not 0 <= i < count:
            raise DataError(f"{what} id {i} out of range 0..{count - 1}", f"input line {n}",
                            f"Use ids of the {what}s the model knows.")  # fmt: skip
        return i

    def predict_batch(self, cfg: dict, ctx: Ctx, restored: Any, records: list[int]) -> list[dict]:
        data, model, _extra = restored
        return data.predict(model, records)

    def sample_inputs(self, run_dir: Path) -> list[str]:
        return list(SAMPLE_INPUTS)


TASK = FrameletTask()
