"""The task table: one line per task. Task modules are imported lazily and must not import torch."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from types import ModuleType

from mlkit.core.errors import UsageError

# name -> module. Adding a task: a folder under mlkit/tasks/ and one line here.
TASKS: dict[str, str] = {
    "anomaly": "mlkit.tasks.anomaly",
    "ner": "mlkit.tasks.ner",
    "gbp": "mlkit.tasks.gbp",
    "framelet": "mlkit.tasks.framelet",
    "grounding": "mlkit.tasks.grounding",
    "longtail": "mlkit.tasks.longtail",
    "mi": "mlkit.tasks.mi",
    "kge": "mlkit.tasks.kge",
    "attack": "mlkit.tasks.attack",
    "segment": "mlkit.tasks.segment",
    "translate": "mlkit.tasks.translate",
}


@dataclass(frozen=True)
class Flag:
    """A task-specific CLI flag that sets one config key (dotted), in the modes listed.

    key "" makes an option of a config verb that is no config key: its value reaches the verb as kw["t_<name>"].
    """

    name: str
    key: str
    type: type = str
    help: str = ""
    modes: tuple[str, ...] = ("train", "eval", "predict")
    multiple: bool = False


@dataclass(frozen=True)
class TaskSpec:
    """What the CLI needs to know about a task, declared in `mlkit/tasks/<task>/__init__.py`.

    metrics: the keys `evaluate` returns (the contract test checks them).
    monitor/monitor_mode: the validation metric that picks `best.pt`.
    layout: the on-disk layout `--data` must have, shown when a dataset is not found.
    inputs: what one predict record (one input line) is.
    flags: task-specific flags mapped onto config keys.
    verbs: extra commands, name -> "module:function"; the function is registered as a Typer command.
    config_verbs: extra commands on the task's config, name -> "module:function(cfg, ctx, kw)": the runner merges
        and finalizes the config as for train (with --config/--set and the flags whose modes name the verb).
    rows: the kind of predict row (mlkit.core.predict: classification | score | spans).
    train_verbs: train-like commands, name -> (help, fixed config values): `train` with those keys set (e.g. a
        pretraining stage run on its own), taking the common train options and the flags whose modes name the verb.
    """

    name: str
    method: str
    paper: str
    metrics: tuple[str, ...]
    monitor: str
    layout: str
    inputs: str
    monitor_mode: str = "max"
    flags: tuple[Flag, ...] = ()
    verbs: dict[str, str] = field(default_factory=dict)
    modes: tuple[str, ...] = ("train", "eval", "predict")
    config_verbs: dict[str, str] = field(default_factory=dict)
    rows: str = "classification"
    train_verbs: dict[str, tuple[str, dict]] = field(default_factory=dict)


def _extra_tasks() -> dict[str, str]:
    """Tasks added through MLKIT_EXTRA_TASKS="name=module,..." (plugins and tests)."""
    extra: dict[str, str] = {}
    for item in os.environ.get("MLKIT_EXTRA_TASKS", "").split(","):
        if "=" in item:
            name, module = item.split("=", 1)
            extra[name.strip()] = module.strip()
    return extra


def task_table() -> dict[str, str]:
    """All registered tasks, name -> module."""
    return {**TASKS, **_extra_tasks()}


def task_module(name: str) -> ModuleType:
    """Import a task's package (light: it holds the TaskSpec and the sub-app's verbs)."""
    table = task_table()
    if name not in table:
        import difflib

        close = difflib.get_close_matches(name, list(table), n=1)
        hint = f"Did you mean '{close[0]}'?" if close else "Run `mlkit tasks` to list them."
        raise UsageError(f"unknown task '{name}'", None, hint)
    return importlib.import_module(table[name])


def get_spec(name: str) -> TaskSpec:
    """The TaskSpec of a registered task."""
    return task_module(name).SPEC
