"""People's text goes to stderr through one rich Console; data goes to stdout as JSON."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table

T = TypeVar("T")


def make_console(quiet: bool = False) -> Console:
    """A stderr console; quiet drops info lines (errors still print)."""
    return Console(stderr=True, quiet=quiet, highlight=False, soft_wrap=True)


def progress_enabled(console: Console, quiet: bool) -> bool:
    """Progress bars only for a person watching: a terminal on stderr and not --quiet."""
    return (not quiet) and console.is_terminal


def track(
    items: Iterable[T], console: Console, enabled: bool, description: str = "", total: int | None = None
) -> Iterator[T]:
    """Iterate with a rich progress bar on stderr when enabled, plainly otherwise."""
    if not enabled:
        yield from items
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as prog:
        tid = prog.add_task(description, total=total)
        for item in items:
            yield item
            prog.advance(tid)


def plain(value: Any) -> Any:
    """Make a value JSON- and YAML-friendly (numpy and torch scalars, paths, NaN)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "tolist"):
        return plain(value.tolist())
    return str(value)


def emit(obj: Mapping[str, Any], stream: Any = None) -> None:
    """Write one JSON object as a line on stdout (or `stream`) and flush it."""
    out = stream or sys.stdout
    out.write(json.dumps(plain(obj), ensure_ascii=False) + "\n")
    out.flush()


def metrics_table(metrics: Mapping[str, Any], title: str = "") -> Table:
    """A two-column table of metric name and value."""
    table = Table(title=title or None)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        table.add_row(key, text)
    return table
