"""The `mlkit` command: a Typer root app with one sub-app per registered task.

`import mlkit.cli` stays light (no torch): task packages declare a TaskSpec and their run modules are imported only
when a command runs. `main()` maps errors to exit codes: 0 ok, 1 failure, 2 usage, 3 bad input data, 130 interrupted.
"""

from __future__ import annotations

import inspect
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import typer

from mlkit import __version__
from mlkit.core.errors import MlkitError
from mlkit.core.registry import TaskSpec, task_table

try:  # Typer >= 0.17 vendors its own Click
    from typer._click import exceptions as _click_exc
except ImportError:  # pragma: no cover - older Typer runs on Click itself
    from click import exceptions as _click_exc  # type: ignore[no-redef]

_EXIT = (typer.Exit, getattr(_click_exc, "Exit", typer.Exit))
_ABORT = (typer.Abort, getattr(_click_exc, "Abort", typer.Abort))
_CLICK_ERROR = (_click_exc.ClickException,)

EXIT_INTERRUPTED = 130


# ---------------------------------------------------------------- command building
class Opt:
    """One CLI option of a generated command: parameter name, flag, type, default, help, config key."""

    def __init__(
        self, name: str, flag: str, type_: Any, default: Any, help_: str, key: str | None = None, multiple=False
    ) -> None:
        self.name, self.flag, self.type, self.default, self.help, self.key = name, flag, type_, default, help_, key
        self.multiple = multiple

    def parameter(self) -> inspect.Parameter:
        if self.type is bool:
            decl = typer.Option(self.default, self.flag, help=self.help)
            ann: Any = bool
        elif self.multiple:
            decl = typer.Option(None, self.flag, help=self.help)
            ann = Optional[list[self.type]]  # noqa: UP045 - typer reads typing forms
        else:
            decl = typer.Option(self.default, self.flag, help=self.help)
            ann = Optional[self.type]  # noqa: UP045
        return inspect.Parameter(self.name, inspect.Parameter.KEYWORD_ONLY, default=decl, annotation=ann)


def make_command(fn: Callable[[dict[str, Any]], Any], opts: list[Opt], doc: str) -> Callable[..., Any]:
    """A function whose signature Typer reads as the given options, calling fn(dict of values)."""

    def command(**kwargs: Any) -> Any:
        return fn(kwargs)

    params = [o.parameter() for o in opts]
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = doc
    return command


COMMON_KEYS = [  # (flag, config key, type, help)
    ("--data", "data", str, "Dataset path, or a dataset name under $MLKIT_DATASETS."),
    ("--arch", "arch", str, "Architecture."),
    ("--epochs", "epochs", int, "Training epochs."),
    ("--batch-size", "batch_size", int, "Batch size."),
    ("--lr", "lr", float, "Learning rate."),
    ("--seed", "seed", int, "Random seed."),
    ("--device", "device", str, "auto, cpu, cuda or cuda:N."),
]


def _config_opts(defaults: dict[str, Any], spec: TaskSpec, mode: str) -> list[Opt]:
    opts = [
        Opt("config", "--config", str, None, "YAML config file(s); later files win.", multiple=True),
        Opt("set", "--set", str, None, "Override a config key: --set a.b=value (YAML value).", multiple=True),
    ]
    skip = {"train": set(), "eval": {"--arch", "--epochs", "--lr"}, "predict": {"--arch", "--epochs", "--lr", "--data", "--batch-size"}}
    own = {f.name for f in spec.flags if mode in f.modes}  # a task's own flag (e.g. --arch with its choices) wins
    for flag, key, type_, help_ in COMMON_KEYS:
        if key in defaults and flag not in own and flag not in skip.get(mode, {"--arch", "--epochs", "--lr", "--batch-size"}):
            opts.append(Opt(key, flag, type_, None, help_, key=key))
    for f in spec.flags:
        if mode in f.modes:
            pname = "t_" + f.name.lstrip("-").replace("-", "_")
            default = False if f.type is bool else None
            opts.append(Opt(pname, f.name, f.type, default, f.help, key=f.key or None, multiple=f.multiple))
    return opts


def _output_opts(mode: str) -> list[Opt]:
    opts = [
        Opt("project", "--project", str, "runs", "Runs root folder."),
        Opt("check", "--check", bool, False, "Validate flags, config and paths; print the final config as JSON; do not run."),
        Opt("quiet", "--quiet", bool, False, "No progress bars or info lines."),
        Opt("debug", "--debug", bool, False, "Show tracebacks."),
    ]
    if mode in ("train", "eval"):
        opts.insert(1, Opt("json", "--json", bool, False, "Print one JSON object with run dir and metrics on stdout."))
    return opts


def _train_opts(defaults: dict[str, Any], spec: TaskSpec, run_name: str) -> list[Opt]:
    return _config_opts(defaults, spec, "train") + [
        Opt("name", "--name", str, run_name, f"Run name (auto-incremented: {run_name}, {run_name}2, ...)."),
        Opt("exist_ok", "--exist-ok", bool, False, "Reuse the run dir if it exists."),
        Opt("resume", "--resume", bool, False, "Continue the run named by --name (default: the newest) from last.pt."),
        Opt("max_steps", "--max-steps", int, None, "Stop cleanly (checkpoint, test, metrics) after this many optimizer steps."),
        Opt("time_budget_s", "--time-budget-s", float, None, "Stop cleanly after this many seconds of training."),
    ] + _output_opts("train")


def build_task_app(name: str) -> typer.Typer:
    """The sub-app of one task: train, eval, predict, config, plus its own verbs."""
    from mlkit.core.config import default_text, load_defaults
    from mlkit.core.registry import get_spec

    module = task_table()[name]
    spec = get_spec(name)
    defaults = load_defaults(module)
    sub = typer.Typer(help=f"{spec.method} ({spec.paper}).", no_args_is_help=True, add_completion=False)

    if "train" in spec.modes:
        opts = _train_opts(defaults, spec, "train")
        sub.command("train")(make_command(lambda kw: _dispatch(name, "train", kw), opts, f"Train a {name} model (see `mlkit {name} config` for every key)."))
    for verb, (doc, fixed) in spec.train_verbs.items():  # train with fixed keys (a stage run on its own)
        vspec = replace(spec, flags=tuple(replace(f, modes=("train",)) for f in spec.flags if verb in f.modes))
        sub.command(verb)(make_command(lambda kw, vs=vspec, fx=fixed: _dispatch(name, "train", kw, spec=vs, fixed=fx),
                                       _train_opts(defaults, vspec, verb), doc))  # fmt: skip
    if "eval" in spec.modes:
        opts = [Opt("model", "--model", str, None, "Checkpoint (.pt or run dir); default: newest best.pt.")]
        opts += _config_opts(defaults, spec, "eval") + _output_opts("eval")
        sub.command("eval")(make_command(lambda kw: _dispatch(name, "eval", kw), opts, f"Evaluate a checkpoint on its test split (task {name})."))
    if "predict" in spec.modes:
        opts = [
            Opt("model", "--model", str, None, "Checkpoint (.pt or run dir); default: newest best.pt."),
            Opt("input", "--input", str, "-", f"Input: {spec.inputs}; one record per line; '-' is stdin."),
            Opt("output", "--output", str, "-", "Output JSON Lines file; '-' is stdout."),
            Opt("predict_batch", "--batch-size", int, None, "Records per batch at most (only what is already read)."),
            Opt("on_error", "--on-error", str, "stop", "A bad record: stop (exit 3 after earlier outputs) or skip (an error row)."),
        ]
        opts += _config_opts(defaults, spec, "predict") + _output_opts("predict")
        sub.command("predict")(make_command(lambda kw: _dispatch(name, "predict", kw), opts, f"Predict with a checkpoint (task {name}): records in, JSON Lines out."))

    @sub.command("config")
    def show_config(
        preset: Optional[str] = typer.Option(  # noqa: UP045 - typer reads typing forms
            None, "--preset", help="Print the full config with this preset applied (e.g. paper)."
        ),
    ) -> None:
        """Print the task's default YAML config (with --preset: every value of that protocol)."""
        if not preset:
            sys.stdout.write(default_text(module))
            return
        from mlkit.core.config import dump, load_defaults
        from mlkit.core.runner import load_task

        cfg = load_defaults(module)
        cfg["preset"] = preset
        cfg = load_task(name).finalize(cfg, frozenset({"preset"}), "train")  # the task's own preset logic too
        cfg.pop("presets", None)
        sys.stdout.write(f"# mlkit {name} config --preset {preset}: the defaults with the preset applied\n")
        sys.stdout.write(dump(cfg))

    import importlib

    for verb, target in spec.verbs.items():
        mod_name, fn_name = target.split(":")
        fn = getattr(importlib.import_module(mod_name), fn_name)
        sub.command(verb)(fn)
    for verb, target in spec.config_verbs.items():  # verbs on the task's config: same merge, finalize, seed
        mod_name, fn_name = target.split(":")
        fn = getattr(importlib.import_module(mod_name), fn_name)
        opts = _config_opts(defaults, spec, verb) + _output_opts(verb)
        sub.command(verb)(make_command(lambda kw, v=verb, f=fn: _dispatch(name, v, kw, f), opts, fn.__doc__ or verb))
    return sub


def build_app() -> typer.Typer:
    """The root app with every registered task."""
    app = typer.Typer(
        help="mlkit: research methods on your own data. `mlkit <task> train|eval|predict`.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    def version_cb(value: bool) -> None:
        if value:
            sys.stdout.write(f"mlkit {__version__}\n")
            raise typer.Exit(0)

    @app.callback()
    def root(
        version: bool = typer.Option(False, "--version", callback=version_cb, is_eager=True, help="Print the version."),
    ) -> None:
        """mlkit: research methods on your own data, from one command line."""

    @app.command("tasks")
    def tasks_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
        """List the tasks: method, paper, modes."""
        from rich.console import Console
        from rich.table import Table

        from mlkit.core.console import emit
        from mlkit.core.registry import get_spec

        rows = []
        for tname in task_table():
            spec = get_spec(tname)
            rows.append(
                {"task": tname, "method": spec.method, "paper": spec.paper,
                 "modes": [*spec.modes, *spec.train_verbs, *spec.verbs, *spec.config_verbs]}
            )
        if as_json:
            emit({"tasks": rows})
            return
        table = Table(title="mlkit tasks")
        for col in ("task", "method", "paper", "modes"):
            table.add_column(col)
        for r in rows:
            table.add_row(r["task"], r["method"], r["paper"], ", ".join(r["modes"]))
        Console(highlight=False).print(table)  # the listing is the command's data: stdout

    @app.command("settings")
    def settings_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """Show where mlkit looks for datasets and writes runs."""
        from rich.console import Console

        from mlkit.core.console import emit, metrics_table
        from mlkit.core.data import datasets_root

        info = {
            "version": __version__,
            "datasets_root": str(datasets_root()),
            "datasets_root_source": "MLKIT_DATASETS" if "MLKIT_DATASETS" in os.environ else "default",
            "runs_root": str(Path("runs").resolve()),
            "debug": bool(os.environ.get("MLKIT_DEBUG")),
        }
        if as_json:
            emit(info)
        else:
            Console(highlight=False).print(metrics_table(info, "mlkit settings"))

    for tname in task_table():
        try:
            app.add_typer(build_task_app(tname), name=tname)
        except MlkitError:
            raise
        except Exception as exc:  # a broken task must not take the whole CLI down
            broken = typer.Typer(help=f"(failed to load: {type(exc).__name__}: {exc})")
            msg = f"task '{tname}' failed to load: {type(exc).__name__}: {exc}"

            @broken.callback(invoke_without_command=True)
            def _broken(msg: str = typer.Option(msg, hidden=True)) -> None:
                raise MlkitError(msg, None, "Reinstall mlkit, or run with --debug.")

            app.add_typer(broken, name=tname)
    return app


# ---------------------------------------------------------------- runs (the lifecycle lives in mlkit.core.runner)
def _flags(kw: dict[str, Any], defaults: dict[str, Any], spec: TaskSpec, mode: str) -> dict[str, Any]:
    """The config keys the generated options set explicitly (flags win over --config and --set)."""
    out: dict[str, Any] = {}
    for o in _config_opts(defaults, spec, mode):
        if not o.key:
            continue
        value = kw.get(o.name)
        if o.type is bool and value is False:
            continue
        if o.multiple and not value:
            continue
        if value is not None:
            out[o.key] = list(value) if o.multiple else value
    return out


def _dispatch(task: str, mode: str, kw: dict[str, Any], fn: Any = None, spec: TaskSpec | None = None,
              fixed: dict[str, Any] | None = None) -> None:  # fmt: skip
    import warnings

    from mlkit.core import runner
    from mlkit.core.config import load_defaults
    from mlkit.core.registry import get_spec

    spec = spec or get_spec(task)
    flags = {**_flags(kw, load_defaults(task_table()[task]), spec, mode), **(fixed or {})}
    with warnings.catch_warnings():
        if kw.get("quiet"):  # --quiet prints nothing but errors: library warnings (numpy, sklearn, torch) too
            warnings.simplefilter("ignore")
        if mode == "train":
            runner.train(task, kw, flags)
        elif mode == "eval":
            runner.evaluate(task, kw, flags)
        elif mode == "predict":
            runner.predict(task, kw, flags)
        else:
            runner.verb(task, mode, fn, kw, flags)


# ---------------------------------------------------------------- entry point
def _click_error_line(exc: Any) -> str:
    ctx = getattr(exc, "ctx", None)
    if not exc.format_message().strip() and ctx is not None:  # no_args_is_help: show the help
        return ctx.get_help()
    where = f" ({ctx.command_path})" if ctx is not None else ""
    hint = f" Try '{ctx.command_path} --help'." if ctx is not None else ""
    return f"error: {exc.format_message().rstrip('.')}{where}.{hint}"


def main(argv: list[str] | None = None) -> int:
    """Run the CLI. With argv given, return the exit code; from the console script, exit with it."""
    return_code = argv is not None
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("MLKIT_DEBUG", "") not in ("", "0")
    code = 0
    from mlkit.core.runtime import restore_sigint, sigint_seen, watch_sigint

    previous = watch_sigint()
    try:
        command = typer.main.get_command(build_app())
        result = command.main(args=args, prog_name="mlkit", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except _EXIT as exc:
        code = exc.exit_code
    except _ABORT:
        sys.stderr.write("interrupted\n")
        code = EXIT_INTERRUPTED
    except _CLICK_ERROR as exc:
        sys.stderr.write(_click_error_line(exc) + "\n")
        code = exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        code = EXIT_INTERRUPTED
    except MlkitError as exc:
        if debug:
            traceback.print_exc()
        sys.stderr.write(exc.line() + "\n")
        code = exc.exit_code
    except BrokenPipeError:
        code = 0
    except OSError as exc:  # the environment (read-only folder, disk full, missing folder): one line, the path
        if debug:
            traceback.print_exc()
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        sys.stderr.write(f"error: {exc.strerror or exc}{where}. Check the path, its permissions and free space.\n")
        code = 1
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        if debug:
            traceback.print_exc()
        if sigint_seen():  # Ctrl-C that surfaced from compiled code as another exception
            sys.stderr.write("interrupted\n")
            code = EXIT_INTERRUPTED
        else:
            sys.stderr.write(f"error: internal failure: {type(exc).__name__}: {exc}. Rerun with --debug for details.\n")
            code = 1
    finally:
        restore_sigint(previous)
    sys.stderr.flush()
    if return_code:
        return code
    sys.exit(code)
