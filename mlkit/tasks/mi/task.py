"""mi hooks: train a critic set by maximising the chosen bound; its held-out value is the MI estimate (nats)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlkit.core.artifact import cached
from mlkit.core.config import apply_preset
from mlkit.core.errors import DataError, RunFailure, UsageError
from mlkit.core.runtime import Ctx
from mlkit.core.task import Task, TrainState
from mlkit.tasks.mi import data as D
from mlkit.tasks.mi import report as R
from mlkit.tasks.mi import vision as V
from mlkit.tasks.mi.model import Critics
from mlkit.tasks.mi.objective import CONDS, ESTIMATORS, Est, held_out, train_steps
from mlkit.tasks.mi.source import Source


def check(cfg: dict, explicit: frozenset[str] = frozenset()) -> dict:
    """Value checks and derived keys shared by train and `estimate` (UsageError, exit 2). Idempotent."""
    if cfg["estimator"] not in ESTIMATORS:
        raise UsageError(f"unknown estimator '{cfg['estimator']}'", "--estimator", f"Use one of: {', '.join(ESTIMATORS)}.")
    if cfg["cond"] not in CONDS:
        raise UsageError(f"unknown cond '{cfg['cond']}'", "--cond", f"Use one of: {', '.join(CONDS)}.")
    if cfg["arch"] not in ("separable", "concat"):
        raise UsageError(f"unknown critic architecture '{cfg['arch']}'", "--arch", "Use separable or concat.")
    kinds = D.KINDS + D.VIEW_KINDS + ("images",)
    if cfg["synth"]["kind"] not in kinds:
        raise UsageError(f"unknown synth kind '{cfg['synth']['kind']}'", "--kind", f"Use one of: {', '.join(kinds)}.")
    v = cfg["vision"]
    if not (v["size"] >= 8 and v["width"] >= 1 and v["tau"] > 0 and v["probe_max"] >= 10 and v["probe_few"] >= 10):
        raise UsageError("vision needs size >= 8, width >= 1, tau > 0, probe_max and probe_few >= 10", "vision")
    if not isinstance(cfg["splits"], int) or cfg["splits"] < 1:
        raise UsageError(f"splits must be an integer >= 1, got {cfg['splits']!r}", "--splits")
    if cfg["estimator"] != "demi":
        if "splits" in explicit and cfg["splits"] != 1:
            raise UsageError("--splits decomposes DEMI only", "--splits", "Add --estimator demi, or drop --splits.")
        cfg["splits"] = 1
    if cfg["batch_size"] < 2:
        raise UsageError("batch_size must be >= 2 (one positive and its negatives)", "--batch-size")
    if not (cfg["clip"] > 0 and 0 < cfg["ema"] < 1 and cfg["contrast"] >= 0 and cfg["eval_batches"] >= 1):
        raise UsageError("need clip > 0, 0 < ema < 1, contrast >= 0, eval_batches >= 1", "config")
    if cfg["hidden"] < 1 or cfg["layers"] < 1 or cfg["embed"] < 1 or cfg["seeds"] < 1:
        raise UsageError("hidden, layers, embed and seeds must be >= 1", "config")
    sp = cfg["split"]
    if not (isinstance(sp, list) and len(sp) == 3 and all(isinstance(v, (int, float)) and v > 0 for v in sp)
            and sum(sp) <= 1.0 + 1e-9):  # fmt: skip
        raise UsageError(f"split must be three positive fractions summing to <= 1, got {sp!r}", "split")
    syn = cfg["synth"]
    if not (syn["mi"] > 0 and syn["dim"] >= 1 and syn["rows"] >= 50):
        raise UsageError("synth needs mi > 0, dim >= 1, rows >= 50", "synth")
    if cfg["steps"] is not None:
        if not isinstance(cfg["steps"], int) or cfg["steps"] < 1:
            raise UsageError(f"steps must be an integer >= 1, got {cfg['steps']!r}", "--steps")
        cfg["steps_per_epoch"] = min(int(cfg["steps_per_epoch"]), cfg["steps"])
        cfg["epochs"] = math.ceil(cfg["steps"] / cfg["steps_per_epoch"])
    if cfg["steps_per_epoch"] < 1:
        raise UsageError("steps_per_epoch must be >= 1", "steps_per_epoch")
    return cfg


def embedded_default(cfg: dict, log: Any = None) -> Path:
    """The known-truth set of section synth in the real layout (x.npy, y.npy, truth.json), cached."""
    s = cfg["synth"]
    settings = {"kind": s["kind"], "rows": int(s["rows"]), "seed": int(s["seed"])}
    if s["kind"] in D.KINDS:
        settings.update(mi=float(s["mi"]), dim=int(s["dim"]))
    return cached(f"mi-{s['kind']}", settings,
                  lambda tmp: D.write_synth(tmp, s["kind"], float(s["mi"]), int(s["dim"]), int(s["rows"]),
                                            int(s["seed"])), log=log)  # fmt: skip


def is_vision(cfg: dict) -> bool:
    """Representation learning on images: --data is a CIFAR/ImageFolder root, or the embedded `--kind images`."""
    return V.is_image_root(Path(cfg["data"])) if cfg["data"] else cfg["synth"]["kind"] == "images"


def open_source(cfg: dict, ctx: Ctx) -> Source | V.VisionSource:
    """The run's batches: a stream of the generator, the rows of --data / the embedded default, or images."""
    if is_vision(cfg):
        root = Path(cfg["data"]) if cfg["data"] else cached("mi-images", {"digits": 1797}, V.write_default, log=ctx.log)
        src = V.VisionSource(root, int(cfg["vision"]["size"]), ctx.device)
        ctx.log(f"images: {len(src.train)} train / {len(src.test)} test, {len(src.names)} classes ({root})")
        if cfg["estimator"] == "demi" and cfg["cond"] == "oracle":
            raise UsageError("--cond oracle needs a known generator, not images", "--cond", "Use --cond is or sir.")
        return src
    if cfg["stream"]:
        s = cfg["synth"]
        src = Source.from_stream(s["kind"], float(s["mi"]), int(s["dim"]), ctx.device)
    else:
        root = Path(cfg["data"]) if cfg["data"] else embedded_default(cfg, ctx.log)
        x, y, truth = D.load(root)
        src = Source.from_arrays(x, y, truth, cfg["split"], cfg["split_seed"], cfg["standardize"], ctx.device,
                                 str(root))  # fmt: skip
    if cfg["splits"] > src.dx:
        raise UsageError(f"--splits {cfg['splits']} exceeds x's {src.dx} columns", "--splits", "Use 1..dx.")
    if cfg["estimator"] == "demi" and cfg["cond"] == "oracle" and cfg["splits"] > 1 and src.oracle() is None:
        raise UsageError("--cond oracle needs data of a known generator (truth.json with kind and rho, or --stream)",
                         "--cond", "Use --cond is or sir on your own data.")  # fmt: skip
    return src


def build_critics(cfg: dict, dx: int, dy: int, device: Any, vision: bool = False) -> Critics | V.VisionCritics:
    if vision:
        v = cfg["vision"]
        return V.VisionCritics(cfg["splits"], int(v["width"]), int(cfg["embed"]), float(v["tau"])).to(device)
    return Critics(D.cuts(dx, cfg["splits"]), dy, cfg["arch"], cfg["hidden"], cfg["layers"], cfg["embed"]).to(device)


class MITask(Task):
    def finalize(self, cfg: dict, explicit: frozenset[str], mode: str) -> dict:
        cfg = check(apply_preset(cfg, explicit), explicit)
        if cfg["stream"] and cfg["data"] and "stream" not in explicit:  # --preset paper on your own rows
            cfg["stream"] = False
        if cfg["stream"] and cfg["data"]:
            raise UsageError("stream draws from the generator; it takes no --data", "--stream", "Drop one of them.")
        if cfg["stream"] and cfg["synth"]["kind"] not in D.KINDS:
            raise UsageError(f"stream needs a gaussian or cubic generator, not {cfg['synth']['kind']}", "--stream",
                             "Drop --stream: digits and markov are written as arrays once.")  # fmt: skip
        return cfg

    def repetitions(self, cfg: dict) -> int:
        return int(cfg["seeds"])

    def load_data(self, cfg: dict, ctx: Ctx) -> Source:
        return open_source(cfg, ctx)

    def build_model(self, cfg: dict, ctx: Ctx, data: Source) -> Critics:
        return build_critics(cfg, data.dx, data.dy, ctx.device, isinstance(data, V.VisionSource))

    def train_epoch(self, cfg: dict, ctx: Ctx, st: TrainState) -> dict:
        src: Source = st.data
        gen = st.generator
        if ctx.dist.enabled:  # every rank its own batches; gradients averaged after each backward
            gen = torch.Generator().manual_seed(int(gen.initial_seed()) + 7919 * ctx.dist.rank)
        est = Est.of(cfg)
        opt = _SyncedAdam(st.optimizer, st.model, ctx) if ctx.dist.enabled else st.optimizer
        r = train_steps(st.model, opt, src.draw(cfg["batch_size"]), est, cfg["steps_per_epoch"], gen,
                        oracle=src.oracle(), tick=st.tick)  # fmt: skip
        hist = r["history"]
        if not hist or not all(math.isfinite(v) for v in hist):
            raise RunFailure(f"the {cfg['estimator']} estimate diverged (NaN/inf) in epoch {st.epoch + 1}", "train",
                             "Lower --lr, or use a bounded estimator (infonce, smile, demi).")  # fmt: skip
        st.scratch.setdefault("history", []).extend(hist)
        st.scratch["last_std"] = float(np.std(hist))
        return {"train/loss": -float(np.mean(hist)), "train/mi": ctx.all_reduce_mean(float(np.mean(hist))),
                "train/mi_std": float(np.std(hist)), "train/steps_per_s": r["steps_per_s"]}  # fmt: skip

    def validate(self, cfg: dict, ctx: Ctx, st: TrainState) -> dict:
        return R.prefixed("val", _held(cfg, st.data, st.model, "val"), st.data, cfg)

    def test(self, cfg: dict, ctx: Ctx, st: TrainState) -> dict:
        out = R.prefixed("test", _held(cfg, st.data, st.model, "test"), st.data, cfg)
        out["test/train_last_std"] = float(st.scratch.get("last_std", float("nan")))
        if isinstance(st.data, V.VisionSource):
            out.update(_probe(cfg, ctx, st.model, st.data))
        if ctx.is_main and ctx.run_dir is not None and st.rep == 0:
            R.curve_png(ctx.run_dir / "results.csv", st.scratch.get("history", []), out, cfg,
                        ctx.run_dir / "mi_curve.png")  # fmt: skip
        return out

    def summarize(self, cfg: dict, results: list[dict[str, float]]) -> dict[str, float]:
        return R.over_seeds(results)

    def checkpoint_extra(self, cfg: dict, ctx: Ctx, data: Source) -> dict:
        if isinstance(data, V.VisionSource):
            ref = data.test[torch.randperm(len(data.test), generator=torch.Generator().manual_seed(5))[:256]]
            return {"vision": True, "size": data.size, "classes": list(data.names), "reference": ref.cpu()}
        ref = data.held_out("train", int(cfg["predict"]["reference"]), 1)[0][1].cpu() if not data.stream else \
            data.norm_y(D.sample(int(cfg["predict"]["reference"]), data.dy, data.truth["rho"], data.truth["kind"],
                                 torch.Generator().manual_seed(5))[1]).cpu()  # fmt: skip
        return {"dx": data.dx, "dy": data.dy, "mx": data.mx, "sx": data.sx, "my": data.my, "sy": data.sy,
                "reference": ref, "truth": dict(data.truth or {})}  # fmt: skip

    # ---------------------------------------------------------------- eval / predict
    def restore(self, cfg: dict, ctx: Ctx, ckpt: dict) -> dict:
        extra = ckpt.get("extra") or {}
        if extra.get("vision"):
            model = build_critics(cfg, 0, 0, ctx.device, vision=True)
            model.load_state_dict(ckpt["state_dict"])
            return {"model": model.eval(), "extra": extra}
        if "dx" not in extra:
            raise DataError("checkpoint lacks the mi extras (dx, dy, reference)", "--model", "Retrain with mlkit mi train.")
        model = build_critics(cfg, int(extra["dx"]), int(extra["dy"]), ctx.device)
        model.load_state_dict(ckpt["state_dict"])
        return {"model": model.eval(), "extra": extra}

    def evaluate(self, cfg: dict, ctx: Ctx, restored: dict) -> dict:
        ex = restored["extra"]
        if ex.get("vision"):
            if not is_vision(cfg):
                raise UsageError("this model was trained on images; eval needs an image --data", "--data",
                                 "Give a CIFAR folder or an ImageFolder root (or none: the embedded images).")  # fmt: skip
            src = open_source(cfg, ctx)
            out = R.prefixed("test", _held(cfg, src, restored["model"], "test"), src, cfg)
            return {**out, **_probe(cfg, ctx, restored["model"], src)}
        src = open_source(cfg, ctx)
        if (src.dx, src.dy) != (int(ex["dx"]), int(ex["dy"])):
            raise DataError(f"data has {src.dx}/{src.dy} columns, the model {ex['dx']}/{ex['dy']}", str(cfg["data"]),
                            "Evaluate on arrays shaped like the training data.")  # fmt: skip
        return R.prefixed("test", _held(cfg, src, restored["model"], "test"), src, cfg)

    def parse_record(self, cfg: dict, restored: dict, line: str, n: int) -> tuple[int, Any, Any]:
        ex = restored["extra"]
        if ex.get("vision"):
            return (n, *V.parse_image_pair(line, n, int(ex["size"])))
        return (n, *R.parse_pair(line, n, int(ex["dx"]), int(ex["dy"])))

    def predict_batch(self, cfg: dict, ctx: Ctx, restored: dict, records: list) -> list[dict]:
        ex = restored["extra"]
        dev = ctx.device
        if ex.get("vision"):
            pmi = V.pointwise(restored["model"], [r[1] for r in records], [r[2] for r in records], ex["reference"], dev)
            return [{"id": r[0], "score": round(float(v), 6), "label": int(v > 0)} for r, v in zip(records, pmi)]
        x = (torch.tensor([r[1] for r in records]) - ex["mx"]) / ex["sx"]
        y = (torch.tensor([r[2] for r in records]) - ex["my"]) / ex["sy"]
        pmi = R.pointwise(restored["model"], x.to(dev), y.to(dev), ex["reference"].to(dev))
        return [{"id": r[0], "score": round(float(v), 6), "label": int(v > 0)} for r, v in zip(records, pmi)]

    def predict_batch_size(self, cfg: dict) -> int:
        return 256

    def sample_inputs(self, run_dir: Path) -> list[str]:
        import yaml

        cfg = yaml.safe_load((Path(run_dir) / "config.yaml").read_text(encoding="utf-8"))
        if is_vision(cfg):
            return V.sample_pairs(Path(run_dir), 3)
        if cfg.get("data") or cfg["synth"]["kind"] in D.VIEW_KINDS:
            x, y, _ = D.load(Path(cfg["data"]) if cfg.get("data") else embedded_default(cfg))
        else:
            s = cfg["synth"]
            x, y = (v.numpy() for v in D.sample(3, s["dim"], D.rho_of_mi(s["mi"], s["dim"]), s["kind"],
                                                torch.Generator().manual_seed(1)))  # fmt: skip
        return [",".join(f"{v:.5g}" for v in x[i]) + ";" + ",".join(f"{v:.5g}" for v in y[i]) for i in range(3)]


def _probe(cfg: dict, ctx: Ctx, model: Any, src: V.VisionSource) -> dict[str, float]:
    """Linear-probe test accuracy with up to probe_max train labels (the standard protocol) and with probe_few
    labels (where a learned representation shows on easy data), for the trained encoder and a fresh random one."""
    v = cfg["vision"]
    torch.manual_seed(int(cfg["seed"]))
    rand = build_critics(cfg, 0, 0, ctx.device, vision=True)
    sizes = (int(v["probe_max"]), int(v["probe_few"]))
    keys = ("probe_acc", f"probe_acc_{sizes[1]}")
    out = {}
    for suffix, net in (("", model), ("_random", rand)):
        for key, acc in zip(keys, V.linear_probe(net, src, ctx.device, sizes)):
            out[f"test/{key}{suffix}"] = acc
    return out


def _held(cfg: dict, src: Source, model: Critics, split: str) -> dict:
    key = f"_held_{split}"
    if not hasattr(src, key):
        setattr(src, key, src.held_out(split, cfg["batch_size"], cfg["eval_batches"]))
    return held_out(model, getattr(src, key), Est.of(cfg), src.oracle(), seed=17)


class _SyncedAdam:
    """An optimizer wrapper that averages gradients across torchrun ranks before each step."""

    def __init__(self, opt: Any, model: Any, ctx: Ctx) -> None:
        self.opt, self.model, self.ctx = opt, model, ctx

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.opt.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        import torch.distributed as dist

        world = self.ctx.dist.world_size
        for p in self.model.parameters():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)
            p.grad /= world
        self.opt.step()


TASK = MITask()
