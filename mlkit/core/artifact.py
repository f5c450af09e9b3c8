"""Cached artifacts (embedded default datasets, precompute caches): built aside, renamed atomically, verified.

    folder = cached("ner-synth", {"train": 400, "seed": 0}, lambda tmp: write_corpus(tmp, ...))

The folder is `<cache root>/<kind>-<hash of settings>`; `manifest.json` inside records the settings and the
size of every file. A reader that finds a folder whose manifest is missing, differs, or lists a file of another
size (a killed build, a disk that filled up, a hand edit) rebuilds it. Two processes building the same
artifact at once both succeed: each builds in its own temp folder and the first rename wins.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


def cache_root() -> Path:
    """$MLKIT_CACHE, else $XDG_CACHE_HOME/mlkit, else ~/.cache/mlkit."""
    root = os.environ.get("MLKIT_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "mlkit")
    return Path(root).expanduser()


def settings_key(settings: Mapping[str, Any]) -> str:
    """A short stable hash of the settings that make an artifact."""
    return hashlib.sha256(json.dumps(dict(settings), sort_keys=True, default=str).encode()).hexdigest()[:12]


def _files(folder: Path) -> dict[str, int]:
    return {
        str(p.relative_to(folder)): p.stat().st_size
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def verify(folder: Path, settings: Mapping[str, Any]) -> bool:
    """Whether folder holds a complete artifact made with these settings."""
    try:
        man = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    want = json.loads(json.dumps(dict(settings), default=str))
    return man.get("settings") == want and man.get("files") == _files(folder)


def cached(
    kind: str,
    settings: Mapping[str, Any],
    build: Callable[[Path], Any],
    root: Path | None = None,
    log: Callable[[str], Any] | None = None,
) -> Path:
    """The artifact folder for (kind, settings), built by `build(tmp_folder)` when missing or corrupt."""
    base = Path(root) if root is not None else cache_root()
    folder = base / f"{kind}-{settings_key(settings)}"
    if verify(folder, settings):
        return folder
    if folder.exists():
        if log:
            log(f"cache {folder} is incomplete or stale: rebuilding it")
        shutil.rmtree(folder, ignore_errors=True)
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".{folder.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        build(tmp)
        body = {"kind": kind, "settings": json.loads(json.dumps(dict(settings), default=str)), "files": _files(tmp)}
        (tmp / MANIFEST).write_text(json.dumps(body, indent=1, sort_keys=True), encoding="utf-8")
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished the same artifact first
            if not verify(folder, settings):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
