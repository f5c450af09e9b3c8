"""Run directories: runs/<task>/<name>/ with config.yaml, weights/, results.csv and metrics.json."""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlkit.core.config import dump
from mlkit.core.console import plain
from mlkit.core.errors import UsageError


def check_name(name: str) -> str:
    """A run name is one folder name: no path separators, not '.', '..' or hidden."""
    if not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith(".") or os.sep in name:
        raise UsageError(f"bad run name '{name}'", "--name", "Use a plain folder name such as exp1 (no '/', no '..').")
    return name


def increment_dir(project: Path, task: str, name: str, exist_ok: bool) -> Path:
    """Pick runs/<task>/<name>, or name2, name3, ... unless exist_ok."""
    root = Path(project) / task
    path = root / check_name(name)
    if exist_ok or not path.exists():
        return path
    stem = re.sub(r"\d+$", "", name) or name
    n = 2
    while (root / f"{stem}{n}").exists():
        n += 1
    return root / f"{stem}{n}"


def create_run_dir(project: Path, task: str, name: str, exist_ok: bool) -> Path:
    """Create the run directory and its weights/ folder; two processes starting at once never share one.

    With exist_ok the folder is reused, but the old run's results.csv, metrics.json and results.png are removed
    so that the new run's files do not mix with them.
    """
    root = Path(project) / task
    root.mkdir(parents=True, exist_ok=True)  # an OSError here is one line naming the path (cli.main)
    if exist_ok:
        path = root / check_name(name)
        (path / "weights").mkdir(parents=True, exist_ok=True)
        for stale in ("results.csv", "metrics.json", "results.png"):
            (path / stale).unlink(missing_ok=True)
        return path
    for _ in range(1000):
        path = increment_dir(project, task, name, False)
        try:
            path.mkdir()  # atomic: exactly one process creates a given name
        except FileExistsError:
            continue
        (path / "weights").mkdir()
        return path
    raise UsageError(f"no free run name for '{name}' in {root}", "--name", "Pick another --name.")


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file through a temp file and os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_config(run_dir: Path, cfg: Mapping[str, Any], task: str) -> None:
    """Save the resolved config as <run>/config.yaml, with its task."""
    write_text_atomic(run_dir / "config.yaml", dump({"task": task, **plain(cfg)}))


def write_metrics(run_dir: Path, metrics: Mapping[str, Any]) -> None:
    """Save final metrics as <run>/metrics.json."""
    write_text_atomic(run_dir / "metrics.json", json.dumps(plain(metrics), indent=2, ensure_ascii=False) + "\n")


class ResultsCSV:
    """results.csv, one row per epoch; the header grows when new keys appear (the file is rewritten)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        if path.exists():
            with path.open(newline="", encoding="utf-8") as f:
                self.rows = [dict(r) for r in csv.DictReader(f)]

    def truncate(self, epochs: int) -> None:
        """Keep rows of the first `epochs` epochs only (on resume; the epoch column counts from 1)."""
        self.rows = [r for r in self.rows if int(float(r.get("epoch", 0))) <= epochs]
        self._write()

    def add(self, epoch: int, metrics: Mapping[str, Any]) -> None:
        """Append one epoch's metrics and rewrite the file."""
        self.rows.append({"epoch": epoch, **plain(metrics)})
        self._write()

    def _write(self) -> None:
        keys: list[str] = ["epoch"]
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with tmp.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            for r in self.rows:
                w.writerow({k: r.get(k, "") for k in keys})
        os.replace(tmp, self.path)


def newest_best(project: Path, task: str) -> Path | None:
    """The newest runs/<task>/*/weights/best.pt, by modification time."""
    root = Path(project) / task
    found = sorted(root.glob("*/weights/best.pt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def resolve_model(model: str | None, project: Path, task: str, ctx_log: Any = None) -> Path:
    """The checkpoint a user named, or the newest best.pt of the task; exit 2 when there is none."""
    if model:
        p = Path(model).expanduser()
        if p.is_dir():
            for cand in (p / "weights" / "best.pt", p / "best.pt"):
                if cand.is_file():
                    return cand
        if not p.is_file():
            raise UsageError(
                f"checkpoint not found: {p}", None, f"Pass a .pt file from `mlkit {task} train` to --model."
            )
        return p
    found = newest_best(project, task)
    if found is None:
        raise UsageError(
            f"no trained {task} model in {Path(project) / task}",
            None,
            f"Train one with `mlkit {task} train`, or pass --model PATH.",
        )
    if ctx_log:
        ctx_log(f"using newest model {found}")
    return found
