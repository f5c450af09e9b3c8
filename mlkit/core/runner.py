"""The run lifecycle of every task, in one order:

    merge config -> task.finalize -> device -> seed -> run dir with the final config.yaml
    -> repetitions x (EpochLoop over the task's train_epoch/validate, monitor from task.monitor) or one-shot fit
    -> best/last checkpoints, results.csv, metrics.json, results.png -> report

eval and predict restore a checkpoint through the task's hooks; predict streams (mlkit.core.predict).
`mlkit/cli.py` builds the commands and maps errors to exit codes; it calls the functions here.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlkit.core.errors import RunFailure, UsageError
from mlkit.core.registry import TaskSpec, get_spec, task_table
from mlkit.core.runtime import Ctx
from mlkit.core.task import Budget, Task, TrainState


@dataclass
class Prepared:
    """A task's hooks, its final config and the run context, ready for a mode."""

    task: Task
    spec: TaskSpec
    cfg: dict[str, Any]
    ctx: Ctx


def load_task(name: str) -> Task:
    """The task's hooks: `TASK` in `<task package>.task` (imports torch)."""
    import importlib

    mod = importlib.import_module(task_table()[name] + ".task")
    task: Task = mod.TASK
    task.spec = get_spec(name)
    missing = task.missing_hooks()
    if missing:  # a task package that is not finished: say which hooks, never fail half-way through a run
        raise RunFailure(f"task '{name}' does not define the hooks {', '.join(missing)}",
                         f"{task_table()[name]}.task", "See docs/adding-a-task.md.")  # fmt: skip
    return task


def explicit_keys(files: Iterable[str], sets: Iterable[str], flags: Mapping[str, Any]) -> frozenset[str]:
    """Dotted keys the user set by --config, --set or a flag (a preset never overrides them)."""
    from mlkit.core.config import parse_set, read_file

    keys: set[str] = set()

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for k, v in node.items():
            if isinstance(v, Mapping) and v:
                walk(v, f"{prefix}{k}.")
            keys.add(f"{prefix}{k}")

    for f in files:
        walk(read_file(f), "")
    walk(parse_set(list(sets)), "")
    keys.update(k for k, v in flags.items() if v is not None)
    return frozenset(keys)


def _dotted_keys(node: Mapping[str, Any], prefix: str = "") -> frozenset[str]:
    keys: set[str] = set()
    for k, v in node.items():
        keys.add(f"{prefix}{k}")
        if isinstance(v, Mapping):
            keys |= _dotted_keys(v, f"{prefix}{k}.")
    return frozenset(keys)


def prepare(
    name: str,
    mode: str,
    files: Iterable[str] = (),
    sets: Iterable[str] = (),
    flags: Mapping[str, Any] | None = None,
    base: Mapping[str, Any] | None = None,
    *,
    quiet: bool = False,
    debug: bool = False,
    project: str | Path = "runs",
    distributed: bool | None = None,
) -> Prepared:
    """Merge the config, let the task finalize it, then pick the device, start torchrun's group and seed."""
    from mlkit.core.config import load_defaults, resolve
    from mlkit.core.console import make_console
    from mlkit.core.data import resolve_data
    from mlkit.core.runtime import Dist, dist_from_env, init_distributed, seed_everything, select_device

    spec = get_spec(name)
    files, sets, flags = list(files), list(sets), dict(flags or {})
    defaults = load_defaults(task_table()[name])
    cfg = resolve(defaults, files, sets, flags, base)
    explicit = explicit_keys(files, sets, flags)
    if base:  # a saved run's config is final as a whole: a preset never applies to it again
        explicit = explicit | _dotted_keys(base)
    tiny = tiny_overrides(name) if mode == "train" else {}
    if tiny:  # MLKIT_TINY=1: the task's TINY settings win over everything (docs tests, smoke runs)
        from mlkit.core.config import merge, set_dotted

        nested: dict[str, Any] = {}
        for k, v in tiny.items():
            set_dotted(nested, k, v)
        cfg = merge(cfg, nested, source="MLKIT_TINY")
        explicit = explicit | frozenset(tiny)
    task = load_task(name)
    cfg = task.finalize(cfg, explicit, mode)
    check_common(cfg)
    if cfg.get("data") not in (None, ""):
        cfg["data"] = str(resolve_data(str(cfg["data"]), spec.layout).resolve())
    dist = dist_from_env() if (mode == "train" if distributed is None else distributed) else Dist()
    console = make_console(quiet=quiet or dist.rank != 0)
    device = select_device(str(cfg.get("device", "auto")), dist)
    init_distributed(dist, device)
    seed = int(cfg.get("seed", 0))
    seed_everything(seed, bool(cfg.get("deterministic", False)))
    ctx = Ctx(task=name, mode=mode, device=device, seed=seed, dist=dist, console=console, quiet=quiet,
              debug=debug, project=Path(project))  # fmt: skip
    return Prepared(task, spec, cfg, ctx)


def tiny_overrides(name: str) -> dict[str, Any]:
    """The task's TINY overrides when MLKIT_TINY is set (to anything but '' or 0), else {}."""
    import os

    from mlkit.core.registry import task_module

    if os.environ.get("MLKIT_TINY", "") in ("", "0"):
        return {}
    return dict(getattr(task_module(name), "TINY", {}))


def check_common(cfg: Mapping[str, Any]) -> None:
    """Values every task shares: epochs and batch_size >= 1, a finite positive lr (exit 2 otherwise)."""
    import math

    for key in ("epochs", "batch_size"):
        v = cfg.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise UsageError(f"{key} must be an integer >= 1, got {v!r}", f"--{key.replace('_', '-')}")
    lr = cfg.get("lr")
    if isinstance(lr, (int, float)) and not isinstance(lr, bool) and not (math.isfinite(lr) and lr > 0):
        raise UsageError(f"lr must be a finite number > 0, got {lr!r}", "--lr", "Pass e.g. --lr 0.01.")


def _print_config(ctx: Ctx, cfg: Mapping[str, Any]) -> None:
    from mlkit.core.config import dump

    if ctx.is_main and not ctx.quiet:
        ctx.console.print(f"[dim]config ({ctx.task} {ctx.mode}):[/]")
        ctx.console.print(dump(dict(cfg)).rstrip(), style="dim", markup=False)


def report(ctx: Ctx, metrics: Mapping[str, Any], as_json: bool, run_dir: Path | None) -> None:
    """Metrics as one JSON object on stdout (--json) or a table on stderr."""
    from mlkit.core.console import emit, metrics_table

    if not ctx.is_main:
        return
    if as_json:
        body = {"schema_version": 1, "task": ctx.task, "mode": ctx.mode,
                "run_dir": str(run_dir) if run_dir else None, "metrics": dict(metrics)}  # fmt: skip
        emit(body)
    else:
        ctx.console.print(metrics_table(metrics, f"{ctx.task} {ctx.mode}"))
        if run_dir:
            ctx.console.print(f"results saved to {run_dir}")


# ---------------------------------------------------------------------------------------------------- train
def _resume_dir(project: Path, task: str, name: str | None) -> Path:
    root = project / task
    if name and name != "train":
        cand = root / name
    else:
        runs = sorted(root.glob("*/weights/last.pt"), key=lambda p: p.stat().st_mtime)
        if not runs:
            raise UsageError(f"no run to resume in {root}", None, f"Start one with `mlkit {task} train`.")
        cand = runs[-1].parents[1]
    if not (cand / "weights" / "last.pt").is_file():
        raise UsageError(f"no last.pt to resume in {cand}", None, "Name a run that has weights/last.pt with --name.")
    return cand


def train(name: str, kw: dict[str, Any], flags: dict[str, Any]) -> None:
    """`mlkit <task> train`: final config -> run dir -> repetitions of the epoch loop (or one fit) -> report."""
    import yaml

    from mlkit.core import checkpoint
    from mlkit.core.rundir import check_name, create_run_dir, write_config
    from mlkit.core.runtime import close_distributed

    check_name(kw.get("name") or "train")
    budget = _budget(kw)  # checked before anything is written; the clock starts here
    project = Path(kw.get("project") or "runs")
    base, resume_ck, resume_dir = None, None, None
    if kw.get("resume"):
        spec_task = load_task(name)
        if not spec_task.resumable:
            raise UsageError(f"{name} runs cannot be resumed: {spec_task.not_resumable_why}", "--resume",
                             f"Start a new run with `mlkit {name} train`.")  # fmt: skip
        resume_dir = _resume_dir(project, name, kw.get("name"))
        base = yaml.safe_load((resume_dir / "config.yaml").read_text(encoding="utf-8")) or {}
        base.pop("task", None)
    p = prepare(name, "train", kw.get("config") or (), kw.get("set") or (), flags, base,
                quiet=bool(kw.get("quiet")), debug=bool(kw.get("debug")), project=project)  # fmt: skip
    task, cfg, ctx = p.task, p.cfg, p.ctx
    created = False
    try:
        if resume_dir is not None:
            last = resume_dir / "weights" / "last.pt"
            resume_ck = checkpoint.load(last, name)
            if "train_state" not in resume_ck:
                raise UsageError("checkpoint has no training state to resume from", str(last), "Resume from last.pt.")
            if resume_ck.get("config_hash") != checkpoint.config_hash(cfg):
                raise UsageError("config differs from the run being resumed", str(last),
                                 "Resume with the run's own config; only epochs, device and data may change.")  # fmt: skip
            ctx.run_dir = resume_dir
        if kw.get("check"):
            _checked(ctx, cfg)
            return
        if resume_dir is None:
            run_dir = None
            if ctx.is_main:
                run_dir = create_run_dir(project, name, kw.get("name") or "train", bool(kw.get("exist_ok")))
                created = True
            ctx.run_dir = Path(ctx.broadcast(run_dir))
        if ctx.is_main:
            write_config(ctx.run_dir, cfg, name)
        _print_config(ctx, cfg)
        ctx.log(f"{name} train on {ctx.device}" + (f" x{ctx.dist.world_size} ranks" if ctx.dist.enabled else ""))
        try:
            try:
                budget.distributed = ctx.dist.enabled
                metrics = _train(task, p.spec, cfg, ctx, resume_ck, budget)
            except Exception:  # Ctrl-C inside a compiled kernel can arrive as another exception (SystemError)
                from mlkit.core.runtime import sigint_seen

                if sigint_seen():
                    raise KeyboardInterrupt from None
                raise
        except KeyboardInterrupt:
            if ctx.is_main and task.resumable and (ctx.run_dir / "weights" / "last.pt").is_file():
                sys.stderr.write(f"interrupted: {ctx.run_dir / 'weights' / 'last.pt'} holds the last finished "
                                 f"epoch; continue with `mlkit {name} train --resume --name {ctx.run_dir.name} "
                                 f"--project {project}`\n")  # fmt: skip
            raise
        except BaseException:
            # a run that failed before its first checkpoint leaves nothing behind to use up the name
            if created and ctx.is_main and not (ctx.run_dir / "weights" / "last.pt").exists():
                shutil.rmtree(ctx.run_dir, ignore_errors=True)
            raise
        ctx.barrier()
        if ctx.is_main:
            from mlkit.core.plots import plot_results

            plot_results(ctx.run_dir / "results.csv", ctx.run_dir / "results.png", f"{name} train")
        report(ctx, metrics, bool(kw.get("json")), ctx.run_dir)
    finally:
        close_distributed()


def _budget(kw: Mapping[str, Any]) -> Budget:
    import time

    steps, secs = kw.get("max_steps"), kw.get("time_budget_s")
    if steps is not None and steps < 1:
        raise UsageError(f"--max-steps must be >= 1, got {steps}", "--max-steps")
    if secs is not None and not secs > 0:
        raise UsageError(f"--time-budget-s must be > 0, got {secs}", "--time-budget-s")
    return Budget(max_steps=steps, seconds=secs, start=time.monotonic())


def _train(task: Task, spec: TaskSpec, cfg: dict[str, Any], ctx: Ctx, resume: dict | None,
           budget: Budget) -> dict[str, Any]:  # fmt: skip
    from mlkit.core import checkpoint
    from mlkit.core.trainer import EpochLoop, write_final

    data = task.load_data(cfg, ctx)
    if task.one_shot:
        res = task.fit(cfg, ctx, data)
        ck = checkpoint.make(ctx.task, cfg, res.state_dict, epoch=0, metrics=res.metrics, extra=res.extra)
        if ctx.is_main:
            checkpoint.save(ck, ctx.run_dir / "weights" / "best.pt")
            checkpoint.save(ck, ctx.run_dir / "weights" / "last.pt")
        out = dict(res.metrics)
        write_final(ctx, out)
        return out
    reps = task.repetitions(cfg)
    carry: dict[str, Any] = {"results": [], "rep0_best": {}, "rep0_best_epoch": -1}
    start = 0
    if resume is not None:
        ts = resume["train_state"]
        start = int(ts.get("rep", 0))
        carry = dict(ts.get("carry") or carry)
    extra = task.checkpoint_extra(cfg, ctx, data)
    monitor, monitor_mode = task.monitor(cfg)
    for rep in ctx.track(range(start, reps), "repetitions") if reps > 1 else range(start, reps):
        model = task.build_model(cfg, ctx, data)
        opt, sched = task.build_optimizer(cfg, model)
        st = TrainState(data=data, model=model, net=ctx.wrap(model), optimizer=opt, scheduler=sched, rep=rep,
                        budget=budget)  # fmt: skip
        loop = EpochLoop(ctx, cfg, model, opt, sched, monitor=monitor, mode=monitor_mode,
                         patience=task.patience(cfg), extra=extra, rep=rep, carry=carry,
                         resume=resume if (resume is not None and rep == start) else None)  # fmt: skip
        for epoch in loop:
            st.epoch, st.generator = epoch, loop.generator()
            metrics = task.train_epoch(cfg, ctx, st)
            metrics.update(task.validate(cfg, ctx, st))
            if ctx.broadcast(budget.spent):  # rank 0 decides; checked before the log, which saves last.pt
                loop.stop = True
            loop.log(metrics)
        model.load_state_dict(loop.best_state())
        result = task.test(cfg, ctx, st)
        if reps > 1:
            ctx.log(f"rep {rep + 1}/{reps}: best epoch {loop.best_epoch + 1}  "
                    + "  ".join(f"{k} {v:.4f}" for k, v in result.items() if isinstance(v, float)))  # fmt: skip
        if rep == 0:
            carry["rep0_best"], carry["rep0_best_epoch"] = dict(loop.best_metrics), loop.best_epoch
        carry["results"] = [*carry["results"], {k: float(v) for k, v in result.items()}]
        loop.carry = carry
        if loop.stop and budget.spent:
            ctx.log(f"stopped: {'--max-steps' if budget.max_steps and budget.steps >= budget.max_steps else '--time-budget-s'}"
                    f" spent after {budget.steps} steps (repetition {rep + 1}, epoch {loop.epoch + 1})")  # fmt: skip
            break
    out: dict[str, Any] = {**carry["rep0_best"], **task.summarize(cfg, list(carry["results"]))}
    out["best_epoch"] = int(carry["rep0_best_epoch"]) + 1  # counted from 1, like the console and results.csv
    write_final(ctx, out)
    return out


# ---------------------------------------------------------------------------------------------- eval/predict
def _restore(name: str, mode: str, kw: dict[str, Any], flags: dict[str, Any]) -> tuple[Prepared, Any]:
    from mlkit.core import checkpoint
    from mlkit.core.console import make_console
    from mlkit.core.rundir import resolve_model

    project = Path(kw.get("project") or "runs")
    path = resolve_model(kw.get("model"), project, name, make_console(bool(kw.get("quiet"))).print)
    ckpt = checkpoint.load(path, name)
    p = prepare(name, mode, kw.get("config") or (), kw.get("set") or (), flags, ckpt.get("config") or {},
                quiet=bool(kw.get("quiet")), debug=bool(kw.get("debug")), project=project)  # fmt: skip
    p.ctx.run_dir = path.parent.parent if path.parent.name == "weights" else None
    if kw.get("check"):
        return p, None
    return p, p.task.restore(p.cfg, p.ctx, ckpt)


def evaluate(name: str, kw: dict[str, Any], flags: dict[str, Any]) -> None:
    """`mlkit <task> eval`: restore a checkpoint, evaluate on the test split, report."""
    p, restored = _restore(name, "eval", kw, flags)
    if kw.get("check"):
        return _checked(p.ctx, p.cfg)
    p.ctx.log(f"{name} eval: {p.ctx.run_dir or kw.get('model')} on {p.cfg.get('data') or 'the embedded default data'}"
              f" ({p.ctx.device}); `--check` prints the whole config")  # fmt: skip
    report(p.ctx, p.task.evaluate(p.cfg, p.ctx, restored), bool(kw.get("json")), None)


def predict(name: str, kw: dict[str, Any], flags: dict[str, Any]) -> None:
    """`mlkit <task> predict`: records in (file, folder or stdin), one output per record, streamed."""
    from mlkit.core.predict import open_records, stream

    source = kw.get("input") or "-"
    if source == "-" and sys.stdin.isatty():
        raise UsageError("predict reads records from stdin, and stdin is a terminal", None,
                         f"Pipe records in (`... | mlkit {name} predict`) or pass --input FILE.")  # fmt: skip
    out_path = kw.get("output") or "-"
    if out_path != "-" and not Path(out_path).parent.resolve().is_dir():
        raise UsageError(f"output folder does not exist: {Path(out_path).parent}", "--output", "Create it first.")
    p, restored = _restore(name, "predict", kw, flags)
    if kw.get("check"):
        return _checked(p.ctx, p.cfg)
    records = open_records(source, p.task, p.spec)
    batch = int(kw.get("predict_batch") or p.task.predict_batch_size(p.cfg))
    on_error = kw.get("on_error") or "stop"
    if on_error not in ("stop", "skip"):
        raise UsageError(f"bad --on-error '{on_error}'", "--on-error", "Use stop or skip.")
    stream(p, restored, records, out_path, batch, on_error)


def verb(name: str, verb_name: str, fn: Any, kw: dict[str, Any], flags: dict[str, Any]) -> None:
    """An extra verb that takes the task's config (e.g. `gbp precompute`): same merge/finalize/seed, then fn."""
    p = prepare(name, verb_name, kw.get("config") or (), kw.get("set") or (), flags, quiet=bool(kw.get("quiet")),
                debug=bool(kw.get("debug")), project=kw.get("project") or "runs", distributed=False)  # fmt: skip
    if kw.get("check"):
        return _checked(p.ctx, p.cfg)
    fn(p.cfg, p.ctx, kw)


def _checked(ctx: Ctx, cfg: Mapping[str, Any]) -> None:
    """--check: flags, config and paths are valid; print the final config as one JSON object and stop."""
    from mlkit.core.console import emit

    if ctx.is_main:
        emit({"schema_version": 1, "task": ctx.task, "mode": ctx.mode, "check": "ok", "config": dict(cfg)})

