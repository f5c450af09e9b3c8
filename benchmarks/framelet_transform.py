"""Framelet transform benchmark: matrix-free (Numba Chebyshev recurrence) vs materialized (stacked sparse blocks)
vs a SciPy implementation that forms every W the way the original code does (all r*Lev blocks by sparse x sparse
products, one stacked COO matrix), on Cora and on power-law (Chung-Lu) graphs, in one run.

Reports per graph and method: build time, apply time (decomposition + reconstruction of an N x F signal), operator
memory, and for the matrix-free kernel the achieved bandwidth of one fused Chebyshev step (compulsory traffic:
CSR arrays + the dense operands read/written once) against a STREAM-like copy measured in the same process.

    python benchmarks/framelet_transform.py                              # Cora + 1e5, 3e5, 1e6 nodes
    python benchmarks/framelet_transform.py --sizes 100000 --width 16 --json out.json
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlkit.kernels.framelet import _cheb_step, framelet_decompose_numba, framelet_reconstruct_numba  # noqa: E402
from mlkit.kernels.spmm import spmm_numba  # noqa: E402
from mlkit.tasks.framelet import framelets as F  # noqa: E402

CORA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "planetoid"


def copy_bandwidth(mb: int = 512, repeats: int = 5) -> float:
    """STREAM-like copy: best GB/s of dst[:] = src over `mb` MB (counts read + write)."""
    src = np.ones(mb * 2**20 // 8)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t)
    return 2 * src.nbytes / best / 1e9


def chung_lu(n: int, degree: float, exponent: float, seed: int) -> sp.csr_matrix:
    """Power-law graph: endpoints drawn proportional to Pareto weights (degree exponent ~ `exponent`)."""
    rng = np.random.default_rng(seed)
    w = rng.pareto(exponent - 1.0, n) + 1.0
    w = np.minimum(w, np.sqrt(w.sum()))  # cap hubs at sqrt(sum w) (the Chung-Lu condition)
    p = w / w.sum()
    m = int(n * degree / 2)
    u = rng.choice(n, m, p=p)
    v = rng.choice(n, m, p=p)
    keep = u != v
    u, v = u[keep], v[keep]
    a = sp.csr_matrix((np.ones(2 * u.size, np.float32), (np.r_[u, v], np.r_[v, u])), shape=(n, n))
    a.sum_duplicates()
    a.data[:] = 1
    return a


def timed(fn, repeats: int = 3):  # noqa: ANN001, ANN201
    """(best seconds, result) over `repeats` calls, plus tracemalloc peak bytes of the first call."""
    tracemalloc.start()
    t = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    best = first
    for _ in range(repeats - 1):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out, peak


def original_levels(a_hat: sp.csr_matrix, coef: np.ndarray, alphas: list[float]) -> list[sp.csr_matrix]:
    """All r*Lev blocks W_{j,l} (intermediate low-pass included) by sparse products, the original's way, in block
    order j*Lev + l."""
    n = a_hat.shape[0]
    r, nc = coef.shape
    eye = sp.identity(n, format="csr")
    lap = eye - a_hat
    levels = []
    prev_low = None
    for a in alphas:
        m = a * lap - eye
        ts = [eye, m]
        for _ in range(2, nc):
            ts.append(2 * (m @ ts[-1]) - ts[-2])
        polys = [sum(coef[j, k] * ts[k] for k in range(nc)) for j in range(r)]
        level = [p if prev_low is None else p @ prev_low for p in polys]
        prev_low = level[0]
        levels.append(level)
    return [levels[lv][j] for j in range(r) for lv in range(len(alphas))]


def original_style(
    a_hat: sp.csr_matrix, coef: np.ndarray, alphas: list[float]
) -> tuple[sp.coo_matrix, sp.coo_matrix]:
    """The original_levels blocks stacked as one COO (r Lev N x N) for decomposition, and the used blocks B side by
    side (N x K N) for reconstruction."""
    lev = len(alphas)
    ordered = original_levels(a_hat, coef, alphas)
    used = [ordered[lev - 1]] + ordered[lev:]
    dec = sp.vstack(ordered).tocoo().astype(np.float32)
    rec = sp.hstack([b.T for b in used]).tocoo().astype(np.float32)
    return dec, rec


def bench_graph(
    name: str, adj: sp.csr_matrix, width: int, n_coef: int, lev: int, max_nnz: float, bw: float
) -> list[dict]:
    rows = []
    n = adj.shape[0]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, width)).astype(np.float32)
    t = time.perf_counter()
    fw = F.build(adj, lev=lev, n=n_coef, operator="matrix-free")
    t_build = time.perf_counter() - t
    a32 = fw.a_hat.astype(np.float32)
    coef, alphas = fw.coef, fw.alphas
    base = {"graph": name, "nodes": n, "nnz(A)": int(adj.nnz), "n": n_coef, "Lev": lev, "F": width}

    # matrix-free: whole transform, and one fused Chebyshev step for the bandwidth figure
    t_mf, z, peak = timed(
        lambda: framelet_reconstruct_numba(a32, framelet_decompose_numba(a32, x, coef, alphas), coef, alphas)
    )
    out = np.empty_like(x)
    t_step = float("inf")  # best of 10: on a shared machine a descheduled thread stalls a parallel region
    for _ in range(11):
        t0 = time.perf_counter()
        _cheb_step(a32.indptr, a32.indices, a32.data, x, x, True, np.float32(0.5), np.float32(2.0), out)
        t_step = min(t_step, time.perf_counter() - t0)
    traffic = (
        a32.indptr.nbytes + a32.indices.nbytes + a32.data.nbytes + 3 * x.nbytes
    )  # u, prev read; out written
    gbs = traffic / t_step / 1e9
    # with the gathers: every stored nonzero pulls one F-wide row of u (a cache line for F = 16 float32)
    gather = traffic + a32.nnz * width * x.itemsize
    mem_mf = a32.indptr.nbytes + a32.indices.nbytes + a32.data.nbytes
    rows.append(
        {
            **base,
            "method": "matrix-free (numba)",
            "build_s": t_build,
            "apply_s": t_mf,
            "op_MB": mem_mf / 2**20,
            "peak_MB": peak / 2**20,
            "step_ms": t_step * 1e3,
            "GB/s": gbs,
            "of_copy_bw": gbs / bw,
            "GB/s_gather": gather / t_step / 1e9,
            "gather_of_copy_bw": gather / t_step / 1e9 / bw,
        }
    )

    est = F.estimate_materialized_nnz(fw.a_hat, n_coef, lev, fw.r)
    if est > max_nnz:
        rows.append({**base, "method": "materialized", "skipped": f"estimated {est:.2e} nnz > {max_nnz:.0e}"})
        rows.append({**base, "method": "original-style scipy", "skipped": f"estimated > {max_nnz:.0e} nnz"})
        return rows
    t = time.perf_counter()
    stacked = sp.csr_matrix(sp.vstack(F.materialize_blocks(fw.a_hat, coef, alphas))).astype(np.float32)
    stacked_t = sp.csr_matrix(stacked.T)
    t_build_mat = time.perf_counter() - t

    def mat_apply():  # noqa: ANN202
        d = spmm_numba(stacked.indptr, stacked.indices, stacked.data, x)
        return spmm_numba(stacked_t.indptr, stacked_t.indices, stacked_t.data, d)

    t_mat, y_mat, peak_mat = timed(mat_apply)
    err = float(np.abs(y_mat - z).max() / max(np.abs(z).max(), 1e-30))
    mem = stacked.data.nbytes + stacked.indices.nbytes + stacked.indptr.nbytes
    rows.append(
        {
            **base,
            "method": "materialized (numba)",
            "build_s": t_build_mat,
            "apply_s": t_mat,
            "op_MB": 2 * mem / 2**20,
            "peak_MB": peak_mat / 2**20,
            "nnz(op)": int(stacked.nnz),
            "rel_diff_vs_mf": err,
        }
    )

    t = time.perf_counter()
    dec, rec = original_style(fw.a_hat, coef, alphas)
    t_build_orig = time.perf_counter() - t
    used = np.r_[lev - 1, np.arange(lev, fw.r * lev)]  # rows of the blocks B in the original order

    def orig_apply():  # noqa: ANN202
        d = (dec @ x).reshape(fw.r * lev, n, width)
        return rec @ d[used].reshape(-1, width)

    t_orig, y_orig, peak_orig = timed(orig_apply, repeats=2)
    mem_o = dec.data.nbytes + dec.row.nbytes + dec.col.nbytes
    rows.append(
        {
            **base,
            "method": "original-style scipy",
            "build_s": t_build_orig,
            "apply_s": t_orig,
            "op_MB": 2 * mem_o / 2**20,
            "peak_MB": peak_orig / 2**20,
            "nnz(op)": int(dec.nnz),
            "rel_diff_vs_mf": float(np.abs(y_orig - z).max() / max(np.abs(z).max(), 1e-30)),
        }
    )
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[100_000, 300_000, 1_000_000])
    ap.add_argument("--degree", type=float, default=10.0)
    ap.add_argument("--exponent", type=float, default=2.5, help="power-law degree exponent")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--cheb", type=int, default=2)
    ap.add_argument("--lev", type=int, default=2)
    ap.add_argument("--max-nnz", type=float, default=3e8, help="skip materializing above this estimated nnz")
    ap.add_argument("--no-cora", action="store_true")
    ap.add_argument("--copy-mb", type=int, default=512)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=0, help="numba threads (0 = numba's default)")
    args = ap.parse_args(argv)
    if args.threads:
        import numba

        numba.set_num_threads(args.threads)
    bw = copy_bandwidth(args.copy_mb)
    print(f"STREAM-like copy bandwidth: {bw:.2f} GB/s", flush=True)
    rows: list[dict] = []
    graphs = []
    if not args.no_cora and (CORA / "ind.cora.x").exists():
        from mlkit.graph.planetoid import load_planetoid

        graphs.append(("cora", lambda: load_planetoid(CORA, "cora").to_scipy()))
    for size in args.sizes:
        graphs.append(
            (f"powerlaw-{size:.0e}", lambda size=size: chung_lu(size, args.degree, args.exponent, 0))
        )
    for name, make in graphs:
        t = time.perf_counter()
        adj = make()
        print(
            f"{name}: {adj.shape[0]:,} nodes, {adj.nnz:,} nnz, max degree {np.diff(adj.indptr).max():,} "
            f"(generated in {time.perf_counter() - t:.1f}s)",
            flush=True,
        )
        for row in bench_graph(name, adj, args.width, args.cheb, args.lev, args.max_nnz, bw):
            rows.append(row)
            print(
                "  "
                + "  ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in row.items()
                    if k not in ("graph", "nodes", "nnz(A)", "n", "Lev", "F")
                ),
                flush=True,
            )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"max RSS of the whole run: {rss:.2f} GB", flush=True)
    for name in {r["graph"] for r in rows}:
        by = {r["method"]: r for r in rows if r["graph"] == name and "apply_s" in r}
        if "matrix-free (numba)" in by and "materialized (numba)" in by:
            mf, mat = by["matrix-free (numba)"]["apply_s"], by["materialized (numba)"]["apply_s"]
            print(f"{name}: materialized/matrix-free apply-time ratio {mat / mf:.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"copy_GBps": bw, "max_rss_GB": rss, "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
