"""attack on RGB data: CIFAR-10 python pickles and image folders (fixtures written here byte for byte in the real
layouts), the CycleGAN generator and CIFAR ResNet targets, per-channel normalisation inside the target wrapper,
end-to-end train / eval / predict on a CIFAR fixture and a folder fixture, and malformed files -> exit 3, one line
naming the file."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mlkit.cli import main
from mlkit.core.errors import DataError
from mlkit.tasks.attack import data as D

FAST = ["--device", "cpu", "--quiet", "--set", "epochs=1", "--set", "target_epochs=1", "--set", "val=20",
        "--set", "batch_size=32", "--set", "eval.limit=12", "--set", "eval.pgd_steps=2", "--set", "eval.cw_steps=2",
        "--set", "eval.curve_eps=[0.03]", "--set", "eval.grid=3", "--target-arch", "resnet8"]  # fmt: skip


def _rgb(rng: np.random.Generator, y: np.ndarray, side: int = 32) -> np.ndarray:
    """(n, side, side, 3) uint8: the class is the colour of a bright square, plus noise."""
    x = rng.integers(0, 90, (len(y), side, side, 3)).astype(np.uint8)
    for i, c in enumerate(y):
        x[i, 8:24, 8:24, int(c) % 3] = 230
        x[i, 8:24, 8:24, (int(c) // 3) % 3] = 160 + int(c)
    return x


def write_cifar(root: Path, per_batch: int = 20, test: int = 40) -> Path:
    """The CIFAR-10 python layout: data_batch_1..5 / test_batch are pickled dicts with bytes keys, b'data' uint8
    N x 3072 (channel-planar: 1024 R, 1024 G, 1024 B, rows top to bottom), b'labels' a list; batches.meta holds
    b'label_names'."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def dump(name: str, n: int) -> None:
        y = np.arange(n) % 10
        rows = _rgb(rng, y).transpose(0, 3, 1, 2).reshape(n, 3072)
        body = {b"batch_label": name.encode(), b"labels": y.tolist(), b"data": rows,
                b"filenames": [f"{name}_{i}.png".encode() for i in range(n)]}  # fmt: skip
        (root / name).write_bytes(pickle.dumps(body, protocol=2))

    for i in range(1, 6):
        dump(f"data_batch_{i}", per_batch)
    dump("test_batch", test)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": names, b"num_vis": 3072}, protocol=2))
    return root


def write_folder(root: Path, per_class: int = 24, classes: int = 3, split: bool = False) -> Path:
    """Image folders: <root>/<class>/*.png (torchvision ImageFolder) or <root>/train|test/<class>/*.png."""
    rng = np.random.default_rng(1)
    y = np.arange(per_class * classes) % classes
    x = _rgb(rng, y)
    for i, (img, c) in enumerate(zip(x, y)):
        sub = ("test" if i % 4 == 0 else "train") if split else ""
        d = root / sub / f"class_{'abc'[c]}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cifar(tmp_path_factory.mktemp("c10") / "cifar-10-batches-py")


def _run(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    rc = main(args)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


# ------------------------------------------------------------------------------------------------ readers
def test_cifar_pickles_read_channel_planar(cifar_root: Path) -> None:
    ds = D.load_any(cifar_root.parent)  # the parent holding cifar-10-batches-py/ works as well
    assert ds.layout == "cifar10" and ds.classes[0] == "airplane" and len(ds.classes) == 10
    assert ds.train.x.shape == (100, 3, 32, 32) and ds.test.x.shape == (40, 3, 32, 32)
    raw = pickle.loads((cifar_root / "data_batch_2").read_bytes(), encoding="bytes")
    i, ch, r, c = 3, 2, 5, 17
    assert ds.train.x[20 + i, ch, r, c] == pytest.approx(raw[b"data"][i, ch * 1024 + r * 32 + c] / 255.0)
    assert ds.train.y[20 + i] == raw[b"labels"][i] and 0 <= ds.train.x.min() and ds.train.x.max() <= 1


def test_image_folders_both_layouts(tmp_path: Path) -> None:
    flat = D.load_any(write_folder(tmp_path / "flat"), seed=0)
    assert flat.layout == "folder" and flat.classes == ["class_a", "class_b", "class_c"]
    assert flat.train.x.shape[1:] == (3, 32, 32) and len(flat.train.y) + len(flat.test.y) == 72
    assert np.bincount(flat.test.y).tolist() == [5, 5, 5]  # seeded stratified 20 % per class
    again = D.load_any(tmp_path / "flat", seed=0)
    assert np.array_equal(again.test.x, flat.test.x) and np.array_equal(again.train.y, flat.train.y)
    tt = D.load_any(write_folder(tmp_path / "tt", split=True), image_size=28)
    assert len(tt.test.y) == 18 and len(tt.train.y) == 54 and tt.train.x.shape[1:] == (3, 28, 28)
    grey = tmp_path / "grey" / "z"
    for c in ("0", "1"):
        (grey / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((28, 28), 40 * i + 100 * int(c), np.uint8)).save(grey / c / f"{i}.png")
    g = D.load_any(grey.parent / "z", folder_test=0.34)
    assert g.train.x.shape[1:] == (1, 28, 28) and len(g.test.y) == 2  # grey images: one channel


# ------------------------------------------------------------------------------------------------ models
def test_cyclegan_generator_and_cifar_resnet() -> None:
    from torch import nn

    from mlkit.tasks.attack.model import AdvGAN, CycleGenerator, Target, stat_list, target_net

    g = CycleGenerator(3, 8)
    convs = [m for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    head = [(m.kernel_size[0], m.stride[0], m.out_channels) for m in convs[:3]]
    tail = [(type(m).__name__, m.kernel_size[0], m.out_channels) for m in convs[-3:]]
    assert head == [(7, 1, 8), (3, 2, 16), (3, 2, 32)]  # c7s1-8, d16, d32
    assert tail == [("ConvTranspose2d", 3, 16), ("ConvTranspose2d", 3, 8), ("Conv2d", 7, 3)]  # u16, u8, c7s1-3
    assert len(convs) == 3 + 8 + 3  # four residual blocks of two convs
    r32 = target_net("resnet32", 10, 3)
    assert sum(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) for m in r32.modules()) == 31
    assert 0.46e6 < sum(p.numel() for p in r32.parameters()) < 0.47e6  # He et al.: 0.46 M
    torch.manual_seed(0)
    net = target_net("resnet8", 10, 3).eval()
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    t = Target(net, mean, std).eval()
    x = torch.rand(2, 3, 32, 32)
    want = net((x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1))
    assert torch.allclose(t(x), want) and stat_list(t.std) == pytest.approx(std)
    m = AdvGAN(t, shape=(3, 32, 32))
    assert isinstance(m.G, CycleGenerator) and m.G(x).shape == x.shape and m.D(x).shape == (2,)


def test_target_file_keeps_per_channel_normalisation(tmp_path: Path) -> None:
    from mlkit.tasks.attack.model import Target, target_net
    from mlkit.tasks.attack.target import load_target, save_target

    t = Target(target_net("resnet8", 7, 3), [0.1, 0.2, 0.3], [0.5, 0.5, 0.6])
    save_target(t, "resnet8", tmp_path / "t.pt")
    back, arch = load_target(tmp_path / "t.pt", "auto", 0.0, 1.0)
    x = torch.rand(2, 3, 32, 32)
    assert arch == "resnet8" and torch.allclose(back(x), t.eval()(x)) and back(x).shape == (2, 7)
    torch.save(target_net("resnet20", 10, 3).state_dict(), tmp_path / "sd.pt")
    assert load_target(tmp_path / "sd.pt", "resnet20", [0.5] * 3, [0.25] * 3)[1] == "resnet20"
    with pytest.raises(DataError, match="does not fit"):
        load_target(tmp_path / "sd.pt", "resnet8", 0.0, 1.0)


# ------------------------------------------------------------------------------------------------ end to end
def test_cifar_train_eval_predict(cifar_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    proj = str(tmp_path / "runs")
    rc, out, err = _run(["attack", "train", "--data", str(cifar_root), "--eps", "0.03", "--project", proj, "--json",
                         *FAST], capsys)  # fmt: skip
    assert rc == 0, err[-2000:]
    m = json.loads(out)["metrics"]
    assert m["test/linf_max"] <= 0.03 + 1e-6 and 0 <= m["test/success"] <= 1
    model = json.loads(out)["run_dir"] + "/weights/best.pt"
    ck = torch.load(model, map_location="cpu", weights_only=True)
    assert ck["extra"]["shape"] == [3, 32, 32] and ck["extra"]["target_kind"] == "resnet8"
    assert ck["state_dict"]["target.mean"].shape == (3, 1, 1)  # the train split's per-channel statistics
    rc, out, err = _run(["attack", "eval", "--model", model, "--json", "--methods", "fgsm", *FAST[:2]], capsys)
    assert rc == 0, err[-2000:]
    body = json.loads((Path(model).parents[1] / "eval" / "eval.json").read_text())
    assert len(body["per_class_success"]["advgan"]) == 10
    png = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(png)
    (tmp_path / "in.txt").write_text(f"test:0\n{png},4\n")
    rc, out, err = _run(["attack", "predict", "--model", model, "--device", "cpu", "--quiet", "--method", "fgsm",
                         "--save", str(tmp_path / "adv"), "--input", str(tmp_path / "in.txt")], capsys)  # fmt: skip
    assert rc == 0, err[-2000:]
    rows = [json.loads(s) for s in out.splitlines()]
    assert [r["true_label"] for r in rows] == [0, 4] and all(r["linf"] <= 0.03 + 1e-6 for r in rows)
    assert np.load(rows[1]["npz"])["adversarial"].shape == (2, 3, 32, 32) and Path(rows[1]["grid"]).is_file()


def test_folder_targeted_k_classes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Three class folders: k = 3, the targeted rule t = (y + 1) mod 3, a ResNet target, the CycleGAN G."""
    root = write_folder(tmp_path / "f")
    rc, out, err = _run(["attack", "train", "--data", str(root), "--targeted", "--project", str(tmp_path / "r"),
                         "--json", *FAST, "--set", "val=10"], capsys)  # fmt: skip
    assert rc == 0, err[-2000:]
    run = Path(json.loads(out)["run_dir"])
    ck = torch.load(run / "weights" / "best.pt", map_location="cpu", weights_only=True)
    assert ck["extra"]["k"] == 3 and 0 <= json.loads(out)["metrics"]["test/success"] <= 1
    from mlkit.tasks.attack.loss import goal

    assert goal(torch.tensor([0, 1, 2]), True, -1, ck["extra"]["k"]).tolist() == [1, 2, 0]
    rc, out, err = _run(["attack", "train", "--data", str(root), "--target-arch", "c", "--project",
                         str(tmp_path / "r2"), *FAST[:2], "--set", "val=10"], capsys)  # fmt: skip
    assert rc == 2 and "28x28" in err  # the MNIST targets take 28x28 images only


# ------------------------------------------------------------------------------------------------ malformed
def _one_line_exit3(argv: list[str], capsys: pytest.CaptureFixture, name: Path) -> None:
    rc, out, err = _run(argv, capsys)
    lines = [s for s in err.splitlines() if s.strip()]
    assert rc == 3 and out == "" and len(lines) == 1 and str(name) in lines[0], err


def test_malformed_cifar_and_folders_exit_3(cifar_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import shutil

    base = ["attack", "train", *FAST[:3], "--set", "val=10", "--project", str(tmp_path / "r")]
    cases = {
        "truncated": ("data_batch_3", lambda b: b[: len(b) // 2]),
        "list": ("test_batch", lambda b: pickle.dumps([1, 2, 3])),
        "nodata": ("data_batch_1", lambda b: pickle.dumps({b"labels": [0]})),
        "code": ("data_batch_5", lambda b: pickle.dumps({b"data": Path("x")})),  # a class: refused, never built
    }
    for tag, (name, mutate) in cases.items():
        bad = tmp_path / tag
        shutil.copytree(cifar_root, bad)
        (bad / name).write_bytes(mutate((bad / name).read_bytes()))
        _one_line_exit3([*base, "--data", str(bad)], capsys, bad / name)
    root = write_folder(tmp_path / "png")
    corrupt = root / "class_b" / "004.png"
    corrupt.write_bytes(corrupt.read_bytes()[:60])
    _one_line_exit3([*base, "--data", str(root)], capsys, corrupt)
    corrupt.unlink()
    (root / "class_d").mkdir()
    _one_line_exit3([*base, "--data", str(root)], capsys, root / "class_d")


def test_pickle_fuzz_always_names_the_file(cifar_root: Path, tmp_path: Path) -> None:
    import shutil

    good = (cifar_root / "test_batch").read_bytes()
    rng = np.random.default_rng(2)
    bad = tmp_path / "fuzz"
    shutil.copytree(cifar_root, bad)
    for n in [0, 1, 2, 100, len(good) - 1, *rng.integers(3, len(good), 4).tolist()]:
        (bad / "test_batch").write_bytes(good[:n])
        with pytest.raises(DataError) as e:
            D.load_any(bad)
        assert str(bad / "test_batch") in e.value.line() and "\n" not in e.value.line()
