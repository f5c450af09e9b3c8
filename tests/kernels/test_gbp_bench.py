"""The GBP precompute benchmark runs end to end at a tiny size (opt-in: -m bench)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench
BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "gbp_precompute.py"


def test_benchmark_tiny(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("gbp_bench", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = mod.main(
        [
            "--sizes",
            "3000",
            "6000",
            "--root",
            str(tmp_path),
            "--features",
            "4",
            "--targets",
            "100",
            "--walks",
            "200",
            "--rmax-bidir",
            "1e-5",
            "--rmax-push",
            "1e-5",
            "--exact-tol",
            "0.1",
            "--ref-tol",
            "1e-3",
            "--thread-compare",
        ]
    )
    out = capsys.readouterr().out
    assert "growth 3,000 -> 6,000" in out and "push speed-up" in out
    bidir = [r for r in rows if r["method"] == "bidirectional"]
    assert len(bidir) == 2 and all(r["error"] < 0.1 for r in bidir)
    push = [r for r in rows if r["method"].startswith("push")]
    assert all(r["error"] < 0.2 and r["peak_rss_gb"] > 0 for r in push)
