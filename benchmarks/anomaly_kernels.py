"""Benchmark the anomaly hot spots against plain references in the same run: FPS, greedy coreset, kNN scoring.

    python benchmarks/anomaly_kernels.py                  # paper-like sizes (many minutes on 2 shared cores)
    python benchmarks/anomaly_kernels.py --size medium    # a minute or two
    python benchmarks/anomaly_kernels.py --small          # seconds
Prints a table (stderr) and one JSON object (stdout) with times and speed-ups. anomalib's PatchCore k-center
greedy is timed too when anomalib is importable.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from mlkit.kernels.coreset import coreset_reference, coreset_torch
from mlkit.kernels.fps import fps_numba, fps_reference, fps_torch
from mlkit.kernels.knn import knn_reference, knn_torch


def timeit(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """Best wall time of `repeat` calls (after one warm-up call) and the last result."""
    out = fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _numpy_f32_coreset(x: np.ndarray, n: int) -> np.ndarray:
    """The same greedy loop as the reference in float32 (a fair-dtype baseline)."""
    out = np.empty(n, dtype=np.int64)
    dmin = np.full(len(x), np.inf, dtype=np.float32)
    last = 0
    for i in range(n):
        out[i] = last
        dmin = np.minimum(dmin, np.sqrt(((x - x[last]) ** 2).sum(axis=1)))
        dmin[last] = 0
        last = int(np.argmax(dmin))
    return out


def bench(small: bool = False, repeat: int = 3, size: str = "paper") -> list[dict[str, Any]]:
    """Run every comparison; each row: kernel, size, candidate, baseline, seconds, speed-up, agreement."""
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []

    def row(kernel: str, size: str, cand: str, t_c: float, base: str, t_b: float, agree: bool) -> None:
        rows.append({"kernel": kernel, "size": size, "candidate": cand, "seconds": t_c, "baseline": base,
                     "baseline_seconds": t_b, "speedup": t_b / t_c, "agree": bool(agree)})  # fmt: skip

    # FPS: N valid points of a 224^2 cloud, G centres
    n, g = (3000, 128) if small else (30000, 1024)
    pts = rng.normal(size=(n, 3))
    t_ref, ref = timeit(lambda: fps_reference(pts, g), 1)
    t_nb, got = timeit(lambda: fps_numba(pts, g), repeat)
    row("fps", f"N={n} G={g}", "numba", t_nb, "numpy loop", t_ref, np.array_equal(got, ref))
    tp = torch.from_numpy(pts)
    t_tc, got_t = timeit(lambda: fps_torch(tp, g), 1)
    row("fps", f"N={n} G={g}", "torch cpu", t_tc, "numpy loop", t_ref, np.array_equal(got_t.numpy(), ref))

    # greedy coreset on projected features
    n, d, k = (5000, 64, 200) if small else ((20000, 128, 1000) if size == "medium" else (100000, 128, 2000))
    x = rng.normal(size=(n, d)).astype(np.float32)
    t_ref, ref = timeit(lambda: coreset_reference(x, k), 1)
    xt = torch.from_numpy(x)
    t_c, got = timeit(lambda: coreset_torch(xt, k), 1)
    agree = np.mean(got.numpy() == ref) > 0.95  # float32 vs float64 may break late near-ties differently
    row("coreset", f"N={n} d={d} k={k}", "torch cpu f32", t_c, "numpy f64 loop", t_ref, agree)
    t_32, got32 = timeit(lambda: _numpy_f32_coreset(x, k), 1)
    row(
        "coreset",
        f"N={n} d={d} k={k}",
        "torch cpu f32",
        t_c,
        "numpy f32 loop",
        t_32,
        np.mean(got32 == ref) > 0.95,
    )
    try:
        from anomalib.models.components.sampling import KCenterGreedy

        sampler = KCenterGreedy(embedding=xt, sampling_ratio=k / n)
        t_a, _ = timeit(lambda: sampler.select_coreset_idxs(), 1)
        row("coreset", f"N={n} d={d} k={k}", "torch cpu f32", t_c, "anomalib KCenterGreedy", t_a, True)
    except Exception as exc:  # noqa: BLE001 - anomalib is optional
        print(f"anomalib k-center not timed: {type(exc).__name__}: {exc}", file=sys.stderr)

    # kNN scoring: one test image's patches against a capped bank
    for q, m, d in ((3136, 2000, 33),) if small else ((3136, 10000, 33), (3136, 10000, 384)):
        bank = rng.normal(size=(m, d)).astype(np.float32)
        qs = rng.normal(size=(q, d)).astype(np.float32)
        t_ref, (rd, _) = timeit(lambda qs=qs, bank=bank: knn_reference(qs, bank, 1), 1)
        bt, qt = torch.from_numpy(bank), torch.from_numpy(qs)
        t_k, (kd, _) = timeit(lambda qt=qt, bt=bt: knn_torch(qt, bt, 1), repeat)
        row("knn", f"Q={q} M={m} d={d}", "torch matmul", t_k, "scipy cKDTree", t_ref,
            np.allclose(kd.numpy(), rd, atol=1e-3))  # fmt: skip
    return rows


def bench_extraction(root: str, n: int = 8) -> dict[str, float]:
    """Default extractors (handcrafted RGB + FPFH) on the first n train samples of a category: wall and CPU s/sample."""
    from importlib import resources
    from pathlib import Path

    import yaml

    from mlkit.tasks.anomaly.data import load, split_samples
    from mlkit.tasks.anomaly.features import Extractor

    cfg = yaml.safe_load(resources.files("mlkit.tasks.anomaly").joinpath("config.yaml").read_text())
    ext = Extractor(cfg)
    samples = split_samples(Path(root), "train")[:n]
    ext(load(samples[0]))  # warm-up: imports and Numba cache loads
    w, c = time.perf_counter(), time.process_time()
    for s in samples:
        ext(load(s))
    return {"samples": len(samples), "wall_s": (time.perf_counter() - w) / len(samples),
            "cpu_s": (time.process_time() - c) / len(samples)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="tiny sizes (seconds)")
    ap.add_argument("--size", choices=("medium", "paper"), default="paper", help="coreset problem size")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--extract", metavar="CATEGORY_DIR", help="only time feature extraction on this category folder"
    )
    args = ap.parse_args(argv)
    if args.extract:
        print(json.dumps({"extraction": bench_extraction(args.extract)}))
        return 0
    rows = bench(args.small, args.repeat, args.size)
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"anomaly kernels (torch threads {torch.get_num_threads()})")
    for c in ("kernel", "size", "candidate", "s", "baseline", "baseline s", "speed-up", "agree"):
        t.add_column(c)
    for r in rows:
        t.add_row(r["kernel"], r["size"], r["candidate"], f"{r['seconds']:.4f}", r["baseline"],
                  f"{r['baseline_seconds']:.4f}", f"{r['speedup']:.1f}x", str(r["agree"]))  # fmt: skip
    Console(stderr=True).print(t)
    print(json.dumps({"rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
