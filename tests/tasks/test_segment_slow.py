"""segment §7 validation (slow, < 10 min on 2 cores): 5 % of the shapes images masked, TW vs std-UNet.

mIoU(TW) - mIoU(std-UNet) >= 5 points, mean of seeds 0 and 1; same tiny encoder, same pretraining, same number
of iterations (26 epochs x 38 steps ~ 1000), AdamW lr 1e-3, B = 16.
    python -m pytest -m slow tests/tasks/test_segment_slow.py -s
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlkit.cli import main

COMMON = ["--device", "cpu", "--quiet", "--json", "--budget", "5%", "--set", "epochs=26", "--set", "viz=0",
          "--set", "lr=0.001", "--set", "batch_size=16"]  # fmt: skip


def _miou(arch: str, seed: int, runs: Path, capsys: pytest.CaptureFixture) -> float:
    rc = main(["segment", "train", "--project", str(runs), "--arch", arch, "--set", f"seed={seed}", *COMMON])
    cap = capsys.readouterr()
    assert rc == 0, cap.err[-2000:]
    return float(json.loads(cap.out)["metrics"]["test/miou"])


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="known gap (issue 12 open): no classifier with global average pooling learns "
                   "shape classes from 600 shapes images (tiny encoder val label accuracy 0.53-0.55 at chance 0.53; one "
                   "shape on a flat background: tiny 0.35, ResNet-like 0.35 after memorising the train set, VGG-like "
                   "0.33 with average and 0.69 with max pooling), so TW heatmaps carry little class signal: TW "
                   "0.18-0.23 vs std-UNet 0.30-0.32 test mIoU (lr 1e-2: TW 0.232); from an encoder pretrained on 10k "
                   "extra image-labelled images std-UNet reaches 0.575 and TW 0.055-0.075, so TW's training is open "
                   "too; strict: fails loudly once it learns")
def test_tw_beats_std_unet_with_5_percent_masks(runs_dir: Path, capsys: pytest.CaptureFixture) -> None:
    res = {arch: [_miou(arch, s, runs_dir, capsys) for s in (0, 1)] for arch in ("tw", "std-unet")}
    mean = {a: sum(v) / len(v) for a, v in res.items()}
    with capsys.disabled():
        print(f"\n§7 5% masks, test mIoU per seed: {res}; means {mean}")
    assert 100 * (mean["tw"] - mean["std-unet"]) >= 5.0, res
