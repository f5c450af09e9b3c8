"""segment: the original's photometric train augmentations (spec §2.5) and `--preset paper`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mlkit.cli import main
from mlkit.tasks.segment import augment as A


def _img(seed: int = 0, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_photometric_is_seeded_and_keeps_shape() -> None:
    img = _img()
    outs = [A.photometric(img.copy(), torch.Generator().manual_seed(5)) for _ in range(2)]
    assert outs[0].shape == img.shape and outs[0].dtype == np.uint8
    np.testing.assert_array_equal(outs[0], outs[1])
    changed = [not np.array_equal(A.photometric(img, torch.Generator().manual_seed(s)), img) for s in range(8)]
    assert sum(changed) >= 6  # each of four augmentations fires with p 0.5: all four skipped has p 1/16


def test_defocus_disc_and_constant_image() -> None:
    k = A.disc_kernel(2.0)
    assert k.shape == (5, 5) and abs(float(k.sum()) - 1.0) < 1e-6 and k[0, 0] == 0 and k[2, 2] > 0
    flat = np.full((16, 16, 3), 77, np.uint8)
    np.testing.assert_array_equal(A.defocus(flat, 3.0), flat)
    edge = np.zeros((16, 16, 3), np.uint8)
    edge[:, 8:] = 255
    out = A.defocus(edge, 2.0)
    assert 0 < int(out[8, 7, 0]) < 255 and int(out[8, 0, 0]) == 0  # blurred across the edge only


def test_brightness_contrast_and_noise_ranges() -> None:
    img = _img(1)
    brighter = A.brightness_contrast(img, 0.2, 0.0).astype(int)
    assert (brighter >= img.astype(int)).all() and brighter.mean() > img.mean() + 20
    noisy = A.gauss_noise(np.full((64, 64, 3), 128, np.uint8), torch.Generator().manual_seed(0)).astype(float)
    assert 3.0 < noisy.std() < 7.5  # sd in [sqrt(10), sqrt(50)]


def test_preset_paper_fills_unset_keys_only(capsys: pytest.CaptureFixture) -> None:
    assert main(["segment", "train", "--preset", "paper", "--encoder", "tiny", "--check"]) == 0
    cfg = json.loads(capsys.readouterr().out)["config"]
    assert cfg["encoder"] == "tiny"  # set by the user: kept
    assert (cfg["image_size"], cfg["lr"], cfg["batch_size"], cfg["epochs"], cfg["seed"]) == (256, 1e-5, 10, 100, 42)
    assert cfg["photometric"] is True and cfg["heat_scale"] == 1 and cfg["eval"]["crop"] == 256
