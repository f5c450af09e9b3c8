"""Spec §7 CPU validation (slow): synthetic blob, preprocess, five modality modes, asserted outcomes.

rgb-only must see stains but not dents, pt-only the reverse; double and triple must reach I-AUROC >= 0.90, at least
0.05 above the better single modality, with AUPRO >= 0.80. Run: python -m pytest -m slow tests/tasks/test_anomaly_validation.py

Two deliberate departures from the letter of §7, both measured (see the task report):
- 24 test/good, 24 dent and 24 stain images instead of 8 each. The "≈ 0.5 ± 0.15" checks are null hypotheses; with
  8 vs 8 images the null AUROC has a standard deviation of 0.15, so the check would be a coin flip (seed 0 gave 0.31).
  At 24 vs 24 it is 0.084.
- `--fusion-fit validation`: with the reference pass-C fit (train images scored against banks that contain them) the
  rgb score spread is ~8x too small (0.015 vs 0.12 on validation/good), `--score-norm train` then over-weights rgb and
  double mode reaches only I-AUROC 0.81 (dent 0.53). Fitting scales and OCSVMs on validation/good fixes it (0.99).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mlkit.cli import main

MODES = ("rgb", "pt", "fusion", "double", "triple")


@pytest.mark.slow
def test_spec7_synthetic_validation(tmp_path, capsys):
    t0, c0 = time.perf_counter(), time.process_time()
    assert main(["anomaly", "synth", "--out", str(tmp_path / "raw"), "--categories", "blob", "--test-good", "24",
                 "--test-defect", "24"]) == 0  # fmt: skip
    assert (
        main(
            [
                "anomaly",
                "preprocess",
                "--data",
                str(tmp_path / "raw"),
                "--out",
                str(tmp_path / "prep"),
                "--quiet",
            ]
        )
        == 0
    )
    capsys.readouterr()
    results = {}
    for mode in MODES:
        rc = main(["anomaly", "train", "--data", str(tmp_path / "prep"), "--modalities", mode, "--coreset-mode", "uniform",
                   "--score-norm", "train", "--fusion-fit", "validation", "--uff-steps", "200", "--batch-size", "4", "--set", "uff.pairs_per_step=2048",
                   "--set", f"cache_dir={tmp_path / 'cache'}", "--project", str(tmp_path / "runs"), "--name", mode,
                   "--device", "cpu", "--quiet", "--json"])  # fmt: skip
        cap = capsys.readouterr()
        assert rc == 0, cap.err[-3000:]
        run = Path(json.loads(cap.out)["run_dir"])
        res = json.loads((run / "results.json").read_text())["categories"]["blob"]
        res["extract_cpu_s"] = json.loads((run / "metrics.json").read_text())[
            "train/extract_cpu_s_per_sample"
        ]
        results[mode] = res
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    summary = {
        m: {k: results[m][k] for k in ("i_auroc", "p_auroc", "aupro", "i_auroc_by_defect")} for m in MODES
    }
    print(json.dumps({"seconds": total, "cpu_seconds": cpu, "results": summary}, indent=1))
    rgb, pt = results["rgb"]["i_auroc_by_defect"], results["pt"]["i_auroc_by_defect"]
    assert rgb["stain"] >= 0.95 and abs(rgb["dent"] - 0.5) <= 0.15, rgb
    assert pt["dent"] >= 0.95 and abs(pt["stain"] - 0.5) <= 0.15, pt
    best_single = max(results["rgb"]["i_auroc"], results["pt"]["i_auroc"])
    for mode in ("double", "triple"):
        r = results[mode]
        assert r["i_auroc"] >= 0.90 and r["i_auroc"] >= best_single + 0.05, (mode, r["i_auroc"], best_single)
        assert r["aupro"] >= 0.80, (mode, r["aupro"])
    # the first run extracts (later runs reuse the shared cache); CPU time, since wall time on the shared 2-core
    # machine depends on the other users' load
    assert results["rgb"]["extract_cpu_s"] < 1.0
    assert cpu < 600, cpu  # spec §7: under 10 min on 2 cores (CPU time: the machine is shared)


@pytest.mark.slow
def test_paper_preset_triple_is_at_least_as_good_as_the_default(tmp_path, capsys):
    """Issue 20: the §7 data, triple mode, the default against `--preset paper` (uncapped reference coreset on the JL
    projection, reference OCSVM tolerance, background fused rows kept) with the two settings a CPU and the stand-in
    extractors need: the UFF at 200 steps x 2,048 pairs (750 x every foreground patch is GPU work) and
    `--score-norm train` (the λ weights are tuned for DINO + Point-MAE scores; the preset warns).

    Measured 2026-12-06 (seed 0, 24/24/24 test images): default I-AUROC 0.999, P-AUROC 0.949, AUPRO 0.887; paper
    preset 1.000, 0.996, 0.975 (with memory.fs_background=drop: 0.999, 0.996, 0.973). The literal preset with λ
    fusion on handcrafted features: 0.763, 0.991, 0.907 (0.761, 0.963, 0.805 with drop), which the warning is for.
    """
    assert main(["anomaly", "synth", "--out", str(tmp_path / "raw"), "--categories", "blob", "--test-good", "24",
                 "--test-defect", "24"]) == 0  # fmt: skip
    assert main(["anomaly", "preprocess", "--data", str(tmp_path / "raw"), "--out", str(tmp_path / "prep"),
                 "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    common = ["--data", str(tmp_path / "prep"), "--modalities", "triple", "--uff-steps", "200", "--batch-size", "4",
              "--set", "uff.pairs_per_step=2048", "--score-norm", "train", "--set", f"cache_dir={tmp_path / 'cache'}",
              "--project", str(tmp_path / "runs"), "--device", "cpu", "--quiet", "--json"]  # fmt: skip
    res = {}
    for name, extra in (("default", ["--coreset-mode", "uniform", "--fusion-fit", "validation"]),
                        ("paper", ["--preset", "paper"])):  # fmt: skip
        rc = main(["anomaly", "train", *common, "--name", name, *extra])
        cap = capsys.readouterr()
        assert rc == 0, cap.err[-3000:]
        res[name] = json.loads(cap.out)["metrics"]
    with capsys.disabled():
        print({n: {k: round(v, 4) for k, v in m.items() if k in ("test/i_auroc", "test/p_auroc", "test/aupro")}
               for n, m in res.items()})  # fmt: skip
    for key in ("test/i_auroc", "test/p_auroc", "test/aupro"):
        assert res["paper"][key] >= res["default"][key] - 0.005, (key, res)


@pytest.mark.slow
def test_paper_extractor_code_path(tmp_path, capsys):
    """timm ViT + Point-MAE (random weights: shapes and plumbing only) through train, eval and checkpoint."""
    args = ["--rgb-backbone", "timm:vit_tiny_patch16_224", "--point-backbone", "pointmae", "--set", "points.groups=64",
            "--set", "points.group_size=16", "--set", "synth.size=96", "--set", "synth.train=3", "--set",
            "synth.test_combined=0", "--set", "uff.steps=2", "--set", "memory.coreset_max=300"]  # fmt: skip
    rc = main(["anomaly", "train", "--project", str(tmp_path), "--device", "cpu", "--quiet", "--json", *args])
    cap = capsys.readouterr()
    assert rc == 0, cap.err[-3000:]
    import torch

    run = Path(json.loads(cap.out)["run_dir"])
    ck = torch.load(run / "weights/best.pt", weights_only=True)
    assert ck["extra"]["dims"] == [192, 1152]
    assert ck["state_dict"]["cat.blob.bank.fs"].shape[1] == 192 + 1152
