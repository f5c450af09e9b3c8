"""M3DM top-down: pass A (cached) over every category -> UFF -> banks -> pass C -> fusion -> thresholds; test pass."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlkit.core.errors import DataError, UsageError
from mlkit.core.runtime import Ctx
from mlkit.tasks.anomaly import data as D
from mlkit.tasks.anomaly.features import Extractor
from mlkit.tasks.anomaly.model import UFF, load_uff, train_uff
from mlkit.tasks.anomaly.pipeline import (
    CategoryState,
    build_banks,
    combine,
    extract,
    fit_fusion,
    score_sample,
)
from mlkit.tasks.anomaly.report import nanmean, print_table, save_panel, write_results


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


def fit_categories(
    cfg: dict[str, Any], ctx: Ctx, root: Path, cats: list[str], ext: Extractor
) -> tuple[dict[str, CategoryState], UFF | None, tuple[float, float]]:
    """Banks, UFF and fusion per category, thresholds on validation/good; returns (states, uff, pass-A s/sample)."""
    mode = str(cfg["modalities"])
    gen = torch.Generator().manual_seed(int(cfg["seed"]))
    d_rgb, d_pt = ext.dims
    # pass A for every category (UFF is trained once on all of them)
    feats, vals, per_sample = {}, {}, []
    for cat in cats:
        cdir = D.category_dir(root, cat)
        train_s = D.split_samples(cdir, "train")
        train_s = train_s[: int(cfg["max_train"])] if int(cfg["max_train"]) > 0 else train_s
        val_s = D.split_samples(cdir, "validation") if (cdir / "validation").is_dir() else []
        n = len(train_s)
        fused = 3136 * (d_rgb + d_pt) if mode in ("fusion", "triple") else 0
        gb = n * 2 * ((784 * d_rgb) + 3136 * d_pt + fused)
        ctx.log(f"[bold]{cat}[/]: {n} train, {len(val_s)} validation images; "
                f"raw banks up to {gb / 2**30:.2f} GiB (float16)")  # fmt: skip
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
        if cfg["uff"]["path"]:
            uff = load_uff(cfg["uff"]["path"], all_feats[0], int(cfg["uff"]["hidden_ratio"]), ctx.log)
        else:
            uff = train_uff(all_feats, cfg, ctx.device, gen, ctx.track, ctx.log).cpu()
    states: dict[str, CategoryState] = {}
    for k, cat in enumerate(cats):
        ctx.log(f"[bold]{cat}[/]: memory banks ({mode})")
        st = build_banks(feats[cat], mode, uff, cfg, ctx.run_dir / "cache" / cat, int(cfg["seed"]) + 17 * k,
                         ctx.device, ctx.log)  # fmt: skip
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
        thresholds(st, vals[cat] or feats[cat], mode, uff, cfg, ctx, cat, bool(vals[cat]))
        states[cat] = st
    return states, uff, (extract_s, extract_cpu)


def thresholds(st: CategoryState, feats: list, mode: str, uff: UFF | None, cfg: dict[str, Any], ctx: Ctx,
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
    st.thr = float(np.max(img)) if t["mode"] == "max" else float(np.quantile(img, float(t["quantile"])))
    st.pix_thr = float(np.quantile(np.concatenate(pix), float(t["pixel_quantile"])))


def test_categories(cfg: dict[str, Any], ctx: Ctx, states: dict[str, CategoryState], uff: UFF | None, root: Path,
                    cats: list[str], mode: str, ext: Extractor, out_dir: Path | None,
                    run_dir: Path | None) -> dict[str, float]:  # fmt: skip
    """Score the test split of each category; the per-category table, results.json/md and maps go to out_dir."""
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
                save_panel(out_dir / "maps" / cat / f"{s.name}.png", x["rgb"], m, x["gt"], st.pix_thr * 0.5,
                           st.pix_thr * 1.5)  # fmt: skip
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
        metrics[f"test/{k}"] = nanmean([per_cat[c][k] for c in cats])
    if ctx.is_main and not ctx.quiet:
        print_table(ctx.console, per_cat, f"M3DM ({mode}) on {root}")
    if out_dir is not None and ctx.is_main:
        write_results(out_dir, per_cat, {"modalities": mode, "data": str(root)})
    return metrics


def category_of(path: Path, cats: list[str]) -> str | None:
    """The category a file belongs to: the only one, or the one named in its path (None: cannot tell)."""
    if len(cats) == 1:
        return cats[0]
    for part in reversed(Path(path).resolve().parts):
        if part in cats:
            return part
    return None
