"""Shared fixtures: the test-only toy task, a tmp runs root, a tmp datasets root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()

# test helpers (conftest's subprocess_env, the toy task, kernels/gbp_graphs) import by plain name; test modules
# themselves are imported with --import-mode=importlib, so two test files may share a basename
for _p in (TESTS, TESTS / "kernels"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))
_extra = os.environ.get("MLKIT_EXTRA_TASKS", "")
if "toy=" not in _extra:
    os.environ["MLKIT_EXTRA_TASKS"] = ",".join(x for x in (_extra, "toy=toytask") if x)
os.environ.setdefault("OMP_NUM_THREADS", "1")
if "MLKIT_CACHE" not in os.environ:  # embedded defaults and caches of this test session, not the user's
    import tempfile

    os.environ["MLKIT_CACHE"] = tempfile.mkdtemp(prefix="mlkit-test-cache-")


def torchrun(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """`torchrun --standalone --nproc-per-node 2 -m mlkit ARGS` in tmp_path: gloo ranks on CPU, one thread each, the
    run's own $MLKIT_CACHE."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "mlkit", *args]
    env = subprocess_env(MLKIT_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1", **extra)
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for running `python -m mlkit` in a subprocess with the toy task visible."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    """A fresh runs root; pass it as --project."""
    d = tmp_path / "runs"
    d.mkdir()
    return d


@pytest.fixture(autouse=True)
def _datasets_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "datasets"
    root.mkdir()
    monkeypatch.setenv("MLKIT_DATASETS", str(root))
    return root


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or skip when it is absent (a user's machine does not have it)."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        cuda = torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        cuda = False
    if not cuda:
        skip = pytest.mark.skip(reason="needs CUDA")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
