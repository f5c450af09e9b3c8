"""Single-file checkpoints: one weights_only-safe dict, written atomically."""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlkit import __version__
from mlkit.core.console import plain
from mlkit.core.errors import DataError

FORMAT = "mlkit-ckpt"
FORMAT_VERSION = 1


def config_hash(cfg: Mapping[str, Any], ignore: tuple[str, ...] = ("epochs", "device", "data")) -> str:
    """A checksum of the config keys that shape a run (resume refuses a mismatch)."""
    body = {k: v for k, v in plain(cfg).items() if k not in ignore}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def make(
    task: str,
    cfg: Mapping[str, Any],
    state_dict: Mapping[str, Any],
    *,
    epoch: int = 0,
    metrics: Mapping[str, Any] | None = None,
    best_metric: float | None = None,
    extra: Mapping[str, Any] | None = None,
    train_state: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the checkpoint dict (tensors, builtins and nested dicts/lists only)."""
    import torch

    ckpt: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mlkit_version": __version__,
        "torch_version": str(torch.__version__),
        "task": task,
        "model": str(cfg.get("arch", "")),
        "config": plain(cfg),
        "config_hash": config_hash(cfg),
        "state_dict": {k: v.detach().cpu() if hasattr(v, "detach") else v for k, v in state_dict.items()},
        "metrics": plain(metrics or {}),
        "best_metric": None if best_metric is None else float(best_metric),
        "epoch": int(epoch),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "extra": dict(extra or {}),
    }
    if train_state is not None:
        ckpt["train_state"] = dict(train_state)
    return ckpt


def save(ckpt: Mapping[str, Any], path: str | Path) -> None:
    """Write a checkpoint atomically: serialize to a temp file in the same folder, then os.replace."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(dict(ckpt), buf)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk or Ctrl-C mid-write: the old file stays, no partial temp file is left
        tmp.unlink(missing_ok=True)
        raise


def load(path: str | Path, task: str | None = None) -> dict[str, Any]:
    """Load a checkpoint with weights_only=True and check its format and task (exit 3 on mismatch)."""
    import torch

    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"checkpoint not found: {path}") from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is bad input
        raise DataError(
            f"cannot read checkpoint: {type(exc).__name__}", str(path), "Pass a .pt file written by mlkit."
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise DataError("not an mlkit checkpoint", str(path), "Pass a .pt file written by mlkit.")
    if int(ckpt.get("format_version", 0)) > FORMAT_VERSION:
        raise DataError(
            f"checkpoint format {ckpt.get('format_version')} is newer than this mlkit reads ({FORMAT_VERSION})",
            str(path),
            "Upgrade mlkit.",
        )
    if task is not None and ckpt.get("task") != task:
        raise DataError(
            f"checkpoint is for task '{ckpt.get('task')}', not '{task}'",
            str(path),
            f"Use `mlkit {ckpt.get('task')} ...` or pass a {task} checkpoint.",
        )
    return ckpt
