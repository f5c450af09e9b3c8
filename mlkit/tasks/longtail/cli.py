"""`mlkit longtail pretrain`: stage 1 (MGP) as a run of its own, i.e. `train` with stage=pretrain.

It takes train's options (run dir, --resume, --max-steps, --time-budget-s, torchrun) plus the flags the spec marks
for `pretrain`; its best.pt / run dir is what `mlkit longtail train --init` reads. No torch import here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

NAME = "longtail"


def _command() -> Any:
    from mlkit import cli as C
    from mlkit.core.config import load_defaults
    from mlkit.core.registry import get_spec, task_table

    base = get_spec(NAME) if NAME in task_table() else None
    module = task_table().get(NAME, "mlkit.tasks.longtail")
    if base is None:
        from mlkit.tasks.longtail import SPEC as base
    spec = replace(
        base, flags=tuple(replace(f, modes=("train",)) for f in base.flags if "pretrain" in f.modes)
    )
    defaults = load_defaults(module)
    opts = C._config_opts(defaults, spec, "train") + [
        C.Opt("name", "--name", str, "pretrain", "Run name (auto-incremented: pretrain, pretrain2, ...)."),
        C.Opt("exist_ok", "--exist-ok", bool, False, "Reuse the run dir if it exists."),
        C.Opt("resume", "--resume", bool, False, "Continue the run named by --name from last.pt."),
        C.Opt("max_steps", "--max-steps", int, None, "Stop cleanly after this many optimizer steps."),
        C.Opt("time_budget_s", "--time-budget-s", float, None, "Stop cleanly after this many seconds of training."),
    ] + C._output_opts("train")  # fmt: skip

    def run(kw: dict[str, Any]) -> None:
        import warnings

        from mlkit.core import runner

        flags = C._flags(kw, defaults, spec, "train")
        flags["stage"] = "pretrain"
        with warnings.catch_warnings():
            if kw.get("quiet"):
                warnings.simplefilter("ignore")
            runner.train(NAME, kw, flags)

    doc = ("Stage 1 (MGP): MAE pretraining on the long-tailed train images, no labels; the run's best.pt feeds "
           "`mlkit longtail train --init <run dir>`.")  # fmt: skip
    return C.make_command(run, opts, doc)


pretrain = _command()
