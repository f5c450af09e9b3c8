"""anomaly: FPFH against a plain-Python reference, PFA pooling, handcrafted RGB cells, UFF pairs and bank scoring."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlkit.kernels.fpfh import fpfh, fpfh_numba, fpfh_reference, neighbours, normals_numba, spfh_numba
from mlkit.tasks.anomaly.features import interpolate_3nn, pool_point_features, rgb_handcrafted
from mlkit.tasks.anomaly.memory import coreset_sizes, score_bank
from mlkit.tasks.anomaly.model import UFF, rgb_to_point_grid


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(4, 12))
def test_fpfh_numba_matches_python_reference(seed, k):
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(30, 3)) * 0.01 + np.array([0, 0, 0.5])
    d2, idx = neighbours(pts, k)
    nrm = normals_numba(pts, idx)
    got = fpfh_numba(spfh_numba(pts, nrm, idx), idx, d2)
    np.testing.assert_allclose(got, fpfh_reference(pts, nrm, idx, d2), atol=1e-9)


def test_fpfh_blocks_and_rigid_invariance():
    rng = np.random.default_rng(0)
    u, v = rng.uniform(-1, 1, size=(2, 800))
    pts = np.c_[u, v, 0.3 * u**2 - 0.2 * v**2] * 0.02 + np.array([0, 0, 0.5])
    f = fpfh(pts, 20, 40)
    np.testing.assert_allclose(
        f.reshape(-1, 3, 11).sum(-1), 200.0, atol=1e-6
    )  # own SPFH 100 + neighbours 100
    # a translation along the viewing axis keeps every pair feature
    np.testing.assert_allclose(fpfh(pts + np.array([0, 0, 0.1]), 20, 40), f, atol=1e-6)
    # normals point towards the camera at the origin
    nrm = normals_numba(pts, neighbours(pts, 20)[1])
    assert np.all((nrm * -pts).sum(1) >= 0)


def test_pool_point_features_background_zero_and_shape():
    valid = np.zeros((224, 224), bool)
    valid[50:150, 60:160] = True
    vals = np.ones((valid.sum(), 5), np.float32)
    f = pool_point_features(vals, valid, 56)
    assert f.shape == (56, 56, 5)
    assert np.all(f[:10] == 0) and np.all(f[-10:] == 0)  # fully-background patches are exactly 0
    assert np.allclose(f[20:30, 20:30], 1.0)  # interior patches keep the value
    edge = f[12, 20:30, 0]  # patches straddling the boundary shrink towards 0
    assert np.all((edge > 0) & (edge < 1))


def test_interpolate_3nn_exact_at_centres_and_convex():
    rng = np.random.default_rng(1)
    cen = rng.normal(size=(20, 3))
    feats = rng.normal(size=(20, 4))
    np.testing.assert_allclose(interpolate_3nn(cen, feats, cen), feats, atol=1e-5)
    pts = rng.normal(size=(50, 3))
    out = interpolate_3nn(cen, feats, pts)
    assert np.all(out <= feats.max(0) + 1e-6) and np.all(out >= feats.min(0) - 1e-6)


def test_handcrafted_rgb_cells_and_colour_sensitivity():
    rng = np.random.default_rng(0)
    img = np.clip(0.5 + 0.05 * rng.normal(size=(224, 224, 3)), 0, 1).astype(np.float32)
    f = rgb_handcrafted(img)
    assert f.shape == (28, 28, 40) and np.isfinite(f).all()
    stained = img.copy()
    stained[100:116, 100:116] = [0.2, 0.1, 0.25]
    g = rgb_handcrafted(stained)
    diff = np.linalg.norm(g - f, axis=2)
    assert diff[12:15, 12:15].min() > 5 * np.median(diff)  # the stained cells stand out


def test_rgb_to_point_grid_aligned_and_reference():
    rgb = np.arange(28 * 28)[:, None].astype(np.float32)
    al = rgb_to_point_grid(rgb, 28).reshape(56, 56)
    np.testing.assert_array_equal(al, np.repeat(np.repeat(rgb.reshape(28, 28), 2, 0), 2, 1))
    ref = rgb_to_point_grid(rgb, 28, "reference")[:, 0].astype(int)
    p = np.arange(3136)
    np.testing.assert_array_equal(ref, (4 * (p % 784) + p // 784) % 784)  # spec §8 misalignment
    assert np.all(np.bincount(ref, minlength=784) == 4)


def test_uff_loss_learns_paired_patches():
    torch.manual_seed(0)
    z = torch.randn(256, 8)
    x_pt, x_rgb = z @ torch.randn(8, 33), z @ torch.randn(8, 40)
    m = UFF(33, 40)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    first = m.loss(x_pt, x_rgb).item()
    for _ in range(60):
        opt.zero_grad()
        loss = m.loss(x_pt, x_rgb)
        loss.backward()
        opt.step()
    assert first == pytest.approx(2 * math.log(256), rel=0.2)  # chance level of the InfoNCE
    # T = 1 bounds the logits to [-1, 1], so the loss floor is about 2 (ln N - 2); paired patches must align
    assert loss.item() < first - 1.5
    with torch.no_grad():
        q = torch.nn.functional.normalize(m.sigma_rgb(m.chi_rgb(x_rgb)), dim=1)
        k = torch.nn.functional.normalize(m.sigma_pt(m.chi_pt(x_pt)), dim=1)
        sim = q @ k.T
    assert sim.diag().mean() - (sim.sum() - sim.diag().sum()) / (256 * 255) > 0.5
    assert m(x_pt, x_rgb).shape == (256, 73)


def test_score_bank_reweighting_formula_and_exact_match():
    rng = np.random.default_rng(0)
    bank = torch.from_numpy(rng.normal(size=(50, 6)))
    s, m = score_bank(bank[:10].clone(), bank, reweight=True)
    assert s < 1e-6 and torch.all(m < 1e-6)  # matmul distances: sqrt of float64 cancellation
    q = torch.from_numpy(rng.normal(size=(10, 6))) * 3
    s, m = score_bank(q, bank, reweight=True)
    d = torch.cdist(q, bank)
    i = int(d.min(1).values.argmax())
    s_star = d[i].min()
    order = torch.cdist(bank[d[i].argmin()][None], bank)[0].argsort()
    nb = bank[order[1:3]]
    w = (
        1
        - torch.exp(s_star / math.sqrt(6))
        / torch.exp(torch.linalg.norm(q[i] - nb, dim=1) / math.sqrt(6)).sum()
    )
    assert s == pytest.approx(float(w * s_star), rel=1e-6)
    s_plain, _ = score_bank(q, bank, reweight=False)
    assert s_plain == pytest.approx(float(s_star), rel=1e-6)


def test_coreset_sizes_reference_quirk_and_cap():
    cfg = {"memory": {"coreset_ratio": 0.1, "coreset_max": 0, "coreset_mode": "reference"}}
    raw = {"pt": 500_000, "rgb": 191_296, "fs": 765_184}
    got = coreset_sizes(raw, 765_184, cfg)
    assert got == {"pt": 76_518, "rgb": 7_651, "fs": 7_651}  # spec §2.7 bagel numbers
    cfg["memory"].update(coreset_mode="uniform", coreset_max=10_000)
    assert coreset_sizes(raw, 765_184, cfg) == {"pt": 10_000, "rgb": 10_000, "fs": 10_000}


def test_eyecandies_conversion_layout_and_geometry(tmp_path):
    """A fake raw Eyecandies class (flat depth 0.5 m, identity pose) converts to the MVTec layout."""
    import tifffile
    import yaml
    from PIL import Image

    from mlkit.tasks.anomaly.eyecandies import convert_root

    for sub, pid, bad in (("train", "000", False), ("test_public", "00", True), ("test_public", "01", False)):
        d = tmp_path / "raw/CandyCane" / sub / "data"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(d / f"{pid}_image_4.png")
        Image.fromarray(np.full((64, 64), 32768, np.uint16)).save(d / f"{pid}_depth.png")
        (d / f"{pid}_info_depth.yaml").write_text(yaml.safe_dump({"normalization": {"min": 0.0, "max": 1.0}}))
        np.savetxt(d / f"{pid}_pose.txt", np.eye(4))
        mask = np.zeros((64, 64), np.uint8)
        if bad:
            mask[10:20, 10:20] = 255
        if sub == "test_public":
            Image.fromarray(mask).save(d / f"{pid}_mask.png")
    assert convert_root(tmp_path / "raw", tmp_path / "out") == ["CandyCane"]
    out = tmp_path / "out/CandyCane"
    assert (out / "train/good/xyz/000.tiff").is_file() and (out / "test/bad/gt/000.png").is_file()
    assert (out / "test/good/rgb/000.png").is_file()  # all-zero mask -> good
    xyz = tifffile.imread(out / "train/good/xyz/000.tiff")
    assert xyz.shape == (64, 64, 3) and xyz.dtype == np.float32
    # flat depth d: x = (u - W/2) d / f; axes reordered to (x, z, y) and scaled (0.1, -0.1, 0.1)
    d = 32768 / 65535
    np.testing.assert_allclose(xyz[..., 1], -0.1 * d, rtol=1e-5)
    np.testing.assert_allclose(xyz[5, 40, 0], 0.1 * (40 - 32) * d / 711.11, rtol=1e-4)


def _cfg(**memory):
    from pathlib import Path

    import yaml

    cfg = yaml.safe_load((Path(__file__).parents[2] / "mlkit/tasks/anomaly/config.yaml").read_text())
    cfg["memory"].update(memory)
    return cfg


@pytest.mark.parametrize("norm", ["reference", "per-bank"])
def test_build_banks_norms_zero_rows_and_fusion(norm, tmp_path):
    from mlkit.tasks.anomaly.pipeline import build_banks, combine, fit_fusion, score_sample

    rng = np.random.default_rng(0)
    feats = []
    for _ in range(3):
        pt = np.abs(rng.normal(size=(3136, 33))).astype(np.float32) * 10
        pt[:1000] = 0  # background
        feats.append((rng.normal(size=(784, 40)).astype(np.float32) + 3, pt))
    cfg = _cfg(norm=norm, coreset_ratio=0.1, coreset_max=200)
    st = build_banks(feats, "double", None, cfg, tmp_path, 0, "cpu", lambda m: None)
    pts = np.concatenate([f[1] for f in feats])
    pts = pts[np.any(pts != 0, axis=1)]
    rgbs = np.concatenate([f[0] for f in feats])
    if norm == "reference":  # mean of the pt bank and std of the rgb bank for every bank
        assert st.norm["pt"] == st.norm["rgb"]
        assert st.norm["pt"][0] == pytest.approx(pts.mean(), rel=1e-3)
        assert st.norm["pt"][1] == pytest.approx(rgbs.std(), rel=1e-3)
    else:
        assert st.norm["rgb"][0] == pytest.approx(rgbs.mean(), rel=1e-3)
    mu, sd = st.norm["pt"]
    assert len(st.banks["pt"]) == 201 and torch.allclose(st.banks["pt"][-1], torch.full((33,), -mu / sd))
    assert len(st.banks["rgb"]) == 200
    scored = [score_sample(st, r, p, "double", None, cfg, "cpu") for r, p in feats]
    assert scored[0]["pt"][1].shape == (224, 224)
    fit_fusion(st, scored, "double", cfg, 0)
    assert st.w_img.shape == (2,) and np.all(st.w_img > 0)  # the OCSVM acts as a positive weighting
    s, m = combine(st, scored[0], "double")
    vec = np.array([scored[0]["pt"][0] / st.scale_img["pt"], scored[0]["rgb"][0] / st.scale_img["rgb"]])
    assert s == pytest.approx(float(vec @ st.w_img)) and m.shape == (224, 224)
