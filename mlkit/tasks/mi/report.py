"""mi outputs: metric dicts (per term, truth and bias), the over-seeds summary with a Student-t interval, the
estimate-vs-truth curve PNG, predict's record parser and pointwise MI."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from mlkit.core.errors import DataError
from mlkit.tasks.mi import data as D


def prefixed(split: str, r: dict, src: Any, cfg: dict) -> dict[str, float]:
    """`split/mi`, `split/mi_std` (over held-out batches), `split/log_batch`, per-term values, ESS, truth, bias."""
    m = src.batch_size(int(cfg["batch_size"]), "test" if split == "test" else "val")
    out = {f"{split}/mi": r["mi"], f"{split}/mi_std": r["std"], f"{split}/log_batch": math.log(m)}
    if len(r["terms"]) > 1:
        for k, v in enumerate(r["terms"], 1):
            out[f"{split}/term{k}"] = v
    if r.get("ess") is not None:
        out[f"{split}/ess"] = r["ess"]
    truth = src.truth
    if truth and "mi" in truth:
        out[f"{split}/truth"] = float(truth["mi"])
        out[f"{split}/bias"] = r["mi"] - float(truth["mi"])
        tt = D.term_truth(truth, D.cuts(src.dx, int(cfg["splits"]))) if truth.get("dim") == src.dx else None
        if tt and len(tt) > 1:
            for k, v in enumerate(tt, 1):
                out[f"{split}/term{k}_truth"] = v
    return out


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, sample std, low, high): the Student-t confidence interval of the mean over seeds."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    mean = float(v.mean())
    if len(v) < 2:
        return mean, 0.0, mean, mean
    sd = float(v.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1)) * sd / math.sqrt(len(v))
    return mean, sd, mean - half, mean + half


def over_seeds(results: list[dict[str, float]], level: float = 0.95) -> dict[str, float]:
    """Every metric's mean over seeds, its std over seeds (`_seed_std`) and, for test/mi, the t interval."""
    if len(results) == 1:
        return dict(results[0])
    out: dict[str, float] = {}
    for key in results[0]:
        vals = [r[key] for r in results if key in r]
        mean, sd, lo, hi = t_interval(vals, level)
        out[key], out[f"{key}_seed_std"] = mean, sd
        if key == "test/mi":
            out["test/mi_ci_lo"], out["test/mi_ci_hi"] = lo, hi
    out["seeds"] = float(len(results))
    return out


def curve_png(csv_path: Path, history: list[float], test: dict, cfg: dict, out: Path) -> Path | None:
    """Estimate vs truth over training: raw per-step training estimates, their EMA, per-epoch validation
    estimates, the true MI and the log M ceiling."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if history:
        h = np.asarray(history)
        ax.plot(np.arange(1, len(h) + 1), h, lw=0.5, alpha=0.35, label="train (raw)")
        ema, a = np.empty_like(h), 0.0
        for i, v in enumerate(h):
            a = v if i == 0 else 0.99 * a + 0.01 * v
            ema[i] = a
        ax.plot(np.arange(1, len(h) + 1), ema, lw=1.2, label="train (EMA 0.99)")
    if Path(csv_path).is_file():
        with open(csv_path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f) if r.get("val/mi")]
        if rows:
            steps = [(int(r["epoch"])) * int(cfg["steps_per_epoch"]) for r in rows]
            ax.plot(steps, [float(r["val/mi"]) for r in rows], "o-", label="validation")
    if "test/truth" in test:
        ax.axhline(test["test/truth"], color="k", ls="--", label="true MI")
    ax.axhline(test["test/log_batch"], color="grey", ls=":", label="log M")
    ax.set_xlabel("step")
    ax.set_ylabel("nats")
    ax.set_title(f"{cfg['estimator']}" + (f" s={cfg['splits']} ({cfg['cond']})" if cfg["estimator"] == "demi" else ""))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _floats(text: str, n: int, what: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise DataError(f"non-numeric {what}", f"input line {n}", "Write 'x1,...,xd;y1,...,ye'.") from None
    return vals


def parse_pair(line: str, n: int, dx: int, dy: int) -> tuple[list[float], list[float]]:
    """'x1,...,xd;y1,...,ye' or {"x": [...], "y": [...]}; lengths must match the model (DataError otherwise)."""
    s = line.strip()
    if s.startswith("{"):
        try:
            obj = json.loads(s)
            x, y = [float(v) for v in obj["x"]], [float(v) for v in obj["y"]]
        except (ValueError, KeyError, TypeError):
            raise DataError("bad JSON record", f"input line {n}", 'Write {"x": [numbers], "y": [numbers]}.') from None
    else:
        if s.count(";") != 1:
            raise DataError("record needs one ';' between x and y", f"input line {n}", "Write 'x1,...,xd;y1,...,ye'.")
        a, b = s.split(";")
        x, y = _floats(a, n, "x"), _floats(b, n, "y")
    if len(x) != dx or len(y) != dy:
        raise DataError(f"record has {len(x)} x and {len(y)} y values, the model takes {dx} and {dy}",
                        f"input line {n}", "Give every record the training data's column counts.")  # fmt: skip
    if not all(math.isfinite(v) for v in x + y):
        raise DataError("record holds NaN or inf", f"input line {n}", "Give finite numbers.")
    return x, y


def pointwise(model: Any, x: Any, y: Any, ref: Any) -> Any:
    """Pointwise MI log p(y|x)/p(y) ~ l(x, y) - log mean_r exp l(x, y_r) over reference y rows, l = the sum of
    every term's critic (the chain's accumulated log-ratio)."""
    import torch

    with torch.no_grad():
        return model.pointwise(x, y, ref).cpu()
