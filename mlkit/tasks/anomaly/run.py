"""M3DM train / evaluate / predict, top-down: data -> pass A (cached) -> UFF -> banks -> pass C -> fusion -> test."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlkit.core import checkpoint
from mlkit.core.errors import DataError, UsageError
from mlkit.core.rundir import write_metrics
from mlkit.core.runtime import Ctx
from mlkit.tasks.anomaly import data as D
from mlkit.tasks.anomaly.features import Extractor
from mlkit.tasks.anomaly.memory import MODALITIES
from mlkit.tasks.anomaly.model import UFF, train_uff
from mlkit.tasks.anomaly.pipeline import (
    CategoryState,
    build_banks,
    combine,
    extract,
    fit_fusion,
    from_state_dict,
    score_sample,
    to_state_dict,
)
from mlkit.tasks.anomaly.report import print_table, save_panel, write_results


# ----------------------------------------------------------------------------------------------------- data
def data_root(cfg: dict[str, Any], ctx: Ctx, extra: dict[str, Any] | None = None) -> Path:
    """--data, or the checkpoint's synthetic root, or a fresh synthetic `blob` (synth + preprocess)."""
    if cfg.get("data"):
        return Path(cfg["data"])
    if extra and extra.get("data_root") and Path(extra["data_root"]).is_dir():
        return Path(extra["data_root"])
    base = ctx.run_dir / "data" if ctx.run_dir else Path(tempfile.mkdtemp(prefix="mlkit-anomaly-"))
    return make_synthetic(base, cfg, ctx)


def make_synthetic(base: Path, cfg: dict[str, Any], ctx: Ctx) -> Path:
    """Write the synthetic category to base/raw and its preprocessed copy to base/mvtec; returns base/mvtec."""
    from mlkit.tasks.anomaly.preprocess import preprocess_root
    from mlkit.tasks.anomaly.synth import write_dataset

    s = cfg["synth"]
    counts = {
        k: int(s[k]) for k in ("train", "validation", "test_good", "test_dent", "test_stain", "test_combined")
    }
    write_dataset(base / "raw", int(cfg["seed"]), int(s["size"]), counts)
    preprocess_root(base / "raw", base / "mvtec", cfg["preprocess"], int(cfg["seed"]), ctx.track)
    ctx.log(f"synthetic data written to {base} (raw/ and preprocessed mvtec/)")
    return base / "mvtec"


def feature_cache(cfg: dict[str, Any], run_dir: Path | None, root: Path, cat: str, split: str) -> Path | None:
    """Where pass-A features of one split live: <cache root>/<key of extractor settings and data>/<cat>/<split>."""
    import hashlib
    import json

    if not cfg["cache_features"]:
        return None
    base = Path(cfg["cache_dir"]) if cfg.get("cache_dir") else (run_dir / "cache" if run_dir else None)
    if base is None:
        return None
    keys = ("rgb_backbone", "point_backbone", "fpfh", "points", "image_size", "max_train")
    body = json.dumps({k: cfg[k] for k in keys} | {"root": str(Path(root).resolve())}, sort_keys=True)
    return base / hashlib.sha256(body.encode()).hexdigest()[:12] / cat / split


def _limit(samples: list[D.Sample], n: int) -> list[D.Sample]:
    return samples[:n] if n > 0 else samples


def sample_inputs(run_dir: Path) -> list[str]:
    """Predict records for a model trained on the embedded default: a few test pairs of the run's data."""
    rgbs = sorted(Path(run_dir).glob("data/mvtec/*/test/*/rgb/*.png"))[:3]
    return [f"{p}\t{p.parent.parent / 'xyz' / (p.stem + '.tiff')}" for p in rgbs]


def expand_input(path: Path) -> Iterator[str]:
    """A folder given to --input: every rgb/*.png under it that has its xyz/*.tiff partner."""
    for p in sorted(Path(path).rglob("rgb/*.png")):
        x = p.parent.parent / "xyz" / f"{p.stem}.tiff"
        if x.is_file():
            yield f"{p}\t{x}"


# ---------------------------------------------------------------------------------------------------- train
def train(cfg: dict[str, Any], ctx: Ctx) -> dict[str, float]:
    """Build banks, UFF and fusion per category, pick thresholds on validation/good, evaluate on test."""
    t_start = time.perf_counter()
    mode = str(cfg["modalities"])
    if mode not in MODALITIES:
        raise UsageError(f"unknown modalities '{mode}'", "modalities", f"Use one of {', '.join(MODALITIES)}.")
    root = data_root(cfg, ctx)
    cats = D.pick_categories(str(cfg["category"]), D.categories(root))
    ext = Extractor(cfg, ctx.device)
    gen = torch.Generator().manual_seed(int(cfg["seed"]))
    cache = ctx.run_dir / "cache"
    d_rgb, d_pt = ext.dims
    # pass A for every category (UFF is trained once on all of them)
    feats, vals, per_sample = {}, {}, []
    for cat in cats:
        cdir = D.category_dir(root, cat)
        train_s = _limit(D.split_samples(cdir, "train"), int(cfg["max_train"]))
        val_s = D.split_samples(cdir, "validation") if (cdir / "validation").is_dir() else []
        n = len(train_s)
        gb = (
            n
            * 2
            * ((784 * d_rgb) + 3136 * d_pt + (3136 * (d_rgb + d_pt) if mode in ("fusion", "triple") else 0))
        )
        ctx.log(
            f"[bold]{cat}[/]: {n} train, {len(val_s)} validation images; raw banks up to {gb / 2**30:.2f} GiB (float16)"
        )
        feats[cat], spent = extract(train_s, ext, feature_cache(cfg, ctx.run_dir, root, cat, "train"), ctx.track,
                                    f"{cat} pass A")  # fmt: skip
        vals[cat], _ = extract(val_s, ext, feature_cache(cfg, ctx.run_dir, root, cat, "validation"), ctx.track,
                               f"{cat} validation")  # fmt: skip
        per_sample.append(spent)
    extract_s = float(np.mean([w for w, _ in per_sample]))
    extract_cpu = float(np.mean([c for _, c in per_sample]))
    ctx.log(f"feature extraction: {extract_s:.3f} s wall, {extract_cpu:.3f} s CPU per sample")
    uff = None
    if mode in ("fusion", "triple"):
        all_feats = [f for cat in cats for f in feats[cat]]
        uff = train_uff(all_feats, cfg, ctx.device, gen, ctx.track, ctx.log).cpu()
    states: dict[str, CategoryState] = {}
    for k, cat in enumerate(cats):
        ctx.log(f"[bold]{cat}[/]: memory banks ({mode})")
        st = build_banks(
            feats[cat], mode, uff, cfg, cache / cat, int(cfg["seed"]) + 17 * k, ctx.device, ctx.log
        )
        fit_set = feats[cat]
        if cfg["fusion"]["fit"] == "validation":
            if not vals[cat]:
                raise DataError(
                    "--fusion-fit validation needs validation/good images", cat, "Use --fusion-fit train."
                )
            fit_set = vals[cat]
        scored = [
            score_sample(st, r, p, mode, uff, cfg, ctx.device) for r, p in ctx.track(fit_set, f"{cat} pass C")
        ]
        fit_fusion(st, scored, mode, cfg, int(cfg["seed"]))
        _thresholds(st, vals[cat] or feats[cat], mode, uff, cfg, ctx, cat, bool(vals[cat]))
        states[cat] = st
    extra = {
        "categories": cats,
        "modalities": mode,
        "dims": [int(d_rgb), int(d_pt)],
        "uff": uff is not None,
        "data_root": str(root),
        "run_dir": str(ctx.run_dir),
    }
    sd = to_state_dict(states, uff)
    states, _ = from_state_dict(sd, extra, cfg)  # test with the float16 banks the checkpoint holds (eval == train)
    ckpt = checkpoint.make("anomaly", cfg, sd, epoch=0, extra=extra)
    checkpoint.save(ckpt, ctx.run_dir / "weights" / "last.pt")
    metrics = _evaluate(cfg, ctx, states, uff, root, cats, mode, ext, ctx.run_dir, ctx.run_dir)
    metrics["train/extract_s_per_sample"] = extract_s
    metrics["train/extract_cpu_s_per_sample"] = extract_cpu
    metrics["train/seconds"] = time.perf_counter() - t_start
    ckpt["metrics"] = dict(metrics)
    checkpoint.save(ckpt, ctx.run_dir / "weights" / "best.pt")
    checkpoint.save(ckpt, ctx.run_dir / "weights" / "last.pt")
    write_metrics(ctx.run_dir, metrics)
    return metrics


def _thresholds(st: CategoryState, feats: list, mode: str, uff: UFF | None, cfg: dict[str, Any], ctx: Ctx,
                cat: str, is_val: bool) -> None:  # fmt: skip
    """Image threshold (max or quantile of validation/good scores) and a pixel quantile for masks."""
    if not is_val:
        ctx.warn(f"{cat}: no validation/good images; thresholds come from the (optimistic) train scores")
    img, pix = [], []
    for r, p in feats:
        s, m = combine(st, score_sample(st, r, p, mode, uff, cfg, ctx.device), mode)
        img.append(s)
        pix.append(m.ravel())
    t = cfg["threshold"]
    if t["mode"] == "max":
        st.thr = float(np.max(img))
    elif t["mode"] == "quantile":
        st.thr = float(np.quantile(img, float(t["quantile"])))
    else:
        raise UsageError(f"unknown threshold mode '{t['mode']}'", "threshold.mode", "Use max or quantile.")
    st.pix_thr = float(np.quantile(np.concatenate(pix), float(t["pixel_quantile"])))


# ------------------------------------------------------------------------------------------------- evaluate
def evaluate(cfg: dict[str, Any], ctx: Ctx, ckpt: dict) -> dict[str, float]:
    """Score the test split of every trained category (or --category) and report the per-category table."""
    extra = ckpt["extra"]
    states, uff = from_state_dict(ckpt["state_dict"], extra, cfg)
    root = data_root(cfg, ctx, extra)
    cats = D.pick_categories(str(cfg["category"]), list(extra["categories"]))
    out_dir = (
        Path(extra["run_dir"]) / "eval" if extra.get("run_dir") and Path(extra["run_dir"]).is_dir() else None
    )
    run_dir = Path(extra["run_dir"]) if out_dir is not None else None
    return _evaluate(
        cfg, ctx, states, uff, root, cats, extra["modalities"], Extractor(cfg, ctx.device), out_dir, run_dir
    )


def _evaluate(cfg: dict[str, Any], ctx: Ctx, states: dict[str, CategoryState], uff: UFF | None, root: Path,
              cats: list[str], mode: str, ext: Extractor, out_dir: Path | None,
              run_dir: Path | None) -> dict[str, float]:  # fmt: skip
    from mlkit.core.metrics import aupro, roc_auc

    if uff is not None:
        uff = uff.to(ctx.device)
    per_cat: dict[str, dict[str, Any]] = {}
    metrics: dict[str, float] = {}
    for cat in cats:
        if cat not in states:
            raise UsageError(f"category '{cat}' is not in this model", None, f"Trained: {', '.join(states)}.")
        samples = D.split_samples(D.category_dir(root, cat), "test")
        st = states[cat]
        scores, labels, defects, maps, gts = [], [], [], [], []
        feats, _ = extract(
            samples, ext, feature_cache(cfg, run_dir, root, cat, "test"), ctx.track, f"{cat} test"
        )
        for s, (r, p) in zip(samples, feats):
            x = D.load(s, ext.size)
            sc, m = combine(st, score_sample(st, r, p, mode, uff, cfg, ctx.device), mode)
            scores.append(sc)
            labels.append(s.label)
            defects.append(s.defect)
            maps.append(m)
            gts.append(x["gt"])
            if cfg["save_maps"] and out_dir is not None:
                save_panel(
                    out_dir / "maps" / cat / f"{s.name}.png",
                    x["rgb"],
                    m,
                    x["gt"],
                    st.pix_thr * 0.5,
                    st.pix_thr * 1.5,
                )
        sc_a, lab_a = np.asarray(scores), np.asarray(labels)
        res = {
            "i_auroc": roc_auc(sc_a, lab_a),
            "p_auroc": roc_auc(np.stack(maps).ravel(), np.stack(gts).ravel()),
            "aupro": aupro(maps, gts, 0.3),
        }
        by_defect = {}
        for d in sorted(set(defects) - {"good"}):
            keep = np.isin(np.asarray(defects), ["good", d])
            by_defect[d] = roc_auc(sc_a[keep], lab_a[keep])
        pred = sc_a > st.thr
        per_cat[cat] = {**res, "i_auroc_by_defect": by_defect, "threshold": st.thr,
                        "false_alarm_rate": float(pred[lab_a == 0].mean()) if (lab_a == 0).any() else float("nan"),
                        "recall_at_threshold": float(pred[lab_a == 1].mean()) if (lab_a == 1).any() else float("nan")}  # fmt: skip
        for k, v in res.items():
            metrics[f"test/{cat}/{k}"] = v
    for k in ("i_auroc", "p_auroc", "aupro"):
        metrics[f"test/{k}"] = float(np.nanmean([per_cat[c][k] for c in cats]))
    if ctx.is_main and not ctx.quiet:
        print_table(ctx.console, per_cat, f"M3DM ({mode}) on {root}")
    if out_dir is not None and ctx.is_main:
        write_results(out_dir, per_cat, {"modalities": mode, "data": str(root)})
    return metrics


# -------------------------------------------------------------------------------------------------- predict
def predict(cfg: dict[str, Any], ctx: Ctx, ckpt: dict, records: Iterable[str]) -> Iterator[dict]:
    """Per rgb+xyz record: image score, decision, and paths of the written heatmap and mask PNGs."""
    from PIL import Image

    from mlkit.tasks.anomaly.report import overlay

    extra = ckpt["extra"]
    states, uff = from_state_dict(ckpt["state_dict"], extra, cfg)
    uff = uff.to(ctx.device) if uff is not None else None
    ext = Extractor(cfg, ctx.device)
    run_dir = (
        Path(extra["run_dir"]) if extra.get("run_dir") and Path(extra["run_dir"]).is_dir() else Path(".")
    )
    out = run_dir / "predictions"
    out.mkdir(parents=True, exist_ok=True)
    mode = extra["modalities"]
    for n, line in enumerate(records):
        if not line.strip():
            yield {"input": line, "error": "empty record"}
            continue
        rgb_p, xyz_p = D.pair_from_line(line)
        cat = _category_of(rgb_p, list(states))
        st = states[cat]
        x = D.load(D.Sample(rgb_p, xyz_p, None, "predict", 0), ext.size)
        r, p = ext(x)
        score, amap = combine(st, score_sample(st, r, p, mode, uff, cfg, ctx.device), mode)
        stem = f"{n:05d}_{rgb_p.parent.parent.name}_{rgb_p.stem}"
        heat, mask = out / f"{stem}_heatmap.png", out / f"{stem}_mask.png"
        Image.fromarray(overlay(x["rgb"], amap, st.pix_thr * 0.5, st.pix_thr * 1.5)).save(heat)
        Image.fromarray(((amap > st.pix_thr) * 255).astype(np.uint8)).save(mask)
        yield {
            "rgb": str(rgb_p),
            "xyz": str(xyz_p),
            "category": cat,
            "score": score,
            "threshold": st.thr,
            "anomalous": bool(score > st.thr),
            "heatmap": str(heat),
            "mask": str(mask),
        }


def _category_of(path: Path, cats: list[str]) -> str:
    """The category a file belongs to: the only one, or the one named in its path."""
    if len(cats) == 1:
        return cats[0]
    for part in reversed(Path(path).resolve().parts):
        if part in cats:
            return part
    raise DataError(
        "cannot tell the category of this file", str(path), f"Put it under a folder named one of {cats}."
    )
