"""mlkit.kernels.mae_mask: the batched torch masking / unshuffle against the per-sample NumPy reference (Hypothesis),
and the invariants MGP relies on (K = N (1 - ratio) kept tokens, a permutation, autograd through the gathers)."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlkit.kernels.mae_mask import keep_count, random_masking, random_masking_ref, unshuffle, unshuffle_ref

shapes = st.tuples(st.integers(1, 5), st.integers(1, 40), st.integers(1, 6))
ratios = st.sampled_from([0.0, 0.25, 0.5, 0.75, 0.9, 0.95])


@settings(max_examples=60, deadline=None)
@given(shape=shapes, ratio=ratios, seed=st.integers(0, 2**31 - 1), ties=st.booleans())
def test_masking_matches_reference(shape: tuple[int, int, int], ratio: float, seed: int, ties: bool) -> None:
    b, n, d = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((b, n, d)).astype(np.float32)
    noise = rng.integers(0, 3, (b, n)).astype(np.float32) if ties else rng.random((b, n)).astype(np.float32)
    vis, mask, restore, keep = random_masking(torch.from_numpy(x), ratio, torch.from_numpy(noise))
    rvis, rmask, rrestore = random_masking_ref(x, noise, ratio)
    k = keep_count(n, ratio)
    assert vis.shape == (b, k, d) and keep.shape == (b, k)
    np.testing.assert_array_equal(vis.numpy(), rvis)
    np.testing.assert_array_equal(mask.numpy(), rmask)
    np.testing.assert_array_equal(restore.numpy(), rrestore)
    assert (mask.sum(1) == n - k).all()
    token = rng.standard_normal((1, 1, d)).astype(np.float32)
    full = unshuffle(vis, torch.from_numpy(token), restore)
    np.testing.assert_array_equal(full.numpy(), unshuffle_ref(rvis, token, rrestore))
    kept = mask.numpy() == 0
    np.testing.assert_array_equal(full.numpy()[kept], x[kept])  # visible tokens return to their own slots


def test_gradients_reach_only_the_visible_tokens() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 16, 8, requires_grad=True)
    vis, mask, restore, _ = random_masking(x, 0.75)
    token = torch.zeros(1, 1, 8, requires_grad=True)
    unshuffle(vis, token, restore).sum().backward()
    used = x.grad.abs().sum(-1) > 0
    assert torch.equal(used, mask == 0) and float(token.grad.abs().sum()) > 0


def test_keep_count_rounding() -> None:
    assert keep_count(196, 0.75) == 49 and keep_count(49, 0.75) == 12 and keep_count(16, 0.75) == 4
    assert keep_count(3, 0.99) == 1
