"""longtail hooks: LiVT's MGP (stage `pretrain`: MAE on the LT images) and Balanced Fine-Tuning (stage `finetune`).

`mlkit longtail pretrain` is `train` with stage=pretrain (the model is the MAE, its checkpoint feeds `--init`);
`train` fine-tunes a timm ViT with a long-tail loss, starting from `--init PATH` (an MGP checkpoint), `mgp` (MGP runs
inline for mgp.epochs before epoch 1, the default) or `random`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mlkit.core.errors import DataError, UsageError
from mlkit.core.runtime import Ctx
from mlkit.core.task import Task, TrainState
from mlkit.tasks.longtail import evaluation as E
from mlkit.tasks.longtail import pipeline as P
from mlkit.tasks.longtail import presets
from mlkit.tasks.longtail.data import read_image
from mlkit.tasks.longtail.model import MAE, build_vit, encoder_state, load_encoder
from mlkit.tasks.longtail.steps import Bundle, bft_epoch, logits_of, make_bundle, mgp_epoch, mgp_val_loss


class LTNet(nn.Module):
    """The classifier ViT, plus an EMA copy of it (frozen, saved with the weights) when cfg ema > 0."""

    def __init__(self, vit: nn.Module, ema_decay: float = 0.0) -> None:
        super().__init__()
        self.vit = vit
        self.ema = None
        if ema_decay > 0:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(vit, decay=ema_decay)
            self.ema.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit(x)

    def scorer(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.vit


def _mae(cfg: dict) -> MAE:
    m = cfg["mgp"]
    enc = build_vit(cfg["arch"], int(cfg["input_size"]), 0)
    return MAE(enc, int(m["decoder_dim"]), int(m["decoder_depth"]), int(m["decoder_heads"]), float(m["mask_ratio"]),
               bool(m["norm_pix"]))  # fmt: skip


def _adamw(module: nn.Module, lr: float, wd: float, betas: Any, layer_decay: float | None = None) -> Any:
    from timm.optim import create_optimizer_v2

    target = module.vit if isinstance(module, LTNet) else module
    return create_optimizer_v2(
        target, "adamw", lr=lr, weight_decay=wd, betas=tuple(betas), layer_decay=layer_decay
    )


def read_init(path: str) -> dict[str, torch.Tensor]:
    """Encoder weights from an MGP checkpoint (run dir, .pt), a longtail fine-tune checkpoint or a plain state_dict."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "weights" / ("best.pt" if (p / "weights" / "best.pt").is_file() else "last.pt")
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(
            "init checkpoint not found", str(p), "Give --init an MGP run dir or .pt file."
        ) from None
    except Exception as e:
        raise DataError(f"cannot read init checkpoint ({type(e).__name__})", str(p),
                        "Give a checkpoint written by `mlkit longtail pretrain` or a torch state_dict.") from None  # fmt: skip
    sd = ck.get("state_dict", ck) if isinstance(ck, dict) else {}
    if any(k.startswith("encoder.") for k in sd):
        return encoder_state(sd)
    if any(k.startswith("vit.") for k in sd):
        return {k[4:]: v for k, v in sd.items() if k.startswith("vit.")}
    if not any(k.startswith(("blocks.", "patch_embed.")) for k in sd):
        raise DataError(
            "no ViT weights in the init checkpoint", str(p), "Expected MAE (encoder.*) or timm ViT keys."
        )
    return dict(sd)


def _cpu_threads(cfg: dict, ctx: Ctx) -> None:
    if int(cfg["threads"]) > 0 and ctx.device == "cpu":
        torch.set_num_threads(int(cfg["threads"]))


class LongTailTask(Task):
    def finalize(self, cfg: dict, explicit: frozenset[str], mode: str) -> dict:
        return presets.finalize(cfg, explicit, mode)

    def monitor(self, cfg: dict) -> tuple[str, str]:
        if cfg["select"] == "best":
            return ("val/loss", "min") if cfg["stage"] == "pretrain" else ("val/balanced_acc", "max")
        return "train/images", "max"  # select last: the final epoch's weights are best.pt

    # ---------------------------------------------------------------- train
    def load_data(self, cfg: dict, ctx: Ctx) -> Bundle:
        _cpu_threads(cfg, ctx)
        data = P.load(cfg, ctx.log)
        b = make_bundle(cfg, data, ctx.device)
        counts = data.counts
        ctx.log(f"{data.source}: {len(data.train)} train images (n_j {int(counts.max())}..{int(counts.min())}, "
                f"imbalance {counts.max() / max(counts.min(), 1):.1f}), {len(data.test)} test, {len(data.classes)} "
                f"classes; groups {', '.join(f'{k} {len(v)}' for k, v in E.groups(counts).items())}")  # fmt: skip
        if ctx.run_dir is not None and ctx.is_main and data.subset:
            (ctx.run_dir / "lt_subset.txt").write_text(
                "".join(f"{i} {int(y)}\n" for i, y in zip(data.subset, data.train.labels)), encoding="utf-8"
            )
        return b

    def checkpoint_extra(self, cfg: dict, ctx: Ctx, b: Bundle) -> dict:
        return {"classes": list(b.data.classes), "counts": [int(v) for v in b.counts], "mean": b.mean, "std": b.std,
                "stage": cfg["stage"]}  # fmt: skip

    def build_model(self, cfg: dict, ctx: Ctx, b: Bundle) -> nn.Module:
        if cfg["stage"] == "pretrain":
            return _mae(cfg).to(ctx.device)
        vit = build_vit(cfg["arch"], int(cfg["input_size"]), len(b.data.classes), float(cfg["drop_path"]))
        if cfg["init"] not in ("mgp", "random"):
            missing = load_encoder(vit, read_init(cfg["init"]))
            ctx.log(f"init from {cfg['init']}; fresh: {', '.join(missing) or 'nothing'}")
        return LTNet(vit, float(cfg["ema"])).to(ctx.device)

    def build_optimizer(self, cfg: dict, model: nn.Module) -> tuple[Any, Any]:
        if cfg["stage"] == "pretrain":
            m = cfg["mgp"]
            return _adamw(model, float(cfg["lr"]), float(m["weight_decay"]), m["betas"]), None
        ld = float(cfg["layer_decay"])
        return _adamw(
            model, float(cfg["lr"]), float(cfg["weight_decay"]), cfg["betas"], ld if ld < 1 else None
        ), None

    def train_epoch(self, cfg: dict, ctx: Ctx, st: TrainState) -> dict:
        b: Bundle = st.data
        out: dict[str, float] = {"train/images": float((st.epoch + 1) * len(b.train))}
        if cfg["stage"] == "pretrain":
            loss = mgp_epoch(cfg, ctx, st.net, st.optimizer, b, st.epoch, int(cfg["epochs"]), float(cfg["lr"]),
                             st.generator, st.tick)  # fmt: skip
            out["train/loss"] = ctx.all_reduce_mean(loss)
            return out
        if st.epoch == 0 and cfg["init"] == "mgp" and int(cfg["mgp"]["epochs"]) > 0:
            out["train/mgp_loss"] = self._inline_mgp(cfg, ctx, st)
        loss = bft_epoch(cfg, ctx, st.net, st.optimizer, b, st.epoch, st.generator, st.tick, st.model.ema)
        out["train/loss"] = ctx.all_reduce_mean(loss)
        return out

    def _inline_mgp(self, cfg: dict, ctx: Ctx, st: TrainState) -> float:
        """MGP on the LT train images before the first BFT epoch; the encoder then initialises the classifier."""
        m, epochs = cfg["mgp"], int(cfg["mgp"]["epochs"])
        mae = _mae(cfg).to(ctx.device)
        net = ctx.wrap(mae)
        opt = _adamw(mae, float(m["lr"]), float(m["weight_decay"]), m["betas"])
        loss = 0.0
        for e in ctx.track(range(epochs), "MGP epochs"):
            gen = torch.Generator().manual_seed(int(cfg["seed"]) * 1_000_003 + 100_003 + e)
            loss = mgp_epoch(cfg, ctx, net, opt, st.data, e, epochs, float(m["lr"]), gen, st.tick)
            if st.budget.spent:
                break
        load_encoder(st.model.vit, encoder_state(mae.state_dict()))
        if st.model.ema is not None:
            st.model.ema.set(st.model.vit)
        ctx.log(f"MGP: {epochs} epochs, last loss {loss:.4f}; encoder -> classifier")
        return ctx.all_reduce_mean(loss)

    def validate(self, cfg: dict, ctx: Ctx, st: TrainState) -> dict:
        b: Bundle = st.data
        if cfg["stage"] == "pretrain":
            return {"val/loss": mgp_val_loss(st.model, b.val, cfg, ctx.device)}
        z, y = logits_of(st.model.scorer(), b.val, cfg, ctx.device)
        m = E.metrics(
            E.scores(z, cfg["loss"], b.counts, float(cfg["eval"]["posthoc_tau"])), y, b.counts, "val"
        )
        return {k: v for k, v in m.items() if not k.startswith("_")}

    def test(self, cfg: dict, ctx: Ctx, st: TrainState) -> dict:
        b: Bundle = st.data
        if cfg["stage"] == "pretrain":
            if ctx.run_dir is not None and ctx.is_main:
                presets.reconstruction_png(ctx.run_dir / "reconstructions.png", st.model, b.test, ctx.device)
            return {"test/loss": mgp_val_loss(st.model, b.test, cfg, ctx.device)}
        return self._test_metrics(cfg, ctx, st.model, b, ctx.run_dir)

    def _test_metrics(self, cfg: dict, ctx: Ctx, model: LTNet, b: Bundle, folder: Path | None) -> dict:
        z, y = logits_of(model.scorer(), b.test, cfg, ctx.device)
        m = E.metrics(E.scores(z, cfg["loss"], b.counts, float(cfg["eval"]["posthoc_tau"])), y, b.counts)
        if folder is not None and ctx.is_main:
            E.write_reports(folder, b.data.classes, b.counts, m, y)
            presets.write_samples(folder / "samples", b.data.test, b.data.classes)
        return {k: v for k, v in m.items() if not k.startswith("_")}

    # ---------------------------------------------------------------- eval / predict
    def restore(self, cfg: dict, ctx: Ctx, ckpt: dict) -> tuple[LTNet, dict]:
        if cfg["stage"] == "pretrain":
            raise UsageError("this is an MGP (pretrain) checkpoint: it has no classifier", "--model",
                             "Fine-tune it first: `mlkit longtail train --init <this run>`.")  # fmt: skip
        _cpu_threads(cfg, ctx)
        extra = ckpt.get("extra", {})
        vit = build_vit(cfg["arch"], int(cfg["input_size"]), len(extra["classes"]))
        model = LTNet(vit, float(cfg["ema"]))
        model.load_state_dict(ckpt["state_dict"])
        return model.to(ctx.device).eval(), extra

    def evaluate(self, cfg: dict, ctx: Ctx, restored: tuple[LTNet, dict]) -> dict:
        from mlkit.core.data import check_classes

        model, extra = restored
        data = P.load(cfg, ctx.log)
        check_classes(len(data.classes), len(extra["classes"]), data.source)
        ev = P.transform(cfg, False, extra["mean"], extra["std"])
        b = Bundle(data, extra["mean"], extra["std"], None, None, None, P.ImageSet(data.test, ev), None, None)  # type: ignore[arg-type]
        counts = np.asarray(extra["counts"])  # groups and the prior come from the model's own train list
        z, y = logits_of(model.scorer(), b.test, cfg, ctx.device)
        m = E.metrics(E.scores(z, cfg["loss"], counts, float(cfg["eval"]["posthoc_tau"])), y, counts)
        if ctx.run_dir is not None and ctx.is_main:
            E.write_reports(ctx.run_dir / "eval", list(extra["classes"]), counts, m, y)
            ctx.log(f"per-class accuracy and confusion matrix in {ctx.run_dir / 'eval'}")
        return {k: v for k, v in m.items() if not k.startswith("_")}

    def parse_record(self, cfg: dict, restored: Any, line: str, n: int) -> Path:
        p = Path(line.strip()).expanduser()
        if not p.is_file():
            raise DataError(
                f"image not found: {line.strip()!r}", f"input line {n}", "Give one image path per line."
            )
        return p

    def predict_batch(self, cfg: dict, ctx: Ctx, restored: tuple[LTNet, dict], records: list[Path]) -> list:
        model, extra = restored
        tf = P.transform(cfg, False, extra["mean"], extra["std"])
        x = torch.stack([tf(read_image(p)) for p in records]).to(ctx.device)
        with torch.no_grad():
            z = model.scorer()(x).float().cpu()
        prob = E.scores(z, cfg["loss"], np.asarray(extra["counts"]), float(cfg["eval"]["posthoc_tau"]))
        k = min(int(cfg["predict"]["topk"]), prob.shape[1])
        rows = []
        for p, row in zip(records, prob):
            top = torch.topk(row, k)
            rows.append({"id": str(p), "label": int(top.indices[0]), "probs": [round(float(v), 6) for v in row],
                         "topk": [{"class": int(j), "name": extra["classes"][int(j)], "score": round(float(s), 6)}
                                  for s, j in zip(top.values, top.indices)]})  # fmt: skip
        return rows

    def expand_input(self, folder: Path) -> Any:
        from mlkit.tasks.longtail.data import IMAGE_EXT

        return (str(p) for p in sorted(folder.rglob("*")) if p.suffix.lower() in IMAGE_EXT)

    def sample_inputs(self, run_dir: Path) -> list[str]:
        return [str(p) for p in sorted((run_dir / "samples").glob("*.png"))[:4]]


TASK = LongTailTask()
