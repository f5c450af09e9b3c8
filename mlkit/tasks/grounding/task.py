"""Grounding hooks: NCE / NCE+Distill on region features of a Flickr30K Entities layout (or the synthetic set).

Every epoch runs ceil(pairs / B) steps of L_nce + lambda(step) L_dis; val/r1 picks best.pt; test adds the
baselines, eval.json / eval.md and (viz) drawn boxes + heat maps of a few test phrases.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlkit.core.artifact import cached
from mlkit.core.config import apply_preset
from mlkit.core.errors import DataError, UsageError
from mlkit.core.runtime import Ctx
from mlkit.core.task import Task, TrainState
from mlkit.tasks.grounding import data as D
from mlkit.tasks.grounding import evaluation as E
from mlkit.tasks.grounding import features as FT
from mlkit.tasks.grounding.flickr import normalize
from mlkit.tasks.grounding.model import Grounder
from mlkit.tasks.grounding.steps import train_epoch


def data_root(cfg: dict, log: Any = None) -> Path:
    if cfg["data"]:
        return Path(cfg["data"]).expanduser()
    from mlkit.tasks.grounding.synth import write_synth

    sy = cfg["synth"]
    settings = {k: int(sy[k]) for k in ("train", "val", "test", "proposals", "seed")}
    return cached("grounding-synth", settings, lambda tmp: write_synth(tmp, settings["train"], settings["val"],
                  settings["test"], settings["proposals"], 128, settings["seed"]), log=log)  # fmt: skip


def _model(
    cfg: dict, vocab_size: int, word_dim: int, feat_dim: int, mu: float = 0.0, sigma: float = 1.0
) -> Grounder:
    return Grounder(vocab_size, word_dim, feat_dim, int(cfg["lstm_hidden"]), int(cfg["mlp_hidden"]), int(cfg["dim"]),
                    mu, sigma)  # fmt: skip


@dataclass
class Restored:
    model: Grounder
    extra: dict[str, Any]
    tid: dict[str, int]


class GroundingTask(Task):
    def finalize(self, cfg: dict, explicit: frozenset[str], mode: str) -> dict:
        cfg = apply_preset(cfg, explicit)
        if cfg["no_distill"]:
            cfg["distill"] = "none"
        checks = (("distill", ("hard", "soft", "none")), ("features", FT.FORMATS), ("gt_mode", ("union", "any")),
                  ("distill_impl", ("batched", "loop")), ("arch", ("mlp-lstm",)))  # fmt: skip
        for key, ok in checks:
            if cfg[key] not in ok:
                raise UsageError(f"unknown {key} '{cfg[key]}'", key, f"Use one of {', '.join(ok)}.")
        if int(cfg["batch_size"]) < 2:
            raise UsageError("batch_size must be >= 2 (the other images are the negatives)", "--batch-size")
        for key in (
            "neighbours",
            "max_phrases",
            "max_regions",
            "ramp_every",
            "lstm_hidden",
            "mlp_hidden",
            "dim",
        ):
            if int(cfg[key]) < 1:
                raise UsageError(f"{key} must be >= 1, got {cfg[key]}", key)
        if not 0.0 < float(cfg["eval"]["iou"]) <= 1.0 or float(cfg["distill_temp"]) <= 0:
            raise UsageError("eval.iou must be in (0, 1] and distill_temp > 0", "eval.iou / distill_temp")
        sy = cfg["synth"]
        if min(int(sy["train"]), int(sy["val"]), int(sy["test"])) < 1 or int(sy["proposals"]) < 8:
            raise UsageError("synth.train/val/test must be >= 1 and synth.proposals >= 8", "synth")
        return cfg

    def load_data(self, cfg: dict, ctx: Ctx) -> D.GData:
        data = D.load(data_root(cfg, ctx.log), cfg, ctx.log)
        if ctx.run_dir is not None and ctx.is_main:
            (ctx.run_dir / "phrase_to_label.json").write_text(json.dumps(data.phrase_map, indent=1, sort_keys=True),
                                                              encoding="utf-8")  # fmt: skip
        n_map = int((data.pairs["cls"] >= 0).sum())
        n_ph = int((data.pairs["tok"] > 0).any(-1).sum())
        ctx.log(f"{len(data.split['train'])} train images ({len(data.pairs['img'])} pairs), {len(data.split['val'])} "
                f"val, {len(data.split['test'])} test; R={data.store.rmask.shape[1]}, D={data.store.feats.shape[2]}, "
                f"{len(data.classes)} detector classes; {len(data.vocab)} words with vectors; "
                f"{n_map}/{n_ph} training phrases mapped to a class")  # fmt: skip
        if cfg["distill"] != "none" and data.store.det is None:
            ctx.warn("no det_logits in the features: training NCE only")
        return data

    def build_model(self, cfg: dict, ctx: Ctx, data: D.GData) -> Grounder:
        m = _model(cfg, len(data.emb), data.emb.shape[1], data.store.feats.shape[2], data.mu, data.sigma)
        m.embed.weight.data.copy_(torch.from_numpy(data.emb))
        return m.to(ctx.device)

    def checkpoint_extra(self, cfg: dict, ctx: Ctx, data: D.GData) -> dict:
        return {"vocab": list(data.vocab), "word_dim": int(data.emb.shape[1]), "feat_dim": int(data.store.feats.shape[2]),
                "classes": list(data.classes), "phrase_map": dict(data.phrase_map)}  # fmt: skip

    def train_epoch(self, cfg: dict, ctx: Ctx, st: TrainState) -> dict:
        res = train_epoch(cfg, st.data, st.net, st.optimizer, st.generator, ctx.device, st.epoch, st.tick,
                          ctx.dist.rank, ctx.dist.world_size)  # fmt: skip
        return {k: ctx.all_reduce_mean(v) for k, v in res.items()}

    def validate(self, cfg: dict, ctx: Ctx, st: TrainState) -> dict:
        s = E.phrase_scores(st.model, st.data, "val", ctx.device)
        m = E.grounding_metrics(s, st.data, "val", cfg["gt_mode"], float(cfg["eval"]["iou"]), baselines=False)
        return {k: m[k] for k in ("val/r1", "val/r5", "val/pointing")}

    def test(self, cfg: dict, ctx: Ctx, st: TrainState) -> dict:
        out = self._metrics(cfg, ctx, st.model, st.data)
        if ctx.run_dir is not None and ctx.is_main and int(cfg["viz"]) > 0:
            self._viz(cfg, ctx, st.model, st.data, ctx.run_dir / "viz")
        return out

    def _metrics(self, cfg: dict, ctx: Ctx, model: Grounder, data: D.GData) -> dict:
        s = E.phrase_scores(model, data, "test", ctx.device)
        m = E.grounding_metrics(
            s, data, "test", cfg["gt_mode"], float(cfg["eval"]["iou"]), bool(cfg["eval"]["baselines"])
        )
        label = "NCE" if cfg["distill"] == "none" else f"NCE+Distill ({cfg['distill']})"
        if ctx.run_dir is not None and ctx.is_main:
            (ctx.run_dir / "eval.json").write_text(json.dumps(m, indent=1), encoding="utf-8")
            (ctx.run_dir / "eval.md").write_text(E.markdown(m, "test", label), encoding="utf-8")
        return m

    def _viz(self, cfg: dict, ctx: Ctx, model: Grounder, data: D.GData, folder: Path) -> None:
        from PIL import Image

        ph = data.evals["test"]
        s = E.phrase_scores(model, data, "test", ctx.device)
        for m in range(min(int(cfg["viz"]), len(ph.img))):
            n = int(ph.img[m])
            path = data.root / "flickr30k-images" / f"{data.ids[n]}.jpg"
            if not path.is_file():
                continue
            img = np.asarray(Image.open(path).convert("RGB"))
            ok = np.asarray(data.store.rmask[n])
            E.draw(
                img, np.asarray(data.store.boxes[n])[ok], s[m][ok], ph.text[m], folder / f"{data.ids[n]}_{m}"
            )

    # ---------------------------------------------------------------- eval / predict
    def restore(self, cfg: dict, ctx: Ctx, ckpt: dict) -> Restored:
        ex = dict(ckpt.get("extra") or {})
        model = _model(cfg, len(ex["vocab"]) + 1, int(ex["word_dim"]), int(ex["feat_dim"]))
        model.load_state_dict(ckpt["state_dict"])
        return Restored(model.to(ctx.device).eval(), ex, {w: n for n, w in enumerate(ex["vocab"], 1)})

    def evaluate(self, cfg: dict, ctx: Ctx, restored: Restored) -> dict:
        ex = restored.extra
        data = D.load(data_root(cfg, ctx.log), cfg, ctx.log, vocab=ex["vocab"], phrase_map=ex["phrase_map"])
        if data.store.feats.shape[2] != int(ex["feat_dim"]):
            raise DataError(f"features are {data.store.feats.shape[2]}-d, the model wants {ex['feat_dim']}",
                            str(data.root / "features"), "Evaluate on features from the training backbone.")  # fmt: skip
        m = self._metrics(cfg, ctx, restored.model, data)
        if ctx.is_main and not ctx.quiet:
            ctx.console.print(E.markdown(m, "test", "model"), markup=False)
        return m

    def parse_record(self, cfg: dict, restored: Restored, line: str, n: int) -> dict:
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if (
            not isinstance(rec, dict)
            or not isinstance(rec.get("image"), str)
            or not isinstance(rec.get("phrase"), str)
        ):
            raise DataError("not a JSON object with string 'image' and 'phrase'", f"input line {n}",
                            'Write {"image": "<path or id>", "phrase": "a red ball"} per line.')  # fmt: skip
        return self._regions(cfg, restored, rec["image"], n) | {"phrase": rec["phrase"], "n": n}

    def _regions(self, cfg: dict, restored: Restored, image: str, n: int) -> dict:
        """Proposals + features of a record's image: its features/<id>.npz, else fallback proposals (77-d only)."""
        from PIL import Image

        p = Path(image).expanduser()
        stem = p.stem if p.suffix else image
        roots = [p.parent.parent] if p.is_file() else []
        roots.append(data_root(cfg) if cfg["data"] or not p.is_file() else p.parent.parent)
        npz = next(
            (r / "features" / f"{stem}.npz" for r in roots if (r / "features" / f"{stem}.npz").is_file()),
            None,
        )
        img_path = p if p.is_file() else next((r / "flickr30k-images" / f"{stem}.jpg" for r in roots
                                               if (r / "flickr30k-images" / f"{stem}.jpg").is_file()), None)  # fmt: skip
        arr = None
        if img_path is not None:
            try:
                arr = np.asarray(Image.open(img_path).convert("RGB"))
            except OSError:
                raise DataError(
                    f"unreadable image '{image}'", f"input line {n}", "Give a PNG/JPEG path."
                ) from None
        if npz is not None:
            with np.load(npz) as z:
                boxes, feats = np.asarray(z["boxes"], np.float32), np.asarray(z["feats"], np.float32)
        elif arr is not None and int(restored.extra["feat_dim"]) == FT.FEATURE_DIM:
            boxes = FT.fallback_proposals(arr, int(cfg["predict"]["proposals"]))
            feats = FT.describe(arr, boxes)
        else:
            raise DataError(f"no features and no usable image for '{image}'", f"input line {n}",
                            "Give an image id with features/<id>.npz in --data, or an image path.")  # fmt: skip
        if feats.shape[1] != int(restored.extra["feat_dim"]):
            raise DataError(f"features are {feats.shape[1]}-d, the model wants {restored.extra['feat_dim']}",
                            f"input line {n}", "Use features from the training backbone.")  # fmt: skip
        return {"image": image, "stem": stem, "boxes": boxes, "feats": feats, "array": arr}

    def predict_batch_size(self, cfg: dict) -> int:
        return 32

    @torch.no_grad()
    def predict_batch(self, cfg: dict, ctx: Ctx, restored: Restored, records: list[dict]) -> list:
        model = restored.model
        tok = np.stack([D.encode(normalize(r["phrase"]), restored.tid) for r in records])
        g = model.phrases(torch.from_numpy(tok).to(ctx.device))
        rows = []
        for r, gi in zip(records, g):
            s = (model.regions(torch.from_numpy(r["feats"]).to(ctx.device)) @ gi).cpu().numpy()
            best = int(s.argmax())
            box = [round(float(v), 2) for v in r["boxes"][best]]
            row = {
                "id": r["image"],
                "phrase": r["phrase"],
                "box": box,
                "value": box,
                "score": round(float(s[best]), 6),
            }
            if cfg["predict"]["save"] and r["array"] is not None:
                a, b = E.draw(r["array"], r["boxes"], s, r["phrase"], Path(cfg["predict"]["save"]).expanduser()
                              / f"{r['stem']}_{r['n']}")  # fmt: skip
                row.update(png=str(a), heatmap=str(b))
            rows.append(row)
        return rows

    def sample_inputs(self, run_dir: Path) -> list[str]:
        import yaml

        cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
        root = data_root(cfg)
        ids = (root / "test.txt").read_text(encoding="utf-8").split()[:3]
        from mlkit.tasks.grounding.flickr import read_sentences

        out = []
        for i in ids:
            ph = read_sentences(root / "Sentences" / f"{i}.txt")[0].phrases[0].text
            out.append(json.dumps({"image": str(root / "flickr30k-images" / f"{i}.jpg"), "phrase": ph}))
        return out


TASK = GroundingTask()
