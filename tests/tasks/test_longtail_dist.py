"""longtail under torchrun with 2 gloo processes (DDP): the MGP stage (`pretrain`) and BFT with inline MGP both train
to the end; one run dir, and the fine-tune reads the pretrain run through --init."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import torchrun

pytestmark = pytest.mark.dist


def test_torchrun_two_gloo_ranks_both_stages(tmp_path: Path) -> None:
    tiny = ["--device", "cpu", "--quiet", "--json", "--project", str(tmp_path / "runs"), "--epochs", "2",
            "--set", "mgp.epochs=1", "--batch-size", "16", "--set", "default.test_per_class=20"]  # fmt: skip
    out = torchrun(tmp_path, "longtail", "pretrain", *tiny)
    assert out.returncode == 0, out.stderr[-3000:]
    pre = json.loads(out.stdout.strip().splitlines()[-1])
    assert (Path(pre["run_dir"]) / "weights" / "best.pt").is_file()
    for init in ("mgp", pre["run_dir"]):
        out = torchrun(tmp_path, "longtail", "train", *tiny, "--init", init)
        assert out.returncode == 0, out.stderr[-3000:]
        body = json.loads(out.stdout.strip().splitlines()[-1])
        assert 0.0 <= body["metrics"]["test/balanced_acc"] <= 1.0
    assert sorted(p.name for p in (tmp_path / "runs" / "longtail").iterdir()) == [
        "pretrain",
        "train",
        "train2",
    ]
