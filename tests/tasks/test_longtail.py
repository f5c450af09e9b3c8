"""longtail unit checks of spec §7 (LT counts, Bal-BCE bias and value, tau = 0, prior in the checkpoint), the MAE's
visible-token encoder, metrics groups, and the presets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mlkit.tasks.longtail import evaluation as E
from mlkit.tasks.longtail.data import lt_counts, lt_subset
from mlkit.tasks.longtail.loss import LongTailLoss, cb_weights, ldam_margins, sigmoid_bias, softmax_bias
from mlkit.tasks.longtail.model import MAE, build_vit, patchify, unpatchify


@pytest.mark.parametrize(("n_max", "c", "rho", "total"), [(5000, 10, 100, 12406), (5000, 10, 10, 20431),
                                                          (500, 100, 100, 10847), (500, 100, 10, 19573)])  # fmt: skip
def test_lt_counts_match_the_spec_totals(n_max: int, c: int, rho: float, total: int) -> None:
    counts = lt_counts(n_max, c, rho)
    assert sum(counts) == total and counts[0] == n_max and counts[-1] == int(n_max / rho)


def test_lt_counts_cifar10_rho100_profile_and_step() -> None:
    assert lt_counts(5000, 10, 100) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert lt_counts(400, 10, 50) == [400, 258, 167, 108, 70, 45, 29, 19, 12, 8]  # the spec's MNIST-LT recipe
    assert lt_counts(5000, 10, 10, "step") == [5000] * 5 + [500] * 5


def test_lt_subset_is_seeded_per_class_shuffle() -> None:
    labels = np.repeat(np.arange(3), 20)
    keep = lt_subset(labels, [20, 7, 2], seed=0)
    assert np.bincount(labels[keep]).tolist() == [20, 7, 2]
    rng = np.random.RandomState(0)  # the original's recipe: numpy seed, shuffle each class's indices in order
    want = []
    for c, n in enumerate([20, 7, 2]):
        idx = np.where(labels == c)[0]
        rng.shuffle(idx)
        want += idx[:n].tolist()
    assert keep.tolist() == sorted(want)
    assert lt_subset(labels, [20, 7, 2], seed=1).tolist() != keep.tolist()


def test_uniform_prior_gives_a_class_constant_bias_not_zero() -> None:
    c = 7
    bias = sigmoid_bias(torch.full((c,), 30.0))
    assert torch.allclose(bias, torch.full((c,), -math.log(c - 1)), atol=1e-6)
    assert torch.allclose(softmax_bias(torch.full((c,), 30.0)), torch.full((c,), -math.log(c)), atol=1e-6)


def test_bal_bce_against_a_hand_computation() -> None:
    counts = torch.tensor([50.0, 30.0, 15.0, 5.0])
    z = torch.tensor([[1.0, -0.5, 0.2, 2.0], [-1.0, 0.3, 0.0, -2.0]])
    y = torch.tensor([[0.9, 0.05, 0.025, 0.025], [0.0, 0.0, 0.0, 1.0]])
    tau = 1.3
    pi = counts.double().numpy() / 100.0
    total = 0.0
    for i in range(2):
        for j in range(4):
            zt = float(z[i, j]) + tau * (math.log(pi[j]) - math.log(1 - pi[j]))
            p = 1 / (1 + math.exp(-zt))
            total += -(float(y[i, j]) * math.log(p) + (1 - float(y[i, j])) * math.log(1 - p))
    want = total / 2  # C * mean over (batch, classes) = per-sample sum over classes, averaged over the batch
    got = LongTailLoss("bal_bce", counts, tau=tau)(z, y)
    assert math.isclose(float(got), want, rel_tol=1e-5)


def test_tau_zero_is_plain_bce_times_c_and_bal_ce_is_logit_adjusted_ce() -> None:
    counts = torch.tensor([100.0, 10.0, 1.0])
    z, y = torch.randn(5, 3), torch.softmax(torch.randn(5, 3), 1)
    plain = F.binary_cross_entropy_with_logits(z, y) * 3
    assert torch.allclose(LongTailLoss("bal_bce", counts, tau=0.0)(z, y), plain)
    assert torch.allclose(LongTailLoss("bce", counts)(z, y), plain)
    adj = z + torch.log(counts / counts.sum())
    assert torch.allclose(
        LongTailLoss("bal_ce", counts)(z, y), -(y * F.log_softmax(adj, 1)).sum(1).mean(), atol=1e-6
    )
    assert not torch.allclose(LongTailLoss("bal_bce", counts)(z, y), plain)


def test_cb_weights_and_ldam_margins() -> None:
    counts = torch.tensor([1000.0, 100.0, 10.0])
    w = cb_weights(counts, 0.9999)
    assert math.isclose(float(w.sum()), 3.0, rel_tol=1e-5) and w[0] < w[1] < w[2]
    m = ldam_margins(counts)
    assert math.isclose(float(m.max()), 0.5, rel_tol=1e-6) and m[0] < m[2]
    for name in ("cb_ce", "cb_bce", "ldam"):
        loss = LongTailLoss(name, counts)(torch.randn(4, 3, requires_grad=True), torch.eye(3)[[0, 1, 2, 2]])
        assert torch.isfinite(loss) and loss.requires_grad


def test_inference_scores_use_plain_logits() -> None:
    z = torch.randn(6, 4)
    counts = np.array([100, 50, 10, 2])
    assert torch.allclose(E.scores(z, "bal_bce", counts), torch.sigmoid(z))
    assert torch.allclose(E.scores(z, "bal_ce", counts), torch.softmax(z, 1))
    adjusted = E.scores(z, "ce", counts, posthoc_tau=1.0)
    assert torch.allclose(
        adjusted, torch.softmax(z - torch.log(torch.tensor(counts / counts.sum())).float(), 1)
    )


def test_groups_thresholds_and_empty_groups_are_left_out() -> None:
    g = E.groups(np.array([5000, 101, 100, 20, 19, 1]))
    assert g["many"].tolist() == [0, 1] and g["medium"].tolist() == [2, 3] and g["few"].tolist() == [4, 5]
    assert "few" not in E.groups(np.array(lt_counts(5000, 10, 100)))  # CIFAR-10 rho 100 has no few class
    prob = torch.eye(3)[[0, 1, 1]]
    m = E.metrics(prob, np.array([0, 1, 2]), np.array([500, 50, 50]))
    assert m["test/acc"] == pytest.approx(2 / 3) and m["test/many"] == 1.0 and m["test/medium"] == 0.5
    assert "test/few" not in m


def test_mae_encoder_sees_only_the_visible_quarter() -> None:
    torch.manual_seed(0)
    mae = MAE(build_vit("lt-tiny", 16, 0), 32, 1, 4, 0.75)
    seen = []
    mae.encoder.blocks[0].register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape))
    x = torch.randn(3, 3, 16, 16)
    loss, pred, mask = mae(x)
    assert seen == [torch.Size([3, 1 + 4, 64])]  # cls + 25 % of 16 patch tokens
    assert pred.shape == (3, 16, 48) and mask.sum(1).tolist() == [12.0] * 3
    loss.backward()
    assert mae.encoder.pos_embed.grad is None and mae.encoder.patch_embed.proj.weight.grad is not None
    assert torch.equal(unpatchify(patchify(x, 4), 4), x)


def test_mae_loss_counts_masked_patches_only() -> None:
    torch.manual_seed(0)
    mae = MAE(build_vit("lt-tiny", 8, 0), 16, 1, 2, 0.5, norm_pix=False)
    x = torch.randn(2, 3, 8, 8)
    target = patchify(x, 4)
    mask = torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 0]])
    pred = target.clone()
    pred[mask == 0] += 5.0  # errors on visible patches only: the loss ignores them
    assert float(mae.loss(x, pred, mask)) == pytest.approx(0.0, abs=1e-6)


def test_paper_preset_fills_unset_keys_only(capsys: pytest.CaptureFixture) -> None:
    import json

    from mlkit.cli import main

    assert (
        main(["longtail", "train", "--preset", "paper", "--epochs", "7", "--check", "--device", "cpu"]) == 0
    )
    cfg = json.loads(capsys.readouterr().out)["config"]
    assert cfg["arch"] == "vit-base" and cfg["input_size"] == 224 and cfg["epochs"] == 7
    assert cfg["aug"]["randaug"] == "rand-m9-mstd0.5-inc1" and cfg["mixup"] == 0.8 and cfg["cutmix"] == 1.0
    assert cfg["mgp"]["epochs"] == 800 and cfg["mgp"]["decoder_depth"] == 8 and cfg["layer_decay"] == 0.75
    assert main(["longtail", "pretrain", "--check", "--device", "cpu", "--mgp-epochs", "3"]) == 0
    cfg = json.loads(capsys.readouterr().out)["config"]
    assert cfg["stage"] == "pretrain" and cfg["epochs"] == 3 and cfg["lr"] == cfg["mgp"]["lr"]
    assert main(["longtail", "train", "--loss", "focal", "--check"]) == 2
