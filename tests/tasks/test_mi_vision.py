"""mi representation learning on images: the CIFAR-10 pickle and ImageFolder layouts (tiny fixtures written in the
exact layouts), the subview chain, train -> eval (linear probe) -> predict (image pairs), and bad images (exit 3)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import subprocess_env
from PIL import Image

from mlkit.cli import main
from mlkit.tasks.longtail.data import write_cifar10
from mlkit.tasks.mi import vision as V

FAST = ["--estimator", "demi", "--splits", "2", "--steps", "6", "--batch-size", "16", "--set", "eval_batches=2",
        "--set", "vision.width=4", "--set", "vision.probe_few=10", "--device", "cpu", "--quiet"]  # fmt: skip


def _images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n 32x32 RGB images of 2 classes (class 1 has a bright top half) and their labels."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.integers(0, 120, (n, 32, 32, 3)).astype(np.uint8)
    x[y == 1, :16] += 120
    return x, y


@pytest.fixture
def cifar(tmp_path: Path) -> Path:
    xtr, ytr = _images(60, 0)
    xte, yte = _images(20, 1)
    write_cifar10(tmp_path / "cifar-10-batches-py", xtr, ytr, xte, yte, ["dark", "bright"])
    return tmp_path / "cifar-10-batches-py"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    for split, n, seed in (("train", 24, 2), ("test", 10, 3)):
        x, y = _images(n, seed)
        for i in range(n):
            d = root / split / ("dark", "bright")[y[i]]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x[i][:20, :24]).save(d / f"{i}.png")  # any size: resized to vision.size
    return root


def test_layouts_read(cifar: Path, folder: Path) -> None:
    for root, ntr, nte, k in ((cifar, 60, 20, 10), (cifar.parent, 60, 20, 10), (folder, 24, 10, 2)):
        assert V.is_image_root(root)
        xtr, ytr, xte, yte, names = V.read_images(root, 32)
        assert xtr.shape == (ntr, 32, 32, 3) and xte.shape == (nte, 32, 32, 3) and xtr.dtype == np.uint8
        assert len(ytr) == ntr and set(ytr.tolist()) == {0, 1} and len(names) == k
    assert not V.is_image_root(folder / "train" / "dark")


def test_subviews_form_a_deterministic_chain() -> None:
    x = torch.rand(3, 3, 32, 32)
    for s in (2, 3, 4):
        chain = V.bands(x, s)
        assert torch.equal(chain[-1], x)
        for k in range(1, s):  # x_k is a function of x_{k+1}: re-banding x_{k+1} gives the same x_k
            assert torch.equal(V.bands(chain[k], s)[k - 1], chain[k - 1])
            assert (chain[k - 1] != 0).sum() < (chain[k] != 0).sum()


def test_train_eval_predict_on_cifar_layout(cifar: Path, runs_dir: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["mi", "train", "--data", str(cifar), "--project", str(runs_dir), "--json", *FAST])
    cap = capsys.readouterr()
    assert rc == 0, cap.err[-2000:]
    body = json.loads(cap.out)
    m = body["metrics"]
    assert {"test/mi", "test/term1", "test/term2", "test/probe_acc", "test/probe_acc_random",
            "test/probe_acc_10"} <= set(m)  # fmt: skip
    assert 0.0 <= m["test/probe_acc"] <= 1.0 and np.isfinite(m["test/mi"])
    model = Path(body["run_dir"]) / "weights" / "best.pt"
    assert main(["mi", "eval", "--model", str(model), "--data", str(cifar), "--json", "--device", "cpu"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["metrics"]["test/probe_acc"] == pytest.approx(m["test/probe_acc"])
    a, b = cifar.parent / "a.png", cifar.parent / "b.png"
    Image.fromarray(_images(2, 5)[0][0]).save(a)
    Image.fromarray(_images(2, 5)[0][1]).save(b)
    out = subprocess.run([sys.executable, "-m", "mlkit", "mi", "predict", "--model", str(model), "--device", "cpu"],
                         input=f"{a};{b}\n{b};{a}\n", capture_output=True, text=True, env=subprocess_env(),
                         timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["id"] for r in rows] == [1, 2] and all(np.isfinite(r["score"]) for r in rows)
    bad = subprocess.run([sys.executable, "-m", "mlkit", "mi", "predict", "--model", str(model), "--device", "cpu"],
                         input=f"{a};{cifar.parent / 'missing.png'}\n", capture_output=True, text=True,
                         env=subprocess_env(), timeout=300)  # fmt: skip
    assert bad.returncode == 3 and "missing.png" in bad.stderr


@pytest.mark.parametrize("damage", ["truncate", "not-a-dict", "corrupt-png"])
def test_bad_images_exit_3_naming_the_file(cifar: Path, folder: Path, runs_dir: Path, damage: str,
                                           capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    root = cifar
    if damage == "truncate":
        p = cifar / "data_batch_2"
        p.write_bytes(p.read_bytes()[:500])
    elif damage == "not-a-dict":
        p = cifar / "test_batch"
        p.write_bytes(pickle.dumps([1, 2, 3]))
    else:
        root = folder
        p = next((folder / "train" / "bright").glob("*.png"))
        p.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    rc = main(["mi", "train", "--data", str(root), "--project", str(runs_dir), *FAST])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 3 and len(err) == 1 and p.name in err[0], err
