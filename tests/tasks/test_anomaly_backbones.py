"""anomaly: the paper's extractors with local weight files (random weights here; nothing is downloaded)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlkit.core.errors import DataError
from mlkit.tasks.anomaly.backbones import (
    PointMAEEncoder,
    build_pointmae,
    build_vit,
    pointmae_point_features,
    strip_prefixes,
)

CFG = {"points": {"groups": 32, "group_size": 16}}


def test_pointmae_checkpoint_prefixes_and_95_percent_rule(tmp_path):
    torch.manual_seed(0)
    src = PointMAEEncoder()
    good = tmp_path / "pointmae_pretrain.pth"
    torch.save({"base_model": {f"module.MAE_encoder.{k}": v for k, v in src.state_dict().items()}}, good)
    m = build_pointmae(str(good), "cpu")
    for k, v in src.state_dict().items():
        assert torch.equal(m.state_dict()[k], v), k
    partial = tmp_path / "partial.pth"
    sd = {k: v for i, (k, v) in enumerate(src.state_dict().items()) if i % 5}  # 80% of the keys
    torch.save({"base_model": sd}, partial)
    with pytest.raises(DataError, match="weights found"):
        build_pointmae(str(partial), "cpu")
    with pytest.raises(DataError, match="not found"):
        build_pointmae(str(tmp_path / "nope.pth"), "cpu")


def test_strip_prefixes():
    assert set(strip_prefixes({"module.MAE_encoder.norm.weight": 1, "base_model.blocks.x": 2})) == {
        "norm.weight",
        "blocks.x",
    }


def test_pointmae_features_shape_and_background_free():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(300, 3)).astype(np.float32) * 0.02 + np.array([0, 0, 0.5], np.float32)
    f = pointmae_point_features(build_pointmae(None, "cpu"), pts, CFG, "cpu")
    assert f.shape == (300, 1152) and np.isfinite(f).all()
    # each 384 block went through the shared final LayerNorm (zero mean per token at init)
    assert np.allclose(f.reshape(300, 3, 384).mean(-1), 0, atol=1e-4)


def test_vit_patch_grid_and_weights(tmp_path):
    timm = pytest.importorskip("timm")
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
    path = tmp_path / "vit.pth"
    torch.save({f"module.{k}": v for k, v in vit.state_dict().items()}, path)
    m = build_vit(f"vit_tiny_patch16_224@{path}", "cpu")
    out = m(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 14, 14, 192)
    ref = vit.forward_features(torch.randn(1, 3, 224, 224))
    x = torch.randn(1, 3, 224, 224)
    assert torch.allclose(m(x).reshape(1, 196, 192), vit.forward_features(x)[:, 1:], atol=1e-5)
    assert ref.shape[1] == 197
