"""The spec's §7 experiment on a dynamic KG (YAGO-3SP): entity sample, offline / online / retrain / stale / TransE.

Used by `benchmarks/kge_dynamic.py` and the slow test. Every run trains with the same loss, negatives, epochs,
dimension and optimiser; seconds are wall-clock including the context preprocessing of each run.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch

from mlkit.tasks.kge import context as C
from mlkit.tasks.kge import data as D
from mlkit.tasks.kge import engine as G
from mlkit.tasks.kge import online
from mlkit.tasks.kge.model import build


def sample_entities(kgs: list[D.KG], frac: float, seed: int) -> list[D.KG]:
    """Keep a fixed random fraction of the entities (by name, the same set for every snapshot) and the triples
    whose endpoints are both kept."""
    names = sorted(set().union(*(set(k.entities) for k in kgs)))
    rng = np.random.default_rng(seed)
    keep = {names[i] for i in rng.permutation(len(names))[: int(round(frac * len(names)))]}
    out = []
    for k in kgs:
        splits = {}
        for s in D.SPLITS:
            rows = [(k.entities[h], k.relations[r], k.entities[t]) for h, r, t in getattr(k, s).tolist()]
            splits[s] = [x for x in rows if x[0] in keep and x[2] in keep]
        out.append(D.from_named(splits, k.source + f" (entity sample {frac:g}, seed {seed})"))
    return out


def default_cfg(dim: int = 50, epochs: int = 21, optimizer: str = "sgd", lr: float = 0.005) -> dict:
    return {"arch": "dkge", "epochs": epochs, "batch_size": 500, "lr": lr, "optimizer": optimizer,
            "neg": "bern-global", "model": {"dim": dim, "context": 30, "norm": 2, "margin": 10.0, "adj": "full",
                                            "mask_pads": False},
            "online": {"affected": "subgraph", "epochs": None},
            "eval": {"ties": "realistic", "filter": "all", "chunk": 256}}  # fmt: skip


def train_offline(
    kg: D.KG, cfg: dict, seed: int = 0, log=None, cpu: list | None = None
) -> tuple[torch.nn.Module, float]:  # noqa: ANN001, E501
    """Train from scratch on kg; returns the model and wall seconds (contexts included); appends the process CPU
    seconds to `cpu` when given."""
    from mlkit.tasks.kge.task import make_optimizer

    t0, c0 = time.perf_counter(), time.process_time()
    torch.manual_seed(seed)
    model = build(cfg["arch"], kg.n_ent, kg.n_rel, cfg["model"])
    if cfg["arch"] == "dkge":
        m = cfg["model"]
        model.set_contexts(
            C.build(kg.train, kg.n_ent, kg.n_rel, int(m["context"]), m["adj"], bool(m["mask_pads"]))
        )
    opt = make_optimizer(cfg, model.parameters())
    negs = G.Negatives(kg.train, kg.n_ent, kg.n_rel, cfg["neg"])
    rng = np.random.default_rng(seed)
    for ep in range(int(cfg["epochs"])):
        loss = G.train_pass(model, opt, kg.train, negs, rng, int(cfg["batch_size"]), float(cfg["model"]["margin"]),
                            "cpu")  # fmt: skip
        if log:
            log(f"{cfg['arch']} epoch {ep + 1}: loss {loss:.4f} ({time.process_time() - c0:.0f} CPU s)")
    if cpu is not None:
        cpu.append(time.process_time() - c0)
    return model, time.perf_counter() - t0


def run(
    root: Path,
    frac: float = 0.5,
    seed: int = 0,
    cfg: dict | None = None,
    snaps: tuple[int, int] = (1, 2),
    log=None,
) -> dict:  # noqa: ANN001
    """(a) DKGE offline on G1', (b) online update G1'->G2', (c) DKGE retrain on G2', (d) stale (a) on G2',
    (e) TransE retrain on G2'. Returns metrics and seconds per run plus the region sizes."""
    cfg = cfg or default_cfg()
    g1, g2 = sample_entities([D.load_kg(root, snapshot=s) for s in snaps], frac, seed)
    e = cfg["eval"]

    def ev(model: torch.nn.Module, kg: D.KG, region: np.ndarray | None = None) -> dict:
        r = G.evaluate(
            model, kg, kg.test, "test", e["ties"], e["filter"], int(e["chunk"]), raw=False, region=region
        )
        return {k.removeprefix("test/"): v for k, v in r.items() if "per_s" not in k}

    out: dict = {
        "g1": {"entities": g1.n_ent, "relations": g1.n_rel, "train": len(g1.train), "test": len(g1.test)},
        "g2": {"entities": g2.n_ent, "relations": g2.n_rel, "train": len(g2.train), "test": len(g2.test)},
    }
    cpu: list[float] = []
    model_a, sec_a = train_offline(g1, cfg, seed, log, cpu)
    out["a_offline_g1"] = {**ev(model_a, g1), "seconds": sec_a, "cpu_seconds": cpu[-1]}
    stale = build("dkge", g2.n_ent, g2.n_rel, cfg["model"])
    online.carry_over(model_a, stale, g1, g2)
    m = cfg["model"]
    stale.set_contexts(
        C.build(g2.train, g2.n_ent, g2.n_rel, int(m["context"]), m["adj"], bool(m["mask_pads"]))
    )
    updated = copy.deepcopy(stale)
    region, secs = online.update(model_a, updated, g1, g2, cfg, "cpu", seed, log)
    touched = region.aff_e | region.new_e
    in_region = touched[g2.test[:, 0]] | touched[g2.test[:, 2]] | region.new_r[g2.test[:, 1]]
    out["region"] = {**region.summary(), "t_aff_fraction": len(region.t_aff) / len(g2.train)}
    out["b_update"] = {**ev(updated, g2, in_region), **secs}
    model_c, sec_c = train_offline(g2, cfg, seed, log, cpu)
    out["c_retrain"] = {**ev(model_c, g2, in_region), "seconds": sec_c, "cpu_seconds": cpu[-1]}
    out["d_stale"] = ev(stale, g2, in_region)
    model_e, sec_e = train_offline(g2, {**cfg, "arch": "transe"}, seed, log, cpu)
    out["e_transe"] = {**ev(model_e, g2, in_region), "seconds": sec_e, "cpu_seconds": cpu[-1]}
    return out
