"""attack §7 (slow): target C >= 96 % on the 1k test split; untargeted AdvGAN >= 90 % success with every
||x' - x||_inf <= 0.3; targeted (t = (y + 1) mod 10) >= 70 %; FGSM at eps 0.3 below AdvGAN.

Protocol: `mlkit attack target` (model C, 10 epochs, batch 128, Adam 1e-3) on the seeded 4,000 / 1,000 digits,
then two AdvGAN runs on that target file in parallel (one process per core): untargeted and targeted, paper
losses (logits, alpha = beta = 1, c = 3, eps = 0.3), 10 epochs each (the paper preset's 20 did not fit 10 min on
2 shared cores; 10 is past the point where success stops rising in both runs), then eval with FGSM.
Run: pytest -m slow tests/tasks/test_attack_slow.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import subprocess_env

pytestmark = pytest.mark.slow


def _cli(*args: str) -> list[str]:
    json_flag = [] if args[0] == "target" else ["--json"]  # the target verb always prints one JSON object
    return [sys.executable, "-m", "mlkit", "attack", *args, "--device", "cpu", "--quiet", *json_flag]


def test_section7_validation(tmp_path: Path) -> None:
    env = subprocess_env(OMP_NUM_THREADS="1")
    proj = str(tmp_path / "runs")
    tgt = tmp_path / "target_c.pt"
    out = subprocess.run(_cli("target", "--target-arch", "c", "--out", str(tgt), "--set", "target_epochs=10"),
                         capture_output=True, env=env, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    clean = json.loads(out.stdout)["metrics"]["test/clean_accuracy"]
    common = ["--target", str(tgt), "--project", proj, "--set", "epochs=10", "--preset", "paper"]
    procs = {name: subprocess.Popen(_cli("train", "--name", name, *common, *extra), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=env)
             for name, extra in (("untargeted", []), ("targeted", ["--targeted"]))}  # fmt: skip
    res = {}
    for name, p in procs.items():
        so, se = p.communicate(timeout=500)
        assert p.returncode == 0, se.decode()[-2000:]
        res[name] = json.loads(so)["metrics"]
    model = str(tmp_path / "runs" / "attack" / "untargeted" / "weights" / "best.pt")
    ev = subprocess.run(_cli("eval", "--model", model, "--methods", "fgsm", "--set", "eval.limit=0",
                             "--set", "eval.curve_eps=[0.1,0.2,0.3]"), capture_output=True, env=env, timeout=300)  # fmt: skip
    assert ev.returncode == 0, ev.stderr.decode()[-2000:]
    m = json.loads(ev.stdout)["metrics"]
    sys.stderr.write(json.dumps({"clean": clean, "untargeted": res["untargeted"]["test/success"],
                                 "targeted": res["targeted"]["test/success"], "eval": m}) + "\n")  # fmt: skip
    assert clean >= 0.96
    assert m["test/success"] >= 0.90 and m["test/linf_max"] <= 0.3 + 1e-6  # max over every image
    assert res["targeted"]["test/success"] >= 0.70
    assert m["test/fgsm/success"] < m["test/success"]
