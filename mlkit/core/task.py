"""The hooks a task supplies; `mlkit.core.runner` calls them in one fixed order for every task.

A task is a `Task` subclass in `mlkit/tasks/<task>/task.py`, exported as `TASK`. The runner owns everything
else: config merging, device, seed, run dir, the epoch loop (monitor from the task's spec), checkpoints,
resume, repetitions, results.csv / results.png / metrics.json, and the streaming predict skeleton.

Train (epoch-based), per repetition:      finalize -> load_data -> build_model -> build_optimizer ->
                                          [train_epoch -> validate] * epochs -> (best weights) -> test
Train (one-shot, `one_shot = True`):      finalize -> load_data -> fit
Eval:                                     finalize -> restore(checkpoint) -> evaluate
Predict:                                  finalize -> restore(checkpoint) -> [parse_record * n -> predict_batch]

See docs/adding-a-task.md and the template task in tests/toytask/.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlkit.core.registry import TaskSpec
from mlkit.core.runtime import Ctx


@dataclass
class Budget:
    """--max-steps / --time-budget-s: the run stops cleanly (checkpoint, test, metrics) once either is spent."""

    max_steps: int | None = None
    seconds: float | None = None
    steps: int = 0
    start: float = 0.0
    distributed: bool = False

    @property
    def spent(self) -> bool:
        import time

        if self.max_steps is not None and self.steps >= self.max_steps:
            return True
        return self.seconds is not None and time.monotonic() - self.start >= self.seconds


@dataclass
class TrainState:
    """What one repetition's hooks work on; the runner fills it and advances `epoch`."""

    data: Any
    model: Any  # the bare nn.Module (checkpoints hold its state_dict)
    net: Any  # the module to call in training: DistributedDataParallel under torchrun, else `model`
    optimizer: Any = None
    scheduler: Any = None
    epoch: int = 0
    rep: int = 0
    generator: Any = None  # torch.Generator seeded by (seed, epoch): the epoch's data order survives a resume
    scratch: dict[str, Any] = field(default_factory=dict)  # the task's own per-repetition values
    budget: Budget = field(default_factory=Budget)

    def tick(self) -> bool:
        """Count one optimizer step; True when --max-steps or --time-budget-s is spent (end the epoch then).

        Under torchrun only the step count ends an epoch early (every rank counts the same steps); the time
        budget is then decided by rank 0 at the epoch's end, so no rank waits for another in a collective."""
        self.budget.steps += 1
        if self.budget.distributed:
            return self.budget.max_steps is not None and self.budget.steps >= self.budget.max_steps
        return self.budget.spent


@dataclass
class FitResult:
    """What a one-shot `fit` returns: the checkpoint's weights and extras, and the run's final metrics."""

    state_dict: Mapping[str, Any]
    extra: Mapping[str, Any]
    metrics: Mapping[str, float]


class Task:
    """Base class of a task's hooks. Override what the method needs; the defaults suit a classifier.

    Hooks every task defines (there are no defaults; `missing_hooks` is checked when the task is loaded):
      load_data(cfg, ctx) -> data          read, or build the embedded default of, the training data; validate
                                           it (DataError, exit 3)
      build_model(cfg, ctx, data) -> nn.Module   a fresh model on ctx.device
      train_epoch(cfg, ctx, st) -> dict    one pass; `train/...` metrics (train/loss at least); call
                                           `st.tick()` after each optimizer step, end the pass when it is True
      fit(cfg, ctx, data) -> FitResult     one-shot training, instead of build_model/train_epoch
      restore(cfg, ctx, ckpt) -> restored  what evaluate/predict need (model in eval mode, data)
      evaluate(cfg, ctx, restored) -> dict test metrics (keys: the spec's `metrics`)
      predict_batch(cfg, ctx, restored, records) -> list   one row per record (a dict, or a str written as is)
      sample_inputs(run_dir) -> list[str]  predict records valid for a model of the embedded default
    `fit` only when one_shot is True; `build_model` and `train_epoch` only when it is False.
    """

    spec: TaskSpec  # set by the registry from the package's SPEC
    COMMON = ("load_data", "restore", "evaluate", "predict_batch", "sample_inputs")
    one_shot = False  # True: `fit` builds the model in one pass (memory banks, closed forms); no epochs
    resumable = True
    not_resumable_why = ""  # shown (exit 2) when --resume is asked of a task that cannot resume

    # ---------------------------------------------------------------- config
    def finalize(self, cfg: dict[str, Any], explicit: frozenset[str], mode: str) -> dict[str, Any]:
        """Return the final config: presets (never over `explicit` keys), derived values, value checks.

        `explicit` holds the dotted keys the user set (flags, --set, --config); a preset fills only the
        others. For eval, predict and --resume every key of the saved config counts as explicit (it is
        final), so a preset never applies twice. Raise UsageError (exit 2) for a bad value. Idempotent.
        """
        return cfg

    def repetitions(self, cfg: Mapping[str, Any]) -> int:
        """How many independent repetitions (fresh initialisation) to train; their metrics are averaged."""
        return 1

    def monitor(self, cfg: Mapping[str, Any]) -> tuple[str, str]:
        """(metric, "max" | "min") that picks best.pt and drives early stopping; default: the spec's."""
        return self.spec.monitor, self.spec.monitor_mode

    def patience(self, cfg: Mapping[str, Any]) -> int | None:
        """Epochs without improvement of the monitor before early stopping (None: never stop early)."""
        return None

    # ---------------------------------------------------------------- train

    def build_optimizer(self, cfg: dict[str, Any], model: Any) -> tuple[Any, Any]:
        """(optimizer, scheduler or None); the default is Adam at cfg['lr']."""
        import torch

        return torch.optim.Adam(model.parameters(), lr=float(cfg["lr"])), None

    def validate(self, cfg: dict[str, Any], ctx: Ctx, st: TrainState) -> dict[str, float]:
        """`val/...` metrics after an epoch; must include the spec's monitor."""
        return {}

    def test(self, cfg: dict[str, Any], ctx: Ctx, st: TrainState) -> dict[str, float]:
        """Final metrics of one repetition, with the best epoch's weights loaded into st.model."""
        return {}

    def summarize(self, cfg: dict[str, Any], results: list[dict[str, float]]) -> dict[str, float]:
        """Combine the test metrics of every repetition (default: the only one)."""
        return dict(results[0])

    def checkpoint_extra(self, cfg: dict[str, Any], ctx: Ctx, data: Any) -> dict[str, Any]:
        """Plain values saved in every checkpoint's `extra` (vocabularies, class names, shapes)."""
        return {}

    # ---------------------------------------------------------------- eval / predict

    def parse_record(self, cfg: dict[str, Any], restored: Any, line: str, n: int) -> Any:
        """Turn one input line (1-based number n) into a record; raise DataError naming `input line n`."""
        return line

    def predict_batch_size(self, cfg: Mapping[str, Any]) -> int:
        """Records per predict_batch call at most (only records already read are batched; --batch-size wins)."""
        return 64

    def expand_input(self, folder: Path) -> Iterator[str] | None:
        """Records for a folder given to --input (None: folders are not accepted)."""
        return None

    def missing_hooks(self) -> list[str]:
        """The required hooks this task does not define (see the class docstring)."""
        need = [*self.COMMON, *(("fit",) if self.one_shot else ("build_model", "train_epoch"))]
        return [name for name in need if not callable(getattr(self, name, None))]
