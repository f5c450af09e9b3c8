"""kge hooks: DKGE / TransE trained with the original margin loss, evaluated with filtered rank-based metrics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlkit.core.artifact import cached
from mlkit.core.config import get_dotted, set_dotted
from mlkit.core.errors import DataError, UsageError
from mlkit.core.task import Task, TrainState
from mlkit.tasks.kge import context as C
from mlkit.tasks.kge import data as D
from mlkit.tasks.kge import engine as G
from mlkit.tasks.kge.model import build

PAPER = {"arch": "dkge", "model.dim": 100, "model.context": 30, "model.norm": 2, "model.margin": 10.0,
         "epochs": 21, "batch_size": 500, "lr": 0.005, "optimizer": "sgd", "neg": "bern-global",
         "eval.filter": "train", "eval.ties": "optimistic", "model.adj": "truncated"}  # fmt: skip
CHOICES = {"arch": ("dkge", "transe"), "format": ("auto", "openke", "tsv"), "optimizer": ("sgd", "adam"),
           "neg": ("bern-global", "bern", "unif"), "eval.filter": ("all", "train", "none"),
           "eval.ties": ("optimistic", "realistic", "pessimistic"), "model.adj": ("full", "truncated"),
           "online.affected": ("subgraph", "code"), "model.norm": (1, 2)}  # fmt: skip


def data_root(cfg: dict) -> Path:
    """--data, or the embedded default (a generated dynamic KG in the OpenKE layout, cached)."""
    if cfg.get("data"):
        return Path(cfg["data"])
    s = cfg["synth"]
    settings = {k: int(s[k]) for k in ("entities", "relations", "triples", "snapshots")} | {"seed": 0, "v": 2}
    return cached(
        "kge-data",
        settings,
        lambda tmp: D.write_dynamic(
            tmp,
            int(s["entities"]),
            int(s["relations"]),
            int(s["triples"]),
            seed=0,
            n_snap=int(s["snapshots"]),
        ),
    )


def load(cfg: dict) -> D.KG:
    return D.load_kg(data_root(cfg), cfg["format"], cfg.get("snapshot"))


def contexts(cfg: dict, kg: D.KG) -> C.Contexts | None:
    if cfg["arch"] != "dkge":
        return None
    m = cfg["model"]
    return C.build(kg.train, kg.n_ent, kg.n_rel, int(m["context"]), m["adj"], bool(m["mask_pads"]))


def make_optimizer(cfg: dict, params: Any, lr: float | None = None) -> torch.optim.Optimizer:
    lr = float(cfg["lr"] if lr is None else lr)
    return torch.optim.Adam(params, lr=lr) if cfg["optimizer"] == "adam" else torch.optim.SGD(params, lr=lr)


@dataclass
class Restored:
    model: torch.nn.Module
    kg: D.KG
    ent_id: dict[str, int]
    rel_id: dict[str, int]


class KgeTask(Task):
    def finalize(self, cfg: dict, explicit: frozenset[str], mode: str) -> dict:
        if cfg.get("preset") not in (None, "", "paper"):
            raise UsageError(f"unknown preset '{cfg['preset']}'", "--preset", "Use paper.")
        if cfg.get("preset") == "paper":
            for k, v in PAPER.items():
                if k not in explicit:
                    set_dotted(cfg, k, v)
        for k, allowed in CHOICES.items():
            if get_dotted(cfg, k) not in allowed:
                raise UsageError(
                    f"bad {k} '{get_dotted(cfg, k)}'", k, f"Use one of: {', '.join(map(str, allowed))}."
                )
        m = cfg["model"]
        if int(m["dim"]) < 1 or int(m["context"]) < 1 or float(m["margin"]) <= 0:
            raise UsageError("model.dim and model.context must be >= 1 and model.margin > 0", "model")
        if int(cfg["predict"]["k"]) < 1 or int(cfg["eval"]["chunk"]) < 1:
            raise UsageError("predict.k and eval.chunk must be >= 1", "predict.k / eval.chunk")
        return cfg

    def patience(self, cfg: dict) -> int | None:
        p = int(cfg["eval"]["patience"])
        return p if p > 0 else None

    def load_data(self, cfg: dict, ctx: Any) -> dict:
        kg = load(cfg)
        ctx.log(f"kge: {kg.source}: {kg.n_ent} entities, {kg.n_rel} relations, "
                f"{len(kg.train)}/{len(kg.valid)}/{len(kg.test)} triples")  # fmt: skip
        return {
            "kg": kg,
            "contexts": contexts(cfg, kg),
            "negs": G.Negatives(kg.train, kg.n_ent, kg.n_rel, cfg["neg"]),
        }

    def build_model(self, cfg: dict, ctx: Any, data: dict) -> torch.nn.Module:
        kg = data["kg"]
        model = build(cfg["arch"], kg.n_ent, kg.n_rel, cfg["model"]).to(ctx.device)
        if data["contexts"] is not None:
            model.set_contexts(data["contexts"])
        return model

    def build_optimizer(self, cfg: dict, model: torch.nn.Module) -> tuple[Any, Any]:
        return make_optimizer(cfg, model.parameters()), None

    def checkpoint_extra(self, cfg: dict, ctx: Any, data: dict) -> dict:
        kg = data["kg"]
        return {"entities": list(kg.entities), "relations": list(kg.relations)}

    def train_epoch(self, cfg: dict, ctx: Any, st: TrainState) -> dict:
        kg = st.data["kg"]
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=st.generator)))
        loss = G.train_pass(st.model, st.optimizer, kg.train, st.data["negs"], rng, int(cfg["batch_size"]),
                            float(cfg["model"]["margin"]), ctx.device, tick=st.tick, net=st.net,
                            shard=(ctx.dist.rank, ctx.dist.world_size))  # fmt: skip
        return {"train/loss": ctx.all_reduce_mean(loss)}

    def _eval(self, cfg: dict, model: torch.nn.Module, kg: D.KG, split: str, n: int | None = None) -> dict:
        tr = getattr(kg, "valid" if split == "val" else "test")
        if n is not None:
            tr = tr[:n]
        if len(tr) == 0:
            raise DataError(f"no {'valid' if split == 'val' else 'test'} triples", kg.source,
                            "Add valid2id.txt/test2id.txt (OpenKE) or valid.txt/test.txt (TSV).")  # fmt: skip
        e = cfg["eval"]
        return G.evaluate(model, kg, tr, split, e["ties"], e["filter"], int(e["chunk"]), raw=split != "val")

    def validate(self, cfg: dict, ctx: Any, st: TrainState) -> dict:
        return self._eval(cfg, st.model, st.data["kg"], "val", int(cfg["eval"]["valid_max"]))

    def test(self, cfg: dict, ctx: Any, st: TrainState) -> dict:
        return self._eval(cfg, st.model, st.data["kg"], "test")

    def restore(self, cfg: dict, ctx: Any, ckpt: dict) -> Restored:
        kg = load(cfg)
        ents, rels = ckpt["extra"]["entities"], ckpt["extra"]["relations"]
        if ents != kg.entities or rels != kg.relations:
            raise DataError("the data's entities/relations differ from the model's", kg.source,
                            "Evaluate on the snapshot the model was trained on, or run `mlkit kge update`.")  # fmt: skip
        model = build(cfg["arch"], kg.n_ent, kg.n_rel, cfg["model"])
        model.load_state_dict(ckpt["state_dict"])
        model = model.to(ctx.device)
        cx = contexts(cfg, kg)
        if cx is not None:
            model.set_contexts(cx)
        return Restored(
            model.eval(), kg, {n: i for i, n in enumerate(ents)}, {n: i for i, n in enumerate(rels)}
        )

    def evaluate(self, cfg: dict, ctx: Any, restored: Restored) -> dict:
        return self._eval(cfg, restored.model, restored.kg, "test")

    def parse_record(self, cfg: dict, restored: Restored, line: str, n: int) -> tuple[str, str, int, int]:
        parts = [p.strip() for p in line.split("\t")] if "\t" in line else line.split()
        fix = (
            "Write 'head relation ?' or '? relation tail' with names from the model's entity/relation lists."
        )
        if len(parts) != 3 or (parts[0] == "?") == (parts[2] == "?"):
            raise DataError(f"bad query '{line}'", f"input line {n}", fix)
        side = "tail" if parts[2] == "?" else "head"
        anchor = parts[0] if side == "tail" else parts[2]
        if anchor not in restored.ent_id:
            raise DataError(f"unknown entity '{anchor}'", f"input line {n}", fix)
        if parts[1] not in restored.rel_id:
            raise DataError(f"unknown relation '{parts[1]}'", f"input line {n}", fix)
        return line, side, restored.ent_id[anchor], restored.rel_id[parts[1]]

    def predict_batch_size(self, cfg: dict) -> int:
        return int(cfg["eval"]["chunk"])

    def predict_batch(self, cfg: dict, ctx: Any, restored: Restored, records: list) -> list[dict]:
        from mlkit.kernels.kge_rank import distances

        E, R = G.embeddings(restored.model)
        k = min(int(cfg["predict"]["k"]), restored.kg.n_ent)
        a = torch.as_tensor([r[2] for r in records], device=E.device)
        q = torch.as_tensor([r[3] for r in records], device=E.device)
        sign = torch.as_tensor([1.0 if r[1] == "tail" else -1.0 for r in records], device=E.device)
        d = distances(E[a] + sign.unsqueeze(1) * R[q], E, restored.model.norm)
        dist, idx = torch.topk(d, k, dim=1, largest=False)
        probs = torch.softmax(-dist, dim=1)
        rows = []
        for (line, side, _, _), di, ii, pi in zip(records, dist.tolist(), idx.tolist(), probs.tolist()):
            rows.append(
                {
                    "id": line,
                    "direction": side,
                    "label": int(ii[0]),
                    "probs": [round(v, 6) for v in pi],
                    "entities": [restored.kg.entities[j] for j in ii],
                    "distances": [round(v, 5) for v in di],
                }
            )
        return rows

    def sample_inputs(self, run_dir: Path) -> list[str]:
        from mlkit.core.checkpoint import load as load_ckpt

        ck = load_ckpt(Path(run_dir) / "weights" / "best.pt")
        e, r = ck["extra"]["entities"], ck["extra"]["relations"]
        return [f"{e[0]}\t{r[0]}\t?", f"?\t{r[-1]}\t{e[1]}", f"{e[-1]} {r[0]} ?"]


TASK = KgeTask()
