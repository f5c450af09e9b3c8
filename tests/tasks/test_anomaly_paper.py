"""anomaly `--preset paper` (issue 20): the printed protocol against spec §2.6-2.9, the switch to the paper's fusion
and banks when the paper's extractors are named, warnings for stand-ins, the memory-bounded uncapped coreset."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from mlkit.cli import main
from mlkit.core.config import get_dotted, load_defaults
from mlkit.kernels.coreset import coreset_torch, jl_dim, projection_matrix
from mlkit.tasks.anomaly.memory import coreset_plan, coreset_sizes, subsample_bank
from mlkit.tasks.anomaly.task import TASK, stand_in_warnings

# spec anomaly.md §2.6 (UFF), §2.7 (banks), §2.9 (DLF)
PAPER = {
    "max_train": 400,
    "batch_size": 16,
    "lr": 0.003,
    "uff.steps": 750,
    "uff.warmup_steps": 250,
    "uff.pairs_per_step": 0,
    "uff.weight_decay": 1.5e-6,
    "uff.temperature": 1.0,
    "uff.hidden_ratio": 4,
    "memory.norm": "reference",
    "memory.coreset_mode": "reference",
    "memory.coreset_ratio": 0.1,
    "memory.coreset_max": 0,
    "memory.presample": 0,
    "memory.projection_dim": 0,
    "memory.reweight": True,
    "memory.blur_sigma": 4.0,
    "memory.fs_background": "reference",
    "fusion.score_norm": "lambda",
    "fusion.lambdas": [1.0, 0.1, 1.0],
    "fusion.fit": "train",
    "fusion.nu": 0.5,
    "fusion.max_iter": 1000,
    "fusion.svm_seed": 42,
    "fusion.tol": 1e-3,
    "modalities": "triple",
    "image_size": 224,
}


def test_config_preset_paper_prints_the_spec_protocol(capsys):
    assert main(["anomaly", "config", "--preset", "paper"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    for key, want in PAPER.items():
        assert get_dotted(cfg, key) == want, key


def _final(explicit: dict, mode: str = "train") -> dict:
    cfg = load_defaults("mlkit.tasks.anomaly")
    for key, value in explicit.items():
        head, *tail = key.split(".")
        if tail:
            cfg[head][tail[0]] = value
        else:
            cfg[head] = value
    return TASK.finalize(cfg, frozenset(explicit), mode)


def test_paper_preset_wins_over_the_embedded_lighter_settings_but_not_over_the_user():
    cfg = _final({"preset": "paper"})
    assert cfg["uff"]["steps"] == 750 and cfg["uff"]["pairs_per_step"] == 0
    assert cfg["memory"]["coreset_max"] == 0
    cfg = _final({"preset": "paper", "uff.steps": 5, "fusion.score_norm": "train"})
    assert cfg["uff"]["steps"] == 5 and cfg["fusion"]["score_norm"] == "train"
    assert cfg["memory"]["coreset_mode"] == "reference"


def test_paper_extractors_switch_fusion_and_banks_unless_set():
    pair = {"rgb_backbone": "timm:vit_base_patch8_224@dino.pth", "point_backbone": "pointmae@pm.pth"}
    cfg = _final(pair)
    assert cfg["fusion"]["score_norm"] == "lambda"
    assert cfg["memory"]["coreset_mode"] == "reference" and cfg["memory"]["coreset_max"] == 0
    assert cfg["uff"]["steps"] != 750  # only fusion and banks switch; the UFF recipe needs --preset paper
    cfg = _final({**pair, "fusion.score_norm": "train", "memory.coreset_max": 500})
    assert cfg["fusion"]["score_norm"] == "train" and cfg["memory"]["coreset_max"] == 500
    assert stand_in_warnings(cfg) == []
    default = _final({})
    assert default["fusion"]["score_norm"] == "train" and stand_in_warnings(default) == []


def test_stand_ins_with_paper_settings_warn():
    lam = _final({"fusion.score_norm": "lambda"})
    assert any("lambda fusion" in w for w in stand_in_warnings(lam))
    paper = _final({"preset": "paper"})
    assert any("stand-in extractors" in w for w in stand_in_warnings(paper))
    bare = _final({"rgb_backbone": "timm:vit_small_patch8_224", "point_backbone": "pointmae"})
    assert sum("no weights file" in w for w in stand_in_warnings(bare)) == 2


def test_uncapped_reference_sizes():
    cfg = _final({"preset": "paper"})
    n_img = 244  # bagel (spec §2.7): 765,184 pt patches -> 76,518 pt rows, 7,651 rgb/fs
    raw = {"pt": 3136 * n_img, "rgb": 784 * n_img, "fs": 3136 * n_img}
    assert coreset_sizes(raw, 3136 * n_img, cfg) == {"pt": 76518, "rgb": 7651, "fs": 7651}
    pool, width, peak = coreset_plan(raw["pt"], 1152, 76518, cfg)
    assert pool == raw["pt"] and width == jl_dim(raw["pt"]) and 330 <= width <= 345
    assert peak < 1.8 * 2**30  # the float16 raw bank itself is 1.7 GiB, its float32 copy 3.4 GiB


@pytest.mark.parametrize("presample", [0, 300])
def test_chunked_memmap_coreset_equals_in_memory_selection(tmp_path, presample, monkeypatch):
    """The chunked projection of a float16 memmap picks what the greedy loop picks on the whole projected bank."""
    import torch

    import mlkit.tasks.anomaly.memory as mem

    monkeypatch.setattr(mem, "_CHUNK", 97)  # several chunks
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(500, 40)).astype(np.float16)
    path = tmp_path / "bank.npy"
    np.save(path, raw)
    bank = np.load(path, mmap_mode="r")
    cfg = {"memory": {"presample": presample, "projection_dim": 16}}
    got = subsample_bank(bank, 37, cfg, 5, "cpu")
    pool = np.arange(500)
    if presample:
        pool = np.sort(np.random.default_rng(5).choice(500, presample, replace=False))
    x = torch.from_numpy(raw[pool].astype(np.float32)) @ projection_matrix(40, 16, 5)
    keep = np.unique(coreset_torch(x, 37).numpy())
    assert np.array_equal(got, raw[pool[keep]].astype(np.float32))
    assert got.shape == (37, 40)


def test_uff_is_reused_from_a_checkpoint_or_state_dict(tmp_path):
    """--uff PATH: the paper trains one UFF for every category run; wrong widths or a non-model file exit 3."""
    import torch

    from mlkit.core.errors import DataError
    from mlkit.tasks.anomaly.model import UFF, load_uff

    torch.manual_seed(0)
    uff = UFF(33, 40, 2)
    sample = (np.zeros((784, 40), np.float32), np.zeros((3136, 33), np.float32))
    ck = tmp_path / "best.pt"
    torch.save({"state_dict": {f"uff.{k}": v for k, v in uff.state_dict().items()}, "config": {}}, ck)
    plain = tmp_path / "uff.pt"
    torch.save(uff.state_dict(), plain)
    for path in (ck, plain):
        got = load_uff(str(path), sample, 2)
        assert all(torch.equal(got.state_dict()[k], v) for k, v in uff.state_dict().items())
        assert not got.training
    with pytest.raises(DataError, match="no UFF for point 33-d"):
        load_uff(str(ck), sample, 4)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="cannot read the UFF file"):
        load_uff(str(bad), sample, 2)


def test_the_authors_uff_checkpoint_loads(tmp_path):
    """The authors' released format: MAE's save_model dict {'model': FeatureFusionBlock state_dict, 'epoch', 'args':
    argparse.Namespace}, DDP 'module.' prefixes, their names (xyz_norm, xyz_mlp.fc1/fc2, rgb_*, *_head): the loaded
    UFF fuses exactly as their block does (LN -> fc1 -> GELU -> fc2 per branch, point part first)."""
    import argparse

    import torch

    from mlkit.tasks.anomaly.model import AUTHORS_UFF_KEYS, load_uff

    torch.manual_seed(1)
    pt_dim, rgb_dim, r = 12, 8, 4
    theirs = {}
    for branch, d in (("xyz", pt_dim), ("rgb", rgb_dim)):
        theirs[f"{branch}_norm.weight"], theirs[f"{branch}_norm.bias"] = torch.rand(d) + 0.5, torch.randn(d)
        theirs[f"{branch}_mlp.fc1.weight"], theirs[f"{branch}_mlp.fc1.bias"] = torch.randn(r * d, d), torch.randn(r * d)
        theirs[f"{branch}_mlp.fc2.weight"], theirs[f"{branch}_mlp.fc2.bias"] = torch.randn(d, r * d), torch.randn(d)
        theirs[f"{branch}_head.weight"], theirs[f"{branch}_head.bias"] = torch.randn(256, d), torch.randn(256)
    assert {k.rsplit(".", 1)[0] + "." for k in theirs} <= {a for a in AUTHORS_UFF_KEYS} | {
        "xyz_mlp.fc1.", "xyz_mlp.fc2.", "rgb_mlp.fc1.", "rgb_mlp.fc2."}  # fmt: skip
    path = tmp_path / "uff_pretrained.pth"
    torch.save({"model": {f"module.{k}": v for k, v in theirs.items()}, "epoch": 2, "scaler": {},
                "args": argparse.Namespace(lr=0.003, batch_size=16)}, path)  # fmt: skip
    sample = (np.zeros((784, rgb_dim), np.float32), np.zeros((3136, pt_dim), np.float32))
    uff = load_uff(str(path), sample, r)
    x_pt, x_rgb = torch.randn(5, pt_dim), torch.randn(5, rgb_dim)

    def branch(x, b):  # their feature_fusion, written from the weights
        h = torch.nn.functional.layer_norm(x, (x.shape[1],), theirs[f"{b}_norm.weight"], theirs[f"{b}_norm.bias"])
        h = torch.nn.functional.gelu(h @ theirs[f"{b}_mlp.fc1.weight"].T + theirs[f"{b}_mlp.fc1.bias"])
        return h @ theirs[f"{b}_mlp.fc2.weight"].T + theirs[f"{b}_mlp.fc2.bias"]

    with torch.no_grad():
        torch.testing.assert_close(uff(x_pt, x_rgb), torch.cat([branch(x_pt, "xyz"), branch(x_rgb, "rgb")], 1))
        torch.testing.assert_close(uff.sigma_rgb.weight, theirs["rgb_head.weight"])


def test_fs_background_reference_keeps_and_scores_background_rows():
    """memory.fs_background: drop zeroes fused rows without point support (not banked, distance 0); reference keeps
    them as the original computes them."""
    import torch

    from mlkit.tasks.anomaly.model import UFF
    from mlkit.tasks.anomaly.pipeline import features_of

    torch.manual_seed(0)
    uff = UFF(6, 4, 2).eval()
    rgb = np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32)  # a 2x2 rgb grid -> 4x4 point grid
    pt = np.random.default_rng(1).normal(size=(16, 6)).astype(np.float32)
    pt[:5] = 0.0  # background
    drop = features_of("fs", rgb, pt, uff, "cpu", "drop")
    ref = features_of("fs", rgb, pt, uff, "cpu", "reference")
    assert np.all(drop[:5] == 0) and np.all(ref[:5] != 0)
    np.testing.assert_allclose(drop[5:], ref[5:])
    assert np.allclose(ref[0, :6], ref[1, :6])  # chi_pt(0) is one constant row


def test_missing_uff_file_stops_before_extraction(runs_dir, capsys):
    code = main(["anomaly", "train", "--uff", "/nonexistent/uff.pt", "--project", str(runs_dir), "--quiet"])
    assert code == 3
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "UFF file not found" in err and "/nonexistent/uff.pt" in err
