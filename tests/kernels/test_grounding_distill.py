"""grounding's hot spot: batched distillation (gathers, no Python loop) against the original's per-element loop and
a NumPy reference (hypothesis); IoU (+0.001 sides) torch vs NumPy and on known boxes; IoU neighbour tables."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlkit.kernels.grounding_distill import (
    box_iou,
    box_iou_np,
    distill_batched,
    distill_loop,
    distill_ref_np,
    iou_neighbours,  # fmt: skip
    soft_distill,
    teacher_column,
)


def test_iou_known_boxes() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    iou = box_iou_np(a, b)
    assert iou[0, 0] == pytest.approx(1.0)
    assert iou[1, 1] == pytest.approx(5.001 * 10.001 / (2 * 10.001 * 10.001 - 5.001 * 10.001), abs=1e-9)
    assert iou[1, 1] == pytest.approx(1 / 3, abs=1e-3) and iou[2, 2] == 0.0


def _boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    xy = rng.uniform(0, 50, (n, 2))
    return np.c_[xy, xy + rng.uniform(1, 40, (n, 2))].astype(np.float32)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(0, 10_000))
def test_iou_torch_matches_numpy(n: int, m: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = _boxes(rng, n), _boxes(rng, m)
    np.testing.assert_allclose(box_iou(a, b).numpy(), box_iou_np(a, b), atol=1e-9)


def _case(seed: int, b: int, p: int, r: int, k: int, c: int):
    rng = np.random.default_rng(seed)
    rmask = rng.random((b, r)) < 0.8
    rmask[:, 0] = True
    boxes = np.stack([_boxes(rng, r) for _ in range(b)])
    neigh = np.stack([iou_neighbours(boxes[i], rmask[i], k) for i in range(b)])
    s = rng.uniform(-1, 1, (b, p, r)).astype(np.float32)
    det = rng.dirichlet(np.ones(c + 1), (b, r)).astype(np.float32)
    cls = rng.integers(-1, c + 1, (b, p))
    cls[cls == 0] = 1
    valid = (cls >= 1) & (rng.random((b, p)) < 0.8)
    return s, rmask, neigh, det, cls, valid


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 5), st.integers(1, 4), st.integers(2, 12), st.integers(1, 8),
       st.sampled_from([0.5, 1.0, 2.0]))  # fmt: skip
def test_batched_matches_loop_and_numpy(seed: int, b: int, p: int, r: int, k: int, temp: float) -> None:
    s, rmask, neigh, det, cls, valid = _case(seed, b, p, r, k, 3)
    ts = torch.tensor(s, requires_grad=True)
    tcol = teacher_column(torch.from_numpy(det), torch.from_numpy(cls))
    args = (torch.from_numpy(rmask), torch.from_numpy(neigh).long(), tcol, torch.from_numpy(valid), temp)
    fast, n1 = distill_batched(ts, *args)
    ts2 = torch.tensor(s, requires_grad=True)
    slow, n2 = distill_loop(ts2, *args)
    assert n1 == n2 == int(valid.sum())
    ref = distill_ref_np(s, rmask, neigh, tcol.numpy(), valid, temp)
    assert float(fast.detach()) == pytest.approx(ref, abs=1e-5) and float(slow.detach()) == pytest.approx(
        ref, abs=1e-5
    )
    if n1:
        fast.backward()
        slow.backward()
        np.testing.assert_allclose(ts.grad.numpy(), ts2.grad.numpy(), atol=1e-6)


def test_masked_padded_regions_never_win() -> None:
    s, rmask, neigh, det, cls, valid = _case(3, 4, 3, 10, 4, 3)
    s[~np.broadcast_to(rmask[:, None], s.shape)] = 5.0  # padded regions score highest
    tcol = teacher_column(torch.from_numpy(det), torch.from_numpy(cls))
    loss, _ = distill_batched(torch.from_numpy(s), torch.from_numpy(rmask), torch.from_numpy(neigh).long(), tcol,
                              torch.from_numpy(valid))  # fmt: skip
    assert np.isfinite(float(loss))
    assert float(loss) == pytest.approx(distill_ref_np(s, rmask, neigh, tcol.numpy(), valid), abs=1e-5)
    for i in range(4):
        assert rmask[i][neigh[i][rmask[i]][:, 0]].all()  # neighbour tables only hold valid regions
        assert (neigh[i][~rmask[i]] == -1).all()


def test_neighbours_self_first_then_by_iou() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [5, 5, 15, 15], [50, 50, 60, 60]], np.float32)
    nb = iou_neighbours(boxes, np.ones(4, bool), 3)
    assert nb[0].tolist() == [0, 1, 2] and nb[3, 0] == 3


def test_soft_distill_is_finite_and_uses_valid_regions() -> None:
    s, rmask, _, det, _, valid = _case(5, 3, 2, 8, 4, 6)
    sidx = torch.randint(1, 7, (3, 2, 5))
    sw = torch.softmax(torch.randn(3, 2, 5), -1)
    loss, n = soft_distill(torch.from_numpy(s), torch.from_numpy(rmask), torch.from_numpy(det), sidx, sw,
                           torch.from_numpy(valid))  # fmt: skip
    assert n == int(valid.sum()) and np.isfinite(float(loss))


@pytest.mark.gpu
def test_batched_on_cuda_matches_cpu() -> None:
    s, rmask, neigh, det, cls, valid = _case(7, 8, 4, 20, 8, 5)
    tcol = teacher_column(torch.from_numpy(det), torch.from_numpy(cls))
    args = [
        torch.from_numpy(s),
        torch.from_numpy(rmask),
        torch.from_numpy(neigh).long(),
        tcol,
        torch.from_numpy(valid),
    ]
    cpu, _ = distill_batched(*args)
    gpu, _ = distill_batched(*[a.cuda() for a in args])
    assert float(gpu) == pytest.approx(float(cpu), abs=1e-5)
