"""GBP hooks: precompute propagated features (cached), then train the GnnBP MLP with Adam (spec §2.4).

Data is (graph, rows): the propagated rows are memory-mapped from the precompute cache; the runner does the
epoch loop (early stopping on val micro-F1, patience train.patience) and tests with the best weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mlkit.core.config import apply_preset
from mlkit.core.data import check_classes
from mlkit.core.errors import DataError, UsageError
from mlkit.core.runtime import Ctx
from mlkit.core.task import Task, TrainState
from mlkit.tasks.gbp import SAMPLE_INPUTS
from mlkit.tasks.gbp.data import build_rows, labels_of, load_dataset
from mlkit.tasks.gbp.model import GnnBP
from mlkit.tasks.gbp.precompute import ESTIMATORS, WEIGHTS
from mlkit.tasks.gbp.rows import GraphRows, gnnbp, load, scores, split_metrics


class GbpTask(Task):
    def finalize(self, cfg: dict, explicit: frozenset[str], mode: str) -> dict:
        cfg = apply_preset(cfg, explicit)
        prop = cfg["propagation"]
        if prop["estimator"] not in ESTIMATORS:
            raise UsageError(f"unknown estimator '{prop['estimator']}'", "propagation.estimator",
                             f"Use one of {', '.join(ESTIMATORS)}.")  # fmt: skip
        if prop["weights"] not in WEIGHTS:
            raise UsageError(f"unknown weights '{prop['weights']}'", "propagation.weights",
                             f"Use one of {', '.join(WEIGHTS)}.")  # fmt: skip
        if prop["estimator"] == "push" and prop["weights"] != "ppr":
            hint = "Use weights: ppr, or estimator bidirectional/exact for heat, sgc and list weights."
            raise UsageError("the push estimator is the original's PPR path", "propagation.estimator", hint)
        if cfg["model"]["bias"] not in ("none", "bn") or int(cfg["model"]["layers"]) < 2:
            raise UsageError("model.bias must be none or bn and model.layers >= 2", "model")
        return cfg

    def patience(self, cfg: dict) -> int:
        return int(cfg["train"]["patience"])

    def load_data(self, cfg: dict, ctx: Ctx) -> GraphRows:
        return load(cfg, ctx)

    def build_model(self, cfg: dict, ctx: Ctx, data: GraphRows) -> GnnBP:
        return gnnbp(cfg, data.rows.full.rows.shape[1], data.g.num_classes).to(ctx.device)

    def build_optimizer(self, cfg: dict, model: nn.Module) -> tuple[Any, Any]:
        wd = float(cfg["train"]["weight_decay"])
        return torch.optim.Adam(model.parameters(), lr=float(cfg["lr"]), weight_decay=wd), None

    def checkpoint_extra(self, cfg: dict, ctx: Ctx, data: GraphRows) -> dict:
        g = data.g
        return {"num_features": int(data.rows.full.rows.shape[1]), "num_classes": int(g.num_classes),
                "multilabel": bool(g.multilabel), "graph": g.name, "num_nodes": int(g.num_nodes),
                "estimator": data.rows.full.estimator}  # fmt: skip

    def train_epoch(self, cfg: dict, ctx: Ctx, st: TrainState) -> dict:
        g, rows = st.data.g, st.data.rows
        loss_fn: nn.Module = nn.BCEWithLogitsLoss() if g.multilabel else nn.CrossEntropyLoss()
        train_ids = np.asarray(g.train_idx, dtype=np.int64)
        y_train = labels_of(g, train_ids)
        inductive_rows = rows.train.rows if rows.train is not None else None
        world, rank = ctx.dist.world_size, ctx.dist.rank
        bs = max(1, int(cfg["batch_size"]) // world)
        bn = cfg["model"]["bias"] == "bn"
        perm = torch.randperm(train_ids.shape[0], generator=st.generator).numpy()
        if ctx.dist.enabled:  # equal shares, so every rank runs the same number of steps
            perm = perm[: perm.shape[0] // world * world][rank::world]
        st.net.train()
        total, count = 0.0, 0
        for s in range(0, perm.shape[0], bs):
            pos = perm[s : s + bs]
            if bn and pos.shape[0] < 2:
                continue  # BatchNorm cannot normalise a single row
            if inductive_rows is not None:
                pos = np.sort(pos)
                xb = np.asarray(inductive_rows[pos], dtype=np.float32)
            else:
                xb = rows.full.take(train_ids[pos])
            y = torch.from_numpy(y_train[pos]).to(ctx.device)
            loss = loss_fn(st.net(torch.from_numpy(xb).to(ctx.device)), y)
            st.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            st.optimizer.step()
            total += float(loss.item()) * pos.shape[0]
            count += pos.shape[0]
            if st.tick():
                break
        return {"train/loss": ctx.all_reduce_mean(total / max(count, 1))}

    def validate(self, cfg: dict, ctx: Ctx, st: TrainState) -> dict:
        return {"val/f1": split_metrics(st.model, st.data, cfg, ctx.device, ("val",))["val/f1"]}

    def test(self, cfg: dict, ctx: Ctx, st: TrainState) -> dict:
        return split_metrics(st.model, st.data, cfg, ctx.device)

    # ---------------------------------------------------------------- eval / predict
    def restore(self, cfg: dict, ctx: Ctx, ckpt: dict) -> GraphRows:
        g = load_dataset(cfg, ctx.log)
        d = GraphRows(g, build_rows(cfg, g, ctx.device, ctx.log))
        ex = ckpt.get("extra", {})
        if g.labels is not None:
            check_classes(int(g.num_classes), int(ex["num_classes"]), cfg.get("data") or "synthetic")
        if d.rows.full.rows.shape[1] != ex.get("num_features"):
            msg = f"data has {d.rows.full.rows.shape[1]} features, the model wants {ex.get('num_features')}"
            raise DataError(msg, cfg.get("data") or "synthetic", "Evaluate on the graph the model learned.")
        d.model = gnnbp(cfg, int(ex["num_features"]), int(ex["num_classes"])).to(ctx.device)
        d.model.load_state_dict(ckpt["state_dict"])
        d.model.eval()
        return d

    def evaluate(self, cfg: dict, ctx: Ctx, restored: GraphRows) -> dict:
        return split_metrics(restored.model, restored, cfg, ctx.device)

    def parse_record(self, cfg: dict, restored: GraphRows, line: str, n: int) -> int:
        text = line.strip()
        try:
            node = int(text)
        except ValueError:
            hint = "Give one integer node id per line."
            raise DataError(f"not a node id: {text!r}", f"input line {n}", hint) from None
        if not 0 <= node < restored.g.num_nodes:
            raise DataError(f"node {node} outside 0..{restored.g.num_nodes - 1}", f"input line {n}",
                            "Give an existing node id.")  # fmt: skip
        return node

    def predict_batch_size(self, cfg: dict) -> int:
        return int(cfg["train"]["eval_batch_size"])

    def predict_batch(self, cfg: dict, ctx: Ctx, restored: GraphRows, records: list[int]) -> list[dict]:
        nodes = np.asarray(records, dtype=np.int64)
        x = restored.rows.of_nodes(cfg, restored.g, nodes)
        logits = scores(restored.model, x, ctx.device, int(cfg["train"]["eval_batch_size"]))
        if restored.g.multilabel:
            probs = 1.0 / (1.0 + np.exp(-logits))
            labels: list[Any] = [np.flatnonzero(lg > 0).tolist() for lg in logits]
        else:
            e = np.exp(logits - logits.max(1, keepdims=True))
            probs = e / e.sum(1, keepdims=True)
            labels = [int(v) for v in logits.argmax(1)]
        return [{"id": int(node), "label": lab, "probs": [round(float(p), 6) for p in pr]}
                for node, lab, pr in zip(nodes, labels, probs)]  # fmt: skip

    def sample_inputs(self, run_dir: Path) -> list[str]:
        return list(SAMPLE_INPUTS)


TASK = GbpTask()
