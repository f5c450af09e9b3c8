"""The wheel carries every task's default config and the py.typed marker; the version has one source."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_wheel_contains_task_configs(tmp_path):
    pytest.importorskip("setuptools")
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next(tmp_path.glob("mlkit-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    from mlkit.core.registry import TASKS

    for task in TASKS:
        assert f"mlkit/tasks/{task}/config.yaml" in names, task
    assert "mlkit/py.typed" in names
    from mlkit import __version__

    assert wheel.name.startswith(f"mlkit-{__version__}-")
