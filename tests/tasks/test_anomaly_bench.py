"""anomaly kernel benchmark at tiny sizes (opt-in: -m bench): every candidate agrees with its baseline."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


@pytest.mark.bench
def test_anomaly_kernel_benchmark_small():
    path = Path(__file__).parents[2] / "benchmarks" / "anomaly_kernels.py"
    spec = importlib.util.spec_from_file_location("anomaly_kernels", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = mod.bench(small=True, repeat=1)
    assert {r["kernel"] for r in rows} == {"fps", "coreset", "knn"}
    assert all(r["agree"] for r in rows), rows
    fps_numba = next(r for r in rows if r["kernel"] == "fps" and r["candidate"] == "numba")
    assert fps_numba["speedup"] > 1.0
