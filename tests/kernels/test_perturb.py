"""perturb kernels: torch projections and the C&W margin against their NumPy references (hypothesis), and the
attacks' guarantees (every x' in [0, 1] and inside its eps-ball; PGD at least as strong as FGSM on a linear model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlkit.kernels.perturb import (
    cw_l2,
    cw_margin,
    cw_margin_ref,
    fgsm,
    pgd,
    project_l2,
    project_l2_ref,
    project_linf,
    project_linf_ref,
)

shapes = st.tuples(st.integers(1, 5), st.integers(1, 3), st.integers(1, 6), st.integers(1, 6))


@settings(max_examples=60, deadline=None)
@given(shape=shapes, eps=st.floats(0.0, 1.5), seed=st.integers(0, 2**31 - 1), scale=st.floats(0.01, 5.0))
def test_projections_match_reference(shape, eps, seed, scale) -> None:
    rng = np.random.default_rng(seed)
    x0 = rng.random(shape).astype(np.float32)
    x = (x0 + rng.normal(0, scale, shape)).astype(np.float32)
    a = project_linf(torch.from_numpy(x0), torch.from_numpy(x), eps).numpy()
    np.testing.assert_allclose(a, project_linf_ref(x0, x, eps), atol=1e-6)
    assert a.min() >= 0 and a.max() <= 1 and np.abs(a - x0).max() <= eps + 1e-6
    b = project_l2(torch.from_numpy(x0), torch.from_numpy(x), eps).numpy()
    np.testing.assert_allclose(b, project_l2_ref(x0, x, eps), atol=1e-5)
    assert b.min() >= 0 and b.max() <= 1
    assert np.sqrt(((b - x0) ** 2).reshape(len(b), -1).sum(1)).max() <= eps + 1e-4


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 8), k=st.integers(2, 12), seed=st.integers(0, 2**31 - 1), targeted=st.booleans(),
       kappa=st.floats(0.0, 3.0))  # fmt: skip
def test_cw_margin_matches_reference(n, k, seed, targeted, kappa) -> None:
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, (n, k)).astype(np.float32)
    lab = rng.integers(0, k, n)
    got = cw_margin(torch.from_numpy(z), torch.from_numpy(lab), targeted, kappa).numpy()
    np.testing.assert_allclose(got, cw_margin_ref(z, lab, targeted, kappa), atol=1e-5)


@pytest.mark.parametrize("targeted", [False, True])
def test_attacks_stay_in_box_and_ball(targeted) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4))
    x = torch.rand(12, 1, 4, 4)
    y = torch.randint(0, 4, (12,))
    for adv, eps, norm in ((fgsm(model, x, y, 0.1, targeted), 0.1, "linf"),
                           (pgd(model, x, y, 0.1, 10, None, "linf", targeted), 0.1, "linf"),
                           (pgd(model, x, y, 0.5, 10, None, "l2", targeted), 0.5, "l2")):  # fmt: skip
        d = (adv - x).flatten(1)
        size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
        assert adv.min() >= 0 and adv.max() <= 1 and float(size.max()) <= eps + 1e-5
    adv = cw_l2(model, x, y, c=10.0, steps=50, lr=0.05, targeted=targeted)
    assert adv.min() >= 0 and adv.max() <= 1


def test_pgd_at_least_as_strong_as_fgsm() -> None:
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 5))
    x = torch.rand(64, 1, 8, 8)
    y = model(x).argmax(1)
    f = (model(fgsm(model, x, y, 0.05)).argmax(1) != y).float().mean()
    p = (model(pgd(model, x, y, 0.05, 20)).argmax(1) != y).float().mean()
    assert p >= f and p > 0
