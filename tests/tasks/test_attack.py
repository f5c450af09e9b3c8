"""attack: the MNIST idx parser (plain, .gz, malformed -> exit 3 naming the file), target files, the §7 unit checks
(loss sign, projection bounds, frozen target with input gradients, D/G alternation, determinism) and end-to-end
train / eval / predict / target on a tiny idx fixture.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mlkit.cli import main
from mlkit.core.errors import DataError
from mlkit.tasks.attack import data as D

FAST = ["--device", "cpu", "--quiet", "--set", "epochs=2", "--set", "target_epochs=2", "--set", "val=40",
        "--set", "batch_size=64", "--set", "eval.limit=30", "--set", "eval.pgd_steps=3", "--set", "eval.cw_steps=5",
        "--set", "eval.curve_eps=[0.1,0.3]", "--set", "eval.grid=4"]  # fmt: skip


@pytest.fixture(scope="module")
def idx_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MNIST idx folder: 200 train (plain files) and 60 test images (gzip files)."""
    root = tmp_path_factory.mktemp("mnist")
    x, y = D.render_digits(260, seed=3)
    D.write_idx(root / "train-images-idx3-ubyte", x[:200])
    D.write_idx(root / "train-labels-idx1-ubyte", y[:200])
    D.write_idx(root / "t10k-images-idx3-ubyte", x[200:], compress=True)
    D.write_idx(root / "t10k-labels-idx1-ubyte", y[200:], compress=True)
    return root


def _run(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    rc = main(args)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


# ------------------------------------------------------------------------------------------------ idx parser
def test_idx_roundtrip_plain_and_gz(tmp_path: Path) -> None:
    x = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    y = np.arange(7, dtype=np.uint8) % 10
    for gz in (False, True):
        pi = D.write_idx(tmp_path / f"i{gz}", x, compress=gz)
        pl = D.write_idx(tmp_path / f"l{gz}", y, compress=gz)
        assert np.array_equal(D.read_idx(pi, "images"), x) and np.array_equal(D.read_idx(pl, "labels"), y)
    raw = (tmp_path / "iFalse").read_bytes()
    assert raw[:4] == b"\x00\x00\x08\x03" and raw[4:16] == (7).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    assert gzip.decompress((tmp_path / "lTrue.gz").read_bytes())[:8] == b"\x00\x00\x08\x01\x00\x00\x00\x07"


def test_idx_malformed_fuzz(tmp_path: Path) -> None:
    """Truncations, garbled magic / dimension bytes, trailing bytes, bad gzip: always DataError naming the file."""
    good = D.write_idx(tmp_path / "good", np.zeros((5, 28, 28), np.uint8)).read_bytes()
    rng = np.random.default_rng(1)
    cases = [good[:n] for n in (0, 3, 10, 16, 17, len(good) - 1)] + [good + b"\x00"]
    for _ in range(20):
        b = bytearray(good)
        b[int(rng.integers(0, 16))] ^= int(rng.integers(1, 256))
        cases.append(bytes(b))
    cases.append(b"\x1f\x8b garbage")
    for i, body in enumerate(cases):
        p = tmp_path / (f"bad{i}.gz" if body.startswith(b"\x1f\x8b") else f"bad{i}")
        p.write_bytes(body)
        with pytest.raises(DataError) as e:
            D.read_idx(p, "images")
        assert str(p) in e.value.line() and "\n" not in e.value.line()
    with pytest.raises(DataError, match="magic"):
        D.read_idx(D.write_idx(tmp_path / "lab", np.zeros(3, np.uint8)), "images")


def test_cli_bad_idx_exits_3_naming_file(idx_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import shutil

    for name, mutate in (("train-images-idx3-ubyte", lambda b: b"\x00\x00\x08\x04" + b[4:]),
                         ("train-labels-idx1-ubyte", lambda b: b[:-5])):  # fmt: skip
        bad = tmp_path / name.split("-")[1]
        shutil.copytree(idx_root, bad)
        (bad / name).write_bytes(mutate((bad / name).read_bytes()))
        rc, out, err = _run(["attack", "train", "--data", str(bad), "--project", str(tmp_path / "r"), *FAST], capsys)
        lines = [s for s in err.splitlines() if s.strip()]
        assert rc == 3 and out == "" and len(lines) == 1 and str(bad / name) in lines[0], err


def test_cli_target_not_a_model_exits_3(idx_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    junk = tmp_path / "model.pt"
    junk.write_bytes(b"this is not a model" * 10)
    rc, out, err = _run(["attack", "train", "--data", str(idx_root), "--target", str(junk), "--project",
                         str(tmp_path / "r"), *FAST], capsys)  # fmt: skip
    assert rc == 3 and str(junk) in err and len(err.strip().splitlines()) == 1, err


# ------------------------------------------------------------------------------------------------ §7 units
def test_loss_sign_zero_once_misclassified() -> None:
    from mlkit.kernels.perturb import cw_margin

    z = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    y = torch.tensor([0, 0])
    u = cw_margin(z, y, targeted=False)
    assert u[0] == 2.0 and u[1] == 0.0  # image 1 is misclassified already: no more push
    t = cw_margin(z, torch.tensor([1, 1]), targeted=True)
    assert t[0] == 2.0 and t[1] == 0.0  # image 1 is already classified as the target
    assert cw_margin(z, y, False, kappa=5.0)[1] == -2.0  # kappa keeps pushing up to the margin


def test_frozen_target_input_gradients_and_bounds() -> None:
    from mlkit.tasks.attack.loss import perturb
    from mlkit.tasks.attack.model import AdvGAN, Target, target_net

    torch.manual_seed(0)
    m = AdvGAN(Target(target_net("c"))).train()
    assert not m.target.training and all(not p.requires_grad for p in m.target.parameters())
    x = torch.rand(4, 1, 28, 28)
    raw = m.G(x)
    assert raw.shape == x.shape and m.D(x).shape == (4,)
    adv = perturb(raw.detach() * 5, x, 0.3)
    assert float((adv - x).abs().max()) <= 0.3 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    xg = x.clone().requires_grad_(True)
    m.target(xg).sum().backward()
    assert xg.grad is not None and float(xg.grad.abs().sum()) > 0
    assert all(p.grad is None for p in m.target.parameters())


def test_d_g_steps_alternate(idx_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each optimizer step moves exactly one of D and G, in the order D, G, D, G, ... (d_steps = 1)."""
    from mlkit.core.config import load_defaults
    from mlkit.core.runtime import Ctx
    from mlkit.core.task import TrainState
    from mlkit.tasks.attack.task import TASK

    cfg = load_defaults("mlkit.tasks.attack")
    cfg.update({"data": str(idx_root), "val": 40, "batch_size": 32, "target_epochs": 1})
    cfg = TASK.finalize(cfg, frozenset(), "train")
    ctx = Ctx(task="attack", mode="train", quiet=True)
    data = TASK.load_data(cfg, ctx)
    model = TASK.build_model(cfg, ctx, data)
    opt, _ = TASK.build_optimizer(cfg, model)
    moved: list[str] = []
    step = opt.step

    def spy(*a, **k):
        g = any(p.grad is not None for p in model.G.parameters())
        d = any(p.grad is not None for p in model.D.parameters())
        moved.append("G" if g and not d else "D" if d and not g else "both")
        return step(*a, **k)

    monkeypatch.setattr(opt, "step", spy)
    st = TrainState(data=data, model=model, net=model, optimizer=opt, generator=torch.Generator().manual_seed(0))
    tgt = {k: v.clone() for k, v in model.target.state_dict().items()}
    TASK.train_epoch(cfg, ctx, st)
    assert moved == ["D", "G"] * (160 // 32)
    assert all(torch.equal(tgt[k], v) for k, v in model.target.state_dict().items())


# ------------------------------------------------------------------------------------------------ end to end
def test_train_eval_predict_on_idx_and_determinism(idx_root: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    proj = str(tmp_path / "runs")
    metrics = []
    for name in ("a", "b"):
        rc, out, err = _run(["attack", "train", "--data", str(idx_root), "--project", proj, "--name", name, "--json",
                             *FAST], capsys)  # fmt: skip
        assert rc == 0, err[-2000:]
        metrics.append({k: v for k, v in json.loads(out)["metrics"].items() if "per_s" not in k})
    assert metrics[0] == metrics[1]  # same seed, same numbers
    assert metrics[0]["test/linf_max"] <= 0.3 + 1e-6
    model = str(tmp_path / "runs" / "attack" / "a" / "weights" / "best.pt")
    rc, out, err = _run(["attack", "eval", "--model", model, "--project", proj, "--json", *FAST[:2]], capsys)
    assert rc == 0, err[-2000:]
    m = json.loads(out)["metrics"]
    for meth in ("", "fgsm/", "pgd/", "cw/"):
        assert 0 <= m[f"test/{meth}success"] <= 1 and f"test/{meth}images_per_s" in m
    ev = tmp_path / "runs" / "attack" / "a" / "eval"
    for f in ("eps_curve.csv", "eps_curve.png", "grid_advgan.png", "grid_pgd.png", "eval.json"):
        assert (ev / f).stat().st_size > 100, f
    body = json.loads((ev / "eval.json").read_text())
    assert len(body["per_class_success"]["advgan"]) == 10 and [r["eps"] for r in body["eps_curve"]] == [0.1, 0.3]
    import subprocess
    import sys

    from conftest import subprocess_env

    save = tmp_path / "adv"
    res = subprocess.run([sys.executable, "-m", "mlkit", "attack", "predict", "--model", model, "--device", "cpu",
                          "--quiet", "--method", "fgsm", "--save", str(save)], input=b"test:0\ntest:1\n",
                         capture_output=True, env=subprocess_env(), timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    rows = [json.loads(s) for s in res.stdout.decode().splitlines()]
    assert [r["id"] for r in rows] == ["test:0", "test:1"] and all(r["linf"] <= 0.3 + 1e-6 for r in rows)
    npz = np.load(rows[0]["npz"])
    assert npz["adversarial"].shape == (2, 1, 28, 28) and Path(rows[0]["grid"]).stat().st_size > 1000


def test_target_verb_and_user_target_files(idx_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from mlkit.tasks.attack.model import target_net
    from mlkit.tasks.attack.target import load_target

    out = tmp_path / "t.pt"
    rc, so, err = _run(["attack", "target", "--data", str(idx_root), "--target-arch", "b", "--out", str(out),
                        "--device", "cpu", "--quiet", "--set", "target_epochs=1", "--set", "val=40"], capsys)  # fmt: skip
    assert rc == 0 and json.loads(so)["target"] == str(out), err[-2000:]
    net, arch = load_target(out, "c", 0.0, 1.0)
    assert arch == "b" and not net.training
    sd_file, ts_file = tmp_path / "sd.pt", tmp_path / "ts.pt"
    torch.save(target_net("a").state_dict(), sd_file)
    torch.jit.script(target_net("c")).save(str(ts_file))
    assert load_target(sd_file, "a", 0.1307, 0.3081)[1] == "a" and load_target(ts_file, "c", 0, 1)[1] == "script"
    with pytest.raises(DataError, match="does not fit"):
        load_target(sd_file, "c", 0, 1)
    proj = str(tmp_path / "rb")
    rc, so, err = _run(["attack", "train", "--data", str(idx_root), "--target", str(out), "--project", proj,
                        "--json", *FAST, "--set", "epochs=1"], capsys)  # fmt: skip
    assert rc == 0, err[-2000:]
    out.unlink()  # a target file's weights travel inside the AdvGAN checkpoint: eval does not need the file
    model = json.loads(so)["run_dir"] + "/weights/best.pt"
    rc, so, err = _run(["attack", "eval", "--model", model, "--json", "--methods", "fgsm", *FAST[:2]], capsys)
    assert rc == 0, err[-2000:]
    rc, so, err = _run(["attack", "train", "--data", str(idx_root), "--target", str(ts_file), "--targeted",
                        "--project", str(tmp_path / "r"), "--json", *FAST, "--set", "epochs=1"], capsys)  # fmt: skip
    assert rc == 0, err[-2000:]
    assert 0 <= json.loads(so)["metrics"]["test/success"] <= 1


def test_blackbox_dynamic_counts_queries(idx_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc, so, err = _run(["attack", "train", "--data", str(idx_root), "--setting", "blackbox-dynamic", "--project",
                        str(tmp_path / "r"), "--json", *FAST, "--set", "rounds=2", "--set", "distill_epochs=1",
                        "--set", "surrogate_arch=c"],
                       capsys)  # fmt: skip
    assert rc == 0, err[-2000:]
    csv = (tmp_path / "r" / "attack" / "train" / "results.csv").read_text().splitlines()
    head = csv[0].split(",")
    q = [float(r.split(",")[head.index("train/queries")]) for r in csv[1:]]
    assert q == [160.0 + 320.0, 320.0]  # epoch 1: static f0 on x, then the update on x and x + G(x)


def test_paper_and_port_losses() -> None:
    """Paper: hinge is zero inside the L2 bound c; port: the C&W term is summed (scales with the batch)."""
    from mlkit.tasks.attack.loss import g_loss, perturb
    from mlkit.tasks.attack.model import Discriminator, Target, target_net

    torch.manual_seed(0)
    D_, f = Discriminator().eval(), Target(target_net("c")).eval()
    x = torch.rand(6, 1, 28, 28)
    raw = torch.tanh(torch.randn(6, 1, 28, 28)) * 0.01
    adv = perturb(raw, x, 0.3)
    y = f(x).argmax(1)
    base = {"targeted": False, "kappa": 0.0, "c": 3.0, "alpha": 1.0, "beta": 1.0}
    paper = g_loss({**base, "loss": "paper"}, D_, f, x, raw, adv, y)
    assert float(paper["norm"]) == 0.0 and float(paper["adv"]) > 0  # tiny perturbation: not yet adversarial
    port = g_loss({**base, "loss": "port"}, D_, f, x, raw, adv, y)
    port2 = g_loss({**base, "loss": "port"}, D_, f, x.repeat(2, 1, 1, 1), raw.repeat(2, 1, 1, 1),
                   adv.repeat(2, 1, 1, 1), y.repeat(2))  # fmt: skip
    assert torch.isclose(port2["adv"], 2 * port["adv"], rtol=1e-4)
