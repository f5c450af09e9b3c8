"""Benchmark the anomaly hot spots against plain references in the same run: FPS, greedy coreset, kNN scoring.

    python benchmarks/anomaly_kernels.py                  # paper-like sizes (many minutes on 2 shared cores)
    python benchmarks/anomaly_kernels.py --size medium    # a minute or two
    python benchmarks/anomaly_kernels.py --small          # seconds
    python benchmarks/anomaly_kernels.py --only knn       # kNN scoring vs the bare GEMM, d = 384 and 1152
    python benchmarks/anomaly_kernels.py --only kcenter --baseline-steps 300   # 100k x 1152 -> 10%
Prints a table (stderr) and one JSON object (stdout) with times and speed-ups.

kcenter: PatchCore's k-center greedy as anomalib runs it, re-stated in plain torch (anomalib is never imported):
a sparse random projection to the Johnson-Lindenstrauss width (eps 0.9), a random start, then per pick one
full-bank `pairwise_distance`, a running minimum and an argmax. Ours (`coreset_torch`) gets the same projected
rows and start and must return the same picks. The baseline's cost per pick is the same at every pick, so
`--baseline-steps S` times its first S picks and scales to all of them (printed as extrapolated); ours runs all.
knn: interleaved repeats of the bare `q @ m.T` and of the scoring paths; the fraction of the GEMM rate is
t_gemm / t_path (CPU seconds, median).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from mlkit.kernels.coreset import coreset_reference, coreset_torch, jl_dim
from mlkit.kernels.fps import fps_numba, fps_reference, fps_torch
from mlkit.kernels.knn import knn_reference, knn_torch, nn_distance


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


def sparse_projection(x: torch.Tensor, eps: float = 0.9, seed: int = 0) -> torch.Tensor:
    """Achlioptas/Li sparse random projection as anomalib's SparseRandomProjection applies it (re-stated):
    width = JL bound for len(x) rows at `eps`, density 1/sqrt(d), entries +-1/sqrt(density * width)."""
    g = torch.Generator().manual_seed(seed)
    d, width = x.shape[1], jl_dim(len(x), eps)
    density = 1 / math.sqrt(d)
    keep = torch.rand(width, d, generator=g) < density
    sign = torch.where(torch.rand(width, d, generator=g) < 0.5, -1.0, 1.0)
    r = keep * sign / math.sqrt(density * width)
    return x @ r.T


def kcenter_full_bank(x: torch.Tensor, n: int, start: int, steps: int | None = None) -> list[int]:
    """anomalib's greedy loop re-stated: per pick one full-bank pairwise distance (eps 1e-6, torch's default),
    a running minimum, argmax, zero the pick. The start row is not among the n picks (as there)."""
    dmin, picks, idx = None, [], start
    for _ in range(n if steps is None else min(n, steps)):
        d = torch.nn.functional.pairwise_distance(x, x[idx][None]).reshape(-1, 1)
        dmin = d if dmin is None else torch.minimum(dmin, d)
        idx = int(torch.argmax(dmin).item())
        dmin[idx] = 0
        picks.append(idx)
    return picks


def bench_kcenter(rows_: int, dim: int, ratio: float, baseline_steps: int | None, seed: int = 0) -> dict:
    """Baseline (extrapolated from its first steps when asked) and ours on the same projected rows and start."""
    rng = np.random.default_rng(seed)
    # patch-feature-like rows: a few hundred cluster centres, heavy-tailed spread (not an i.i.d. Gaussian cloud)
    centres = rng.normal(size=(300, dim)).astype(np.float32)
    x = centres[rng.integers(0, 300, rows_)] + rng.standard_t(4, size=(rows_, dim)).astype(np.float32) * 0.5
    t0 = time.process_time()
    z = sparse_projection(torch.from_numpy(x), 0.9, seed)
    t_proj = time.process_time() - t0
    del x
    n = int(rows_ * ratio)
    start = int(torch.randint(rows_, (1,), generator=torch.Generator().manual_seed(seed)).item())
    c0, w0 = time.process_time(), time.perf_counter()
    ours = coreset_torch(z, n + 1, start=start, eps=1e-6)[1:].tolist()
    c_ours, w_ours = time.process_time() - c0, time.perf_counter() - w0
    steps = n if baseline_steps is None else min(n, baseline_steps)
    c0, w0 = time.process_time(), time.perf_counter()
    base = kcenter_full_bank(z, n, start, steps)
    c_base, w_base = time.process_time() - c0, time.perf_counter() - w0
    scale = n / steps
    return {"rows": rows_, "dim": dim, "proj_dim": int(z.shape[1]), "picks": n, "start": start,
            "projection_cpu_s": t_proj, "ours_cpu_s": c_ours, "ours_wall_s": w_ours,
            "baseline_steps_timed": steps, "baseline_cpu_s": c_base * scale, "baseline_wall_s": w_base * scale,
            "baseline_extrapolated": steps < n, "speedup_cpu": c_base * scale / c_ours,
            "speedup_wall": w_base * scale / w_ours, "same_picks_checked": steps,
            "same_picks": ours[:steps] == base}  # fmt: skip


def bench_knn_rate(
    dims: tuple[int, ...] = (384, 1152), q: int = 3136, m: int = 10000, repeat: int = 5
) -> list:
    """CPU seconds (median of interleaved repeats) of the bare GEMM and of the two scoring paths."""
    out = []
    for d in dims:
        g = torch.Generator().manual_seed(d)
        qs, bank = torch.randn(q, d, generator=g), torch.randn(m, d, generator=g)
        fns = {"gemm q@m.T": lambda qs=qs, bank=bank: qs @ bank.T,
               "knn_torch k=1 (+index)": lambda qs=qs, bank=bank: knn_torch(qs, bank, 1),
               "nn_distance (scoring)": lambda qs=qs, bank=bank: nn_distance(qs, bank)}  # fmt: skip
        times: dict[str, list[float]] = {k: [] for k in fns}
        for f in fns.values():
            f()
        for _ in range(repeat):
            for k, f in fns.items():
                t = time.process_time()
                f()
                times[k].append(time.process_time() - t)
        med = {k: float(np.median(v)) for k, v in times.items()}
        for k in list(fns)[1:]:
            out.append({"d": d, "Q": q, "M": m, "path": k, "cpu_s": med[k], "gemm_cpu_s": med["gemm q@m.T"],
                        "fraction_of_gemm_rate": med["gemm q@m.T"] / med[k]})  # fmt: skip
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
    ap.add_argument("--only", choices=("knn", "kcenter"), help="only the kNN-rate or the k-center comparison")
    ap.add_argument("--rows", type=int, default=100_000, help="kcenter: bank rows")
    ap.add_argument("--dim", type=int, default=1152, help="kcenter: feature width before projection")
    ap.add_argument("--ratio", type=float, default=0.1, help="kcenter: coreset fraction")
    ap.add_argument("--baseline-steps", type=int, default=None, help="kcenter: time this many baseline picks")
    args = ap.parse_args(argv)
    if args.only == "knn":
        rows = bench_knn_rate(repeat=args.repeat)
        for r in rows:
            print(f"kNN d={r['d']}: {r['path']}: {r['cpu_s']:.3f} CPU s, GEMM {r['gemm_cpu_s']:.3f} CPU s -> "
                  f"{100 * r['fraction_of_gemm_rate']:.0f}% of the GEMM rate", file=sys.stderr)  # fmt: skip
        print(json.dumps({"knn_rate": rows}))
        return 0
    if args.only == "kcenter":
        r = bench_kcenter(args.rows, args.dim, args.ratio, args.baseline_steps)
        extra = (
            f" (extrapolated from {r['baseline_steps_timed']} picks)" if r["baseline_extrapolated"] else ""
        )
        print(f"k-center {r['rows']} x {r['dim']} -> {r['picks']} (projected to {r['proj_dim']}): ours "
              f"{r['ours_cpu_s']:.1f} CPU s, anomalib-style {r['baseline_cpu_s']:.1f} CPU s{extra}"
              f" -> {r['speedup_cpu']:.1f}x; same picks: {r['same_picks']}", file=sys.stderr)  # fmt: skip
        print(json.dumps({"kcenter": r}))
        return 0
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
