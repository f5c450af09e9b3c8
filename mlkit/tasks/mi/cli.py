"""Extra verbs of `mlkit mi`: `synth` (write a known-truth set) and `estimate` (MI of two arrays, CI over seeds).

`estimate` is a config verb: the runner merges and finalizes the config as for train (--estimator, --splits,
--set ...). Light module: numpy and torch are imported inside the command bodies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def synth(
    out: Path = typer.Option(..., "--out", help="Folder to write x.npy, y.npy and truth.json into."),
    kind: str = typer.Option("gaussian", "--kind", help="gaussian | cubic (y <- y^3, same MI) | digits (two views "
                             "of sklearn's 8x8 digits) | markov (context/future of a Markov chain, exact MI)."),
    mi: float = typer.Option(10.0, "--true-mi", help="I(x; y) in nats."),
    dim: int = typer.Option(20, "--dim", help="Dimensions d of x and y."),
    rows: int = typer.Option(20000, "--rows", help="Pairs to write."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
) -> None:
    """Write a paired-array set: correlated Gaussian / cubic (known MI), digits views or a Markov chain; prints the folder."""
    import sys

    from mlkit.core.errors import UsageError
    from mlkit.tasks.mi.data import KINDS, VIEW_KINDS, write_synth

    if kind not in KINDS + VIEW_KINDS or mi <= 0 or dim < 1 or rows < 1:
        raise UsageError("need --kind gaussian|cubic|digits|markov, --true-mi > 0, --dim >= 1, --rows >= 1")
    write_synth(out, kind, mi, dim, rows, seed)
    sys.stdout.write(f"{out}\n")


def estimate(cfg: dict[str, Any], ctx: Any, kw: dict[str, Any]) -> None:
    """Estimate I(x; y) in nats from two paired arrays: train `seeds` critics, report the held-out estimate's
    mean and Student-t confidence interval over seeds as one JSON object on stdout."""
    import math
    import time

    import torch

    from mlkit.core.console import emit
    from mlkit.core.errors import UsageError
    from mlkit.tasks.mi import data as D
    from mlkit.tasks.mi.objective import Est, held_out, train_steps
    from mlkit.tasks.mi.report import t_interval
    from mlkit.tasks.mi.source import Source
    from mlkit.tasks.mi.task import build_critics

    t_start = time.perf_counter()
    xp, yp = kw.get("t_x"), kw.get("t_y")
    if xp and yp:
        x, y = D.pair(Path(xp), Path(yp))
    elif cfg.get("data") and not (xp or yp):
        x, y, _ = D.load(Path(cfg["data"]))
        yp = cfg["data"]
    else:
        raise UsageError("estimate needs --x and --y (or --data FOLDER)", None,
                         "Pass two arrays with paired rows: --x X.npy --y Y.npy.")  # fmt: skip
    if cfg["splits"] > x.shape[1]:
        raise UsageError(f"--splits {cfg['splits']} exceeds x's {x.shape[1]} columns", "--splits")
    if cfg["estimator"] == "demi" and cfg["cond"] == "oracle" and cfg["splits"] > 1:
        raise UsageError("--cond oracle needs a known generator", "--cond", "Use --cond is or sir on arrays.")
    e = cfg["estimate"]
    seeds = int(kw.get("t_seeds") or e["seeds"])
    steps = int(kw.get("t_steps") or e["steps"])
    if seeds < 1 or steps < 1:
        raise UsageError("--seeds and --steps must be >= 1", "--seeds")
    src = Source.from_arrays(x, y, None, cfg["split"], cfg["split_seed"], cfg["standardize"], ctx.device, str(yp))
    est = Est.of(cfg)
    m = int(cfg["batch_size"])
    test = src.held_out("test", m, int(cfg["eval_batches"]))
    budget = float(e["time_budget_s"])
    per_seed, rates, stopped = [], [], 0
    ctx.log(f"mi estimate: {x.shape[0]} rows, x {x.shape[1]} / y {y.shape[1]} columns, {cfg['estimator']}"
            + (f" s={cfg['splits']} ({cfg['cond']})" if cfg["estimator"] == "demi" else "")
            + f", {seeds} seeds x {steps} steps")  # fmt: skip
    for s in range(seeds):
        torch.manual_seed(int(cfg["seed"]) + 1000 * s)
        gen = torch.Generator().manual_seed(int(cfg["seed"]) * 1_000_003 + 7 * s + 1)
        critics = build_critics(cfg, src.dx, src.dy, ctx.device)
        opt = torch.optim.Adam(critics.parameters(), lr=float(cfg["lr"]))
        t_end = t_start + budget * (s + 1) / seeds
        r = train_steps(critics, opt, src.draw(m), est, steps, gen, tick=lambda t=t_end: time.perf_counter() > t)
        if len(r["history"]) < steps:
            stopped += 1
        if not all(math.isfinite(v) for v in r["history"]):
            from mlkit.core.errors import RunFailure

            raise RunFailure(f"the {cfg['estimator']} estimate diverged (NaN/inf) in seed {s}", "estimate",
                             "Lower --lr or use a bounded estimator (infonce, smile, demi).")  # fmt: skip
        h = held_out(critics, test, est)
        per_seed.append({"seed": s, "mi": h["mi"], "batch_std": h["std"], "terms": h["terms"], "ess": h["ess"],
                         "steps": len(r["history"])})  # fmt: skip
        rates.append(r["steps_per_s"])
        ctx.log(f"seed {s}: {h['mi']:.4f} nats ({len(r['history'])} steps, {r['steps_per_s']:.0f} steps/s)")
    if stopped:
        ctx.warn(f"{stopped} of {seeds} runs stopped at estimate.time_budget_s={budget:g} before {steps} steps")
    level = float(e["level"])
    mean, sd, lo, hi = t_interval([p["mi"] for p in per_seed], level)
    ess = [p["ess"] for p in per_seed if p["ess"] is not None]
    if ess and min(ess) < 2.0:
        ctx.warn(f"importance weights collapsed (ESS {min(ess):.2f}): the DEMI terms may over-estimate")
    body = {"schema_version": 1, "task": "mi", "mode": "estimate", "estimate": mean, "std_over_seeds": sd,
            "ci": [lo, hi], "level": level, "seeds": seeds, "unit": "nats", "log_batch": math.log(m),
            "estimator": cfg["estimator"], "splits": cfg["splits"], "cond": cfg["cond"], "rows": int(x.shape[0]),
            "columns": [int(x.shape[1]), int(y.shape[1])], "per_seed": per_seed,
            "steps_per_s": float(sum(rates) / len(rates)), "seconds": time.perf_counter() - t_start}  # fmt: skip
    if len(per_seed[0]["terms"]) > 1:
        body["terms"] = [float(sum(p["terms"][k] for p in per_seed) / seeds) for k in range(len(per_seed[0]["terms"]))]
    emit(body)
