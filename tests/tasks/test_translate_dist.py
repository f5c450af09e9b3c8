"""translate under torchrun with 2 gloo processes: every group's gradients all-reduced by hand, disjoint batch slices
per rank; both ranks finish and rank 0 writes the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import torchrun

pytestmark = pytest.mark.dist


def test_torchrun_two_gloo_ranks(tmp_path: Path) -> None:
    tiny = ["--set", "epochs=2", "--set", "iters_per_epoch=3", "--set", "mnistm_lite.train=40", "--set",
            "mnistm_lite.test=12", "--set", "eval.inputs=4", "--set", "eval.samples=2", "--set", "eval.feat_epochs=1",
            "--set", "eval.cls_epochs=1", "--set", "eval.grid=2"]  # fmt: skip
    out = torchrun(tmp_path, "translate", "train", "--device", "cpu", "--quiet", "--json", "--project",
                   str(tmp_path / "runs"), *tiny)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    body = json.loads(out.stdout.strip().splitlines()[-1])
    assert body["metrics"]["val/iteration"] == 6 and body["metrics"]["test/diversity_l1"] >= 0
    assert (Path(body["run_dir"]) / "weights" / "best.pt").is_file()
