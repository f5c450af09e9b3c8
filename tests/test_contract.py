"""The contract every registered task keeps: tiny train, a weights_only checkpoint, eval keys, N in -> N out."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import subprocess_env

from mlkit.cli import main
from mlkit.core.registry import get_spec, task_module, task_table


def _set_args(tiny: dict) -> list[str]:
    args: list[str] = []

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}{k}.", v)
        else:
            args.extend(["--set", f"{prefix[:-1]}={json.dumps(value)}"])

    walk("", tiny)
    return args


def _inputs(module, run_dir: Path) -> list[str]:
    sample = module.SAMPLE_INPUTS
    if isinstance(sample, str):
        mod, fn = sample.split(":")
        return list(getattr(importlib.import_module(mod), fn)(run_dir))
    return list(sample)


@pytest.mark.parametrize("task", sorted(task_table()))
def test_task_contract(task, runs_dir, capsys):
    module = task_module(task)
    spec = get_spec(task)
    tiny = module.TINY
    rc = main([task, "train", "--project", str(runs_dir), "--device", "cpu", "--quiet", "--json", *_set_args(tiny)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err[-3000:]
    run_dir = Path(json.loads(cap.out)["run_dir"])
    ck = torch.load(run_dir / "weights" / "best.pt", weights_only=True, map_location="cpu")
    assert ck["task"] == task and ck["format"] == "mlkit-ckpt"
    assert (run_dir / "config.yaml").is_file() and (run_dir / "metrics.json").is_file()

    rc = main([task, "eval", "--project", str(runs_dir), "--device", "cpu", "--quiet", "--json"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err[-3000:]
    metrics = json.loads(cap.out)["metrics"]
    missing = set(spec.metrics) - set(metrics)
    assert not missing, f"eval lacks {missing}"

    records = _inputs(module, run_dir)
    assert records, "SAMPLE_INPUTS is empty"
    out = subprocess.run(
        [sys.executable, "-m", "mlkit", task, "predict", "--project", str(runs_dir), "--device", "cpu", "--quiet"],
        input=("\n".join(records) + "\n").encode(),
        capture_output=True,
        env=subprocess_env(),
        timeout=600,
    )
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    lines = out.stdout.decode().splitlines()
    assert len(lines) == len(records)
    for line in lines:
        json.loads(line)
