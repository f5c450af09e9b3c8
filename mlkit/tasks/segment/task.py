"""Segment hooks: TW-autoencoder (unrolled-LRP heatmaps as segmentation logits) and its U-Net baselines.

Epoch 1 starts with the classification pretraining stage (`pretrain_epochs`, all archs, same encoder); then every
epoch runs ceil(N_train / B) semi-supervised steps (std-unet: pixel-labelled batches only). val/miou picks best.pt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mlkit.core.artifact import cached
from mlkit.core.config import apply_preset
from mlkit.core.errors import DataError, UsageError
from mlkit.core.runtime import Ctx
from mlkit.core.task import Task, TrainState
from mlkit.tasks.segment import data as D
from mlkit.tasks.segment import evaluation as E
from mlkit.tasks.segment.decoder import RULES
from mlkit.tasks.segment.model import ARCHS, ENCODERS, SegNet, build_encoder
from mlkit.tasks.segment.steps import Bundle, pretrain, train_epoch


def _root(cfg: dict, ctx: Ctx | None = None) -> Path:
    if cfg["data"]:
        root = Path(cfg["data"]).expanduser()
        if not root.exists():
            raise DataError("dataset folder not found", str(root), "Give --data an existing folder.")
        return root
    sh = cfg["shapes"]
    settings = {
        "train": int(sh["train"]),
        "val": int(sh["val"]),
        "size": int(sh["size"]),
        "seed": int(sh["seed"]),
        "lo": float(sh["min_size"]),
        "hi": float(sh["max_size"]),
        "classes": int(sh.get("classes", 3)),
    }
    log = ctx.log if ctx is not None else None
    return cached("segment-shapes", settings, lambda tmp: D.write_shapes(tmp, **settings), log=log)


def _load(cfg: dict, ctx: Ctx | None = None) -> D.SegData:
    root = _root(cfg, ctx)
    fmt = D.detect_format(root) if cfg["format"] == "auto" else cfg["format"]
    if fmt == "voc":
        v = cfg["voc"]
        return D.load_voc(root, v["masks"], v["train_list"], v["pool"])
    return D.load_generic(root, int(cfg["seed"]))


def _model(cfg: dict, k: int) -> SegNet:
    return SegNet(
        cfg["arch"],
        build_encoder(cfg["encoder"], k, int(cfg["width"])),
        k,
        float(cfg["eps"]),
        float(cfg["heat_scale"]),
        cfg.get("lrp_rule", "epsilon"),  # checkpoints written before the option carry no key
        float(cfg.get("lrp_alpha", 1.0)),
    )


class SegmentTask(Task):
    def finalize(self, cfg: dict, explicit: frozenset[str], mode: str) -> dict:
        cfg = apply_preset(cfg, explicit)
        checks = (("arch", ARCHS), ("encoder", ENCODERS), ("grad_mode", ("oneshot", "iterative")),
                  ("format", ("auto", "generic", "voc")), ("budget_sampling", ("class-aware", "random")),
                  ("lrp_rule", RULES))  # fmt: skip
        for key, ok in checks:
            if cfg[key] not in ok:
                raise UsageError(f"unknown {key} '{cfg[key]}'", key, f"Use one of {', '.join(ok)}.")
        b = str(cfg["budget"]).strip()
        try:
            val = float(b[:-1]) if b.endswith("%") else int(b)
        except ValueError:
            raise UsageError(
                f"bad budget '{b}'", "budget", "Use an integer N or a percentage like 5%."
            ) from None
        if val < 0 or (b.endswith("%") and val > 100):
            raise UsageError(f"bad budget '{b}'", "budget", "Use 0 <= N, or 0% .. 100%.")
        if float(cfg["lrp_alpha"]) < 1:
            raise UsageError(f"bad lrp_alpha {cfg['lrp_alpha']}", "lrp_alpha", "Use alpha >= 1 (beta = alpha - 1).")
        u = cfg["uniform_masks"]
        if u is not None and (isinstance(u, bool) or not isinstance(u, (int, float)) or not 0.0 <= u <= 1.0):
            raise UsageError(f"bad uniform_masks '{u}'", "uniform_masks", "Use null (the original's schedule) or 0 .. 1.")
        D.shape_classes(int(cfg["shapes"].get("classes", 3)))
        if cfg["voc"]["pool"] not in ("all", "seg"):
            raise UsageError("voc.pool must be all or seg", "voc.pool")
        if int(cfg["batch_size"]) < 2 or int(cfg["image_size"]) < 8:
            raise UsageError("batch_size must be >= 2 and image_size >= 8", "batch_size")
        return cfg

    def load_data(self, cfg: dict, ctx: Ctx) -> Bundle:
        data = _load(cfg, ctx)
        if not data.train:
            raise DataError("no training images", str(data.root), "The train split is empty.")
        labelled = D.choose_labelled(data.train, cfg["budget"], int(cfg["seed"]), cfg["budget_sampling"],
                                     cfg["uniform_masks"])  # fmt: skip
        if ctx.run_dir is not None and ctx.is_main:
            (ctx.run_dir / "labelled.txt").write_text("".join(s + "\n" for s in labelled), encoding="utf-8")
        ctx.log(f"{len(data.train)} train images, {len(labelled)} with masks (budget {cfg['budget']}), "
                f"{len(data.val)} val, {len(data.classes)} classes")  # fmt: skip
        return Bundle(data, set(labelled))

    def build_model(self, cfg: dict, ctx: Ctx, data: Bundle) -> SegNet:
        model = _model(cfg, data.k)
        if cfg["encoder_weights"]:
            path = Path(cfg["encoder_weights"]).expanduser()
            try:
                sd = torch.load(path, map_location="cpu", weights_only=True)
            except (OSError, RuntimeError, ValueError) as e:
                raise DataError(f"cannot read encoder weights ({e.__class__.__name__})", str(path),
                                "Give a state_dict saved with torch.save.") from None  # fmt: skip
            sd = sd.get("state_dict", sd)
            own = model.encoder.state_dict()
            keep = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
            if not keep:
                raise DataError(
                    "no encoder keys match", str(path), f"Expected keys of the {cfg['encoder']} net."
                )
            model.encoder.load_state_dict(keep, strict=False)
        return model.to(ctx.device)

    def build_optimizer(self, cfg: dict, model: nn.Module) -> tuple[Any, Any]:
        return torch.optim.AdamW(
            model.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"])
        ), None

    def checkpoint_extra(self, cfg: dict, ctx: Ctx, data: Bundle) -> dict:
        return {"classes": list(data.data.classes), "labelled": sorted(data.labelled)}

    def train_epoch(self, cfg: dict, ctx: Ctx, st: TrainState) -> dict:
        out: dict[str, float] = {}
        if st.epoch == 0 and int(cfg["pretrain_epochs"]) > 0:
            out["train/pretrain_loss"] = pretrain(cfg, st.data, st.model, st.generator, ctx.device)
        res = train_epoch(cfg, st.data, st.model, st.net, st.optimizer, st.generator, ctx.device, st.tick,
                          ctx.dist.rank, ctx.dist.world_size)  # fmt: skip
        out.update({k: ctx.all_reduce_mean(v) for k, v in res.items()})
        return out

    def validate(self, cfg: dict, ctx: Ctx, st: TrainState) -> dict:
        b = st.data
        r = E.evaluate_model(st.model, b.data.val, b.store, b.k, "standard", None, ctx.device)
        return {"val/miou": r["miou"], "val/pixel_acc": r["pixel_acc"], "val/cls_f1": r["cls_f1"]}

    def test(self, cfg: dict, ctx: Ctx, st: TrainState) -> dict:
        out = self._metrics(cfg, ctx, st.model, st.data)
        if ctx.run_dir is not None and ctx.is_main and int(cfg["viz"]) > 0:
            self._overlays(cfg, ctx, st.model, st.data, ctx.run_dir / "heatmaps")
        return out

    # ---------------------------------------------------------------- eval
    def _metrics(self, cfg: dict, ctx: Ctx, model: SegNet, b: Bundle, show: bool = False) -> dict:
        crop = int(cfg["eval"]["crop"] or cfg["image_size"])
        std = E.evaluate_model(model, b.data.test, b.store, b.k, "standard", None, ctx.device)
        orig = E.evaluate_model(model, b.data.test, b.store, b.k, "original", crop, ctx.device)
        out = {"test/miou": std["miou"], "test/miou_orig": orig["miou"], "test/pixel_acc": std["pixel_acc"],
               "test/cls_f1": std["cls_f1"]}  # fmt: skip
        for name, v in zip(b.data.classes, std["iou"]):
            out[f"test/iou/{name}"] = float(v)
        if ctx.run_dir is not None and ctx.is_main:
            body = {
                p: {
                    "miou": r["miou"],
                    "pixel_acc": r["pixel_acc"],
                    "iou": dict(zip(b.data.classes, [None if np.isnan(v) else float(v) for v in r["iou"]])),
                    "confusion": r["confusion"].tolist(),
                }
                for p, r in (("standard", std), ("original", orig))
            }
            body["protocols"] = {
                "standard": "full resolution, void (255) ignored",
                "original": f"centre square crop resized to {crop}, void -> background",
            }
            (ctx.run_dir / "eval.json").write_text(json.dumps(body, indent=1), encoding="utf-8")
        if show and ctx.is_main and not ctx.quiet:
            from rich.table import Table

            t = Table(title="per-class IoU (standard: void ignored | original: centre crop, void -> bg)")
            for col in ("class", "IoU standard", "IoU original"):
                t.add_column(col)
            for name, a, o in zip(b.data.classes, std["iou"], orig["iou"]):
                t.add_row(name, f"{a:.4f}", f"{o:.4f}")
            ctx.console.print(t)
            ctx.console.print(
                f"confusion matrix (rows truth, cols prediction, standard):\n{std['confusion']}"
            )
        return out

    def _overlays(self, cfg: dict, ctx: Ctx, model: SegNet, b: Bundle, folder: Path) -> None:
        model.eval()
        with torch.no_grad():
            for it in b.data.test[: int(cfg["viz"])]:
                img, mask = b.store.get(it)
                _, h = model(torch.from_numpy(D.to_input(img)[None]).to(ctx.device))
                heat = h[0].cpu().numpy()
                E.write_overlay(folder / f"{it.stem}.png", img, heat, heat.argmax(0), b.data.classes, mask)

    def restore(self, cfg: dict, ctx: Ctx, ckpt: dict) -> tuple[SegNet, list[str]]:
        classes = list(ckpt.get("extra", {}).get("classes") or D.SHAPE_CLASSES)
        model = _model(cfg, len(classes))
        model.load_state_dict(ckpt["state_dict"])
        return model.to(ctx.device).eval(), classes

    def evaluate(self, cfg: dict, ctx: Ctx, restored: tuple[SegNet, list[str]]) -> dict:
        model, classes = restored
        data = _load(cfg, ctx)
        if len(data.classes) != len(classes):
            raise DataError(
                f"{len(data.classes)} classes in the data, {len(classes)} in the model", str(data.root)
            )
        return self._metrics(cfg, ctx, model, Bundle(data, set()), show=True)

    # ---------------------------------------------------------------- predict
    def parse_record(self, cfg: dict, restored: Any, line: str, n: int) -> Path:
        p = Path(line.strip()).expanduser()
        if not p.is_file():
            raise DataError(
                f"image not found: '{line.strip()}'", f"input line {n}", "Give one image path per line."
            )
        return p

    def predict_batch_size(self, cfg: dict) -> int:
        return 16

    def predict_batch(
        self, cfg: dict, ctx: Ctx, restored: tuple[SegNet, list[str]], records: list[Path]
    ) -> list:
        model, classes = restored
        base = ctx.run_dir / "predict" if ctx.run_dir is not None else Path("predictions")
        out_dir = Path(cfg["predict"]["out"]).expanduser() if cfg["predict"]["out"] else base
        store, rows = D.Store(limit=0), []
        for p in records:
            img, _ = store.get(D.Item(p.stem, p, None, frozenset()))
            with torch.no_grad():
                z, h = model(torch.from_numpy(D.to_input(img)[None]).to(ctx.device))
            heat = h[0].cpu().numpy()
            pred = heat.argmax(0).astype(np.uint8)
            stem = f"{p.parent.name}_{p.stem}" if p.parent.name else p.stem
            mask = E.write_mask(out_dir / f"{stem}_mask.png", pred)
            over = E.write_overlay(out_dir / f"{stem}_heatmap.png", img, heat, pred, tuple(classes))
            rows.append({"id": str(p), "label": [int(c) for c in np.unique(pred) if c > 0],
                         "probs": [round(float(v), 6) for v in torch.sigmoid(z[0]).cpu()],
                         "mask": str(mask), "heatmap": str(over)})  # fmt: skip
        return rows

    def expand_input(self, folder: Path) -> Any:
        return (str(p) for p in sorted(folder.iterdir()) if p.suffix.lower() in (".png", ".jpg", ".jpeg"))

    def sample_inputs(self, run_dir: Path) -> list[str]:
        import yaml

        cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
        return [str(it.image) for it in _load(cfg).val[:3]]


TASK = SegmentTask()
