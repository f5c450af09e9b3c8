"""longtail under torchrun with 2 gloo processes (DDP): the MGP stage (`pretrain`) and BFT with inline MGP both train
to the end; one run dir, and the fine-tune reads the pretrain run through --init."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.dist


def test_torchrun_two_gloo_ranks_both_stages(tmp_path: Path) -> None:
    env = dict(os.environ)
    extra = env.get("MLKIT_EXTRA_TASKS", "")
    env.update(PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]), MLKIT_CACHE=str(tmp_path / "cache"),
               OMP_NUM_THREADS="1", MLKIT_EXTRA_TASKS=",".join(x for x in (extra, "longtail=mlkit.tasks.longtail") if x))  # fmt: skip
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "mlkit",
              "longtail"]  # fmt: skip
    tiny = ["--device", "cpu", "--quiet", "--json", "--project", str(tmp_path / "runs"), "--epochs", "2",
            "--set", "mgp.epochs=1", "--batch-size", "16", "--set", "default.test_per_class=20"]  # fmt: skip
    out = subprocess.run(
        [*launch, "pretrain", *tiny], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    pre = json.loads(out.stdout.strip().splitlines()[-1])
    assert (Path(pre["run_dir"]) / "weights" / "best.pt").is_file()
    for init in ("mgp", pre["run_dir"]):
        out = subprocess.run([*launch, "train", *tiny, "--init", init], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=600)  # fmt: skip
        assert out.returncode == 0, out.stderr[-3000:]
        body = json.loads(out.stdout.strip().splitlines()[-1])
        assert 0.0 <= body["metrics"]["test/balanced_acc"] <= 1.0
    assert sorted(p.name for p in (tmp_path / "runs" / "longtail").iterdir()) == [
        "pretrain",
        "train",
        "train2",
    ]
