"""The CUDA path of the CLI: device selection, training on the GPU, CPU tensors in checkpoints (opt-in: -m gpu)."""

from __future__ import annotations

import json

import pytest
import torch

from mlkit.cli import main
from mlkit.core.runtime import select_device

pytestmark = pytest.mark.gpu


def test_select_device_on_cuda():
    assert select_device("auto") == "cuda:0"
    assert select_device("cuda") == "cuda:0"
    assert select_device("cuda:0") == "cuda:0"


def test_train_on_cuda_saves_cpu_tensors_and_evaluates(runs_dir, capsys):
    assert main(["toy", "train", "--device", "cuda", "--project", str(runs_dir), "--quiet", "--json"]) == 0
    run = json.loads(capsys.readouterr().out)["run_dir"]
    ck = torch.load(f"{run}/weights/best.pt", weights_only=True)
    assert all(v.device.type == "cpu" for v in ck["state_dict"].values())
    assert main(["toy", "eval", "--device", "cuda", "--project", str(runs_dir), "--quiet", "--json"]) == 0
    assert "test/accuracy" in json.loads(capsys.readouterr().out)["metrics"]
