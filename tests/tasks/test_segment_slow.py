"""segment §7 validation (slow, each test < 10 min on 2 cores): TW vs std-UNet on the shapes set.

1. The spec's §7 as written: 5 % of the images masked, mIoU(TW) - mIoU(std-UNet) >= 5 points, mean of seeds 0 and
   1; same tiny encoder, same pretraining, same number of iterations (26 epochs x 38 steps ~ 1000), AdamW lr 1e-3,
   B = 16. A strict xfail: it does not hold (README, issue 12).
2. The same run from the toy's stand-in for ImageNet weights (`mlkit segment pretrain`) with 6 masks (1 %) and the
   LRP-alpha-beta rule: TW within 3 points of std-UNet or better, and far above what LRP-eps heatmaps reach.
    python -m pytest -m slow tests/tasks/test_segment_slow.py -s
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlkit.cli import main

COMMON = ["--device", "cpu", "--quiet", "--json", "--set", "epochs=26", "--set", "viz=0",
          "--set", "lr=0.001", "--set", "batch_size=16"]  # fmt: skip


def _miou(arch: str, seed: int, runs: Path, capsys: pytest.CaptureFixture, *extra: str) -> float:
    rc = main(["segment", "train", "--project", str(runs), "--arch", arch, "--set", f"seed={seed}", *COMMON, *extra])
    cap = capsys.readouterr()
    assert rc == 0, cap.err[-2000:]
    return float(json.loads(cap.out)["metrics"]["test/miou"])


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="known gap (issue 12 open), 2026-12-06, seed 0: TW 0.178 (LRP-eps) / 0.244 "
                   "(alpha-beta) vs std-UNet 0.303. The premise fails: no small encoder learns the shape classes from "
                   "600 image labels (tiny encoder val label accuracy 0.52-0.59 at chance 0.53, with or without colour "
                   "and noise augmentation), so the heatmaps carry no class signal; from the stand-in encoder (label "
                   "accuracy 0.87) TW alpha-beta comes within a few points of std-UNet (README, second test here); "
                   "strict: fails loudly once it holds")
def test_tw_beats_std_unet_with_5_percent_masks(runs_dir: Path, capsys: pytest.CaptureFixture) -> None:
    res = {arch: [_miou(arch, s, runs_dir, capsys, "--budget", "5%") for s in (0, 1)] for arch in ("tw", "std-unet")}
    mean = {a: sum(v) / len(v) for a, v in res.items()}
    with capsys.disabled():
        print(f"\n§7 5% masks, test mIoU per seed: {res}; means {mean}")
    assert 100 * (mean["tw"] - mean["std-unet"]) >= 5.0, res


@pytest.mark.slow
def test_tw_alpha_beta_from_stand_in_weights_with_6_masks(runs_dir: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    weights = tmp_path / "stand_in.pt"
    assert main(["segment", "pretrain", "--out", str(weights)]) == 0  # 20,000 images x 12 epochs, ~3.5 min
    acc = json.loads(capsys.readouterr().out)["metrics"]["val/label_acc"]
    extra = ("--encoder-weights", str(weights), "--budget", "6")
    tw = [_miou("tw", s, runs_dir, capsys, *extra, "--lrp-rule", "alpha-beta") for s in (0, 1)]
    std = [_miou("std-unet", s, runs_dir, capsys, *extra) for s in (0, 1)]
    with capsys.disabled():
        print(f"\nstand-in encoder (val label acc {acc:.3f}), 6 masks, test mIoU: TW alpha-beta {tw}, std-UNet {std}")
    assert acc >= 0.8
    assert sum(tw) / 2 >= sum(std) / 2 - 0.03, (tw, std)
    assert min(tw) >= 0.3, tw  # LRP-eps heatmaps reach 0.06 here (README)
