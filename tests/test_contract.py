"""The contract every registered task keeps (parametrised over the task table, the template toy task included):

tiny train -> weights_only checkpoint, config.yaml == the config the run used, results.png; SIGINT mid-training
exits 130 with an intact last.pt and --resume ends with the uninterrupted run's metrics (or, for a task that
declares itself not resumable, --resume exits 2 with one line); eval returns the spec's keys; predict gives one
row per record, valid against the documented schema; a bad --set exits 2.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import subprocess_env

from mlkit.cli import main
from mlkit.core.predict import check_row
from mlkit.core.registry import get_spec, task_module, task_table

TIMING = re.compile(r"(per_s|seconds|_s_per_|/time)")


def _set_args(tiny: dict) -> list[str]:
    return [a for k, v in tiny.items() for a in ("--set", f"{k}={json.dumps(v)}")]


def _close(a: dict, b: dict) -> list[str]:
    bad = []
    for k in sorted(set(a) | set(b)):
        if TIMING.search(k):
            continue
        x, y = a.get(k), b.get(k)
        if isinstance(x, (int, float)) and isinstance(y, (int, float)):
            if not (math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-6) or (math.isnan(x) and math.isnan(y))):
                bad.append(f"{k}: {x} != {y}")
        elif x != y:
            bad.append(f"{k}: {x!r} != {y!r}")
    return bad


def _last_line(err: str) -> str:
    return [line for line in err.splitlines() if line.strip()][-1]


@pytest.mark.parametrize("task", sorted(task_table()))
def test_task_contract(task, runs_dir, capsys, monkeypatch):
    from mlkit.core.runner import load_task

    module, spec, hooks = task_module(task), get_spec(task), load_task(task)
    common = ["--project", str(runs_dir), "--device", "cpu", "--quiet"]
    tiny = _set_args(module.TINY)

    # a bad --set is a usage error, and leaves no run dir behind
    assert main([task, "train", *common, "--set", "no_such_key=1"]) == 2
    assert "unknown config key" in _last_line(capsys.readouterr().err)
    assert not (runs_dir / task).exists() or not any((runs_dir / task).iterdir())

    rc = main([task, "train", *common, "--json", "--name", "full", *tiny])
    cap = capsys.readouterr()
    assert rc == 0, cap.err[-3000:]
    run_dir = Path(json.loads(cap.out)["run_dir"])
    full = json.loads(cap.out)["metrics"]
    ck = torch.load(run_dir / "weights" / "best.pt", weights_only=True, map_location="cpu")
    assert ck["task"] == task and ck["format"] == "mlkit-ckpt"
    saved = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    assert saved.pop("task") == task and saved == ck["config"], "config.yaml is not the config the run used"
    assert (run_dir / "metrics.json").is_file()
    # the embedded default lives where the config's comment says: $MLKIT_CACHE/<task>-<settings hash>
    from mlkit.core.artifact import cache_root
    from mlkit.core.config import default_text

    lines = default_text(task_table()[task]).splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("data:"))
    comment = [lines[at]] + [line for line in lines[at + 1 : at + 4] if line.lstrip().startswith("#")]
    assert "$MLKIT_CACHE" in "\n".join(comment), "config.yaml's data comment must say where the default lives"
    assert list(cache_root().glob(f"{task}-*")), f"no {task}-* artifact in {cache_root()}"
    if not hooks.one_shot:
        assert (run_dir / "results.png").stat().st_size > 1000
        # --max-steps stops cleanly: one optimizer step, then validation, checkpoints, test and metrics
        rc = main([task, "train", *common, "--json", "--name", "budget", "--max-steps", "1", *tiny])
        cap = capsys.readouterr()
        assert rc == 0, cap.err[-3000:]
        budget = Path(json.loads(cap.out)["run_dir"])
        assert (budget / "weights" / "best.pt").is_file() and (budget / "metrics.json").is_file()
        assert len((budget / "results.csv").read_text().splitlines()) == 2

    if hooks.resumable:
        monkeypatch.setenv("MLKIT_TEST_INTERRUPT_EPOCH", "0")
        rc = main([task, "train", *common, "--name", "cut", *tiny])
        monkeypatch.delenv("MLKIT_TEST_INTERRUPT_EPOCH")
        err = capsys.readouterr().err
        assert rc == 130, err[-3000:]
        assert "--resume" in err
        last = torch.load(runs_dir / task / "cut" / "weights" / "last.pt", weights_only=True, map_location="cpu")
        assert last["epoch"] == 0 and "train_state" in last
        rc = main([task, "train", "--project", str(runs_dir), "--quiet", "--json", "--resume", "--name", "cut"])
        cap = capsys.readouterr()
        assert rc == 0, cap.err[-3000:]
        resumed = json.loads(cap.out)["metrics"]
        assert not _close(full, resumed), _close(full, resumed)
    else:
        rc = main([task, "train", "--project", str(runs_dir), "--quiet", "--resume", "--name", "full"])
        err = capsys.readouterr().err
        assert rc == 2 and "cannot be resumed" in _last_line(err), err[-2000:]
        assert len(err.strip().splitlines()) == 1

    model = str(run_dir / "weights" / "best.pt")
    rc = main([task, "eval", *common, "--json", "--model", model])
    cap = capsys.readouterr()
    assert rc == 0, cap.err[-3000:]
    missing = set(spec.metrics) - set(json.loads(cap.out)["metrics"])
    assert not missing, f"eval lacks {missing}"

    records = list(hooks.sample_inputs(run_dir))
    assert records, "sample_inputs is empty"
    out = subprocess.run(
        [sys.executable, "-m", "mlkit", task, "predict", "--model", model, "--device", "cpu", "--quiet"],
        input=("\n".join(records) + "\n").encode(),
        capture_output=True,
        env=subprocess_env(),
        timeout=600,
    )
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    lines = out.stdout.decode().splitlines()
    if spec.rows != "text":
        assert len(lines) == len(records)
        for line in lines:
            check_row(json.loads(line), spec.rows)
