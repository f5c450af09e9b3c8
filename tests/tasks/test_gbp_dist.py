"""torchrun with 2 gloo processes: each rank precomputes its column shard and rank 0 assembles; DDP training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlkit.graph.synth import planted_partition

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.dist


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO / "tests"), str(REPO), env.get("PYTHONPATH", "")]),
        MLKIT_CACHE=str(tmp / "cache"),
        OMP_NUM_THREADS="1",
        NUMBA_NUM_THREADS="1",
    )
    return env


def _torchrun(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "mlkit",
        *args,
    ]
    return subprocess.run(cmd, cwd=tmp, env=_env(tmp), capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("estimator", ["push", "bidirectional"])
def test_torchrun_precompute_equals_single_process(tmp_path, estimator):
    data = planted_partition(tmp_path / "g", 2000, classes=3, features=6, degree=4, seed=1)
    args = [
        "gbp",
        "precompute",
        "--data",
        str(data),
        "--estimator",
        estimator,
        "--rmax",
        "1e-4",
        "--walks",
        "40",
        "--levels",
        "4",
        "--quiet",
    ]
    dist = _torchrun([*args, "--out", str(tmp_path / "d")], tmp_path)
    assert dist.returncode == 0, dist.stderr[-3000:]
    lines = [json.loads(x) for x in dist.stdout.splitlines() if x.startswith("{")]
    assert len(lines) == 1  # rank 0 reports the assembled result
    single = subprocess.run(
        [sys.executable, "-m", "mlkit", *args, "--out", str(tmp_path / "s")],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    one = json.loads(single.stdout.strip().splitlines()[-1])
    np.testing.assert_array_equal(np.load(lines[0]["rows"]), np.load(one["rows"]))
    assert len(list((tmp_path / "d").glob("*.s1of2.npy"))) == 1


def test_torchrun_ddp_training(tmp_path):
    res = _torchrun(
        [
            "gbp",
            "train",
            "--project",
            str(tmp_path / "runs"),
            "--device",
            "cpu",
            "--epochs",
            "2",
            "--set",
            "synth.nodes=500",
            "--set",
            "model.hidden=8",
            "--quiet",
            "--json",
        ],
        tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    runs = list((tmp_path / "runs" / "gbp").glob("*/weights/best.pt"))
    assert len(runs) == 1
    out = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    assert len(out) == 1 and "test/f1" in out[0]["metrics"]
