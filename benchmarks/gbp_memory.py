"""GBP's Friendster path at scale: the memory model's projection, and measured peak RSS / CPU time beside it.

    python benchmarks/gbp_memory.py --dry-run --nodes 65608366 --entries 3677742636 --threads 40
    python benchmarks/gbp_memory.py --nodes 1000000 10000000 --degree 8 --targets 90982 --walks 1000

--dry-run prints the projected peak (mlkit.kernels.gbp_memory.project) for the given sizes and stops. Otherwise,
for every size a synthetic graph in the Friendster chunk layout (GBP's converter: undirected edge chunks with an
[n, m] header, z-scored one-hot float64 features, labels, walk targets) is written once under --root, then one
fresh child process loads it and runs the friendster preset's precompute (bidirectional, L = 4, w_4 = 1, the original's
thresholds, one self-loop); its peak RSS (ru_maxrss) and CPU seconds are printed beside the projection.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlkit.kernels import gbp_memory as gm  # noqa: E402

CHUNKS = 10


def write_friendster(d: Path, n: int, degree: float, features: int, targets: int, seed: int = 0,
                     classes: int = 50) -> Path:  # fmt: skip
    """Write the Friendster layout for n nodes, about degree*n undirected edges, streamed in chunks: a ring
    (connected) plus draws whose endpoints are rank-skewed (node of rank floor(n U^2) under a random relabelling:
    P(rank < k) = sqrt(k / n), a power-law degree tail), 80 % of them moved into the source's community."""
    if (d / "friendster_rw_index.npy").exists():
        return d
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n).astype(np.int64)
    comm = rng.integers(0, classes, size=n).astype(np.int64)
    m = int(degree * n)
    total = m + n  # draws + ring
    per = -(-total // CHUNKS)
    done = 0
    for k in range(CHUNKS):
        rows = min(per, total - done)
        head = 1 if k == 0 else 0
        arr = np.lib.format.open_memmap(d / f"friendster{k + 1}.npy", mode="w+", dtype=np.int64,
                                        shape=(rows + head, 2))  # fmt: skip
        if head:
            arr[0] = [n, total]
        for s in range(0, rows, 1 << 22):
            b = min(1 << 22, rows - s)
            ids = done + s + np.arange(b)
            ring = ids < n
            u = np.where(ring, ids, perm[np.minimum((n * rng.random(b) ** 2).astype(np.int64), n - 1)])
            v = np.where(ring, (ids + 1) % n, perm[np.minimum((n * rng.random(b) ** 2).astype(np.int64), n - 1)])
            same = (~ring) & (rng.random(b) < 0.8)
            v = np.where(same, v - v % classes + comm[u], v)  # a node of u's community class near v
            v = np.where(v >= n, v - classes, v)
            v = np.where(v == u, (v + 1) % n, v)
            arr[head + s : head + s + b, 0] = u
            arr[head + s : head + s + b, 1] = v
        arr.flush()
        del arr
        done += rows
    # features: the converter's one-hot codes, z-scored (here: a code tied to the community half the time)
    p = 1.0 / features
    mu, sd = p, np.sqrt(p * (1 - p))
    per = -(-n // CHUNKS)
    for k in range(CHUNKS):
        lo, hi = k * per, min(n, (k + 1) * per)
        arr = np.lib.format.open_memmap(d / f"friendster_feat{k + 1}.npy", mode="w+", dtype=np.float64,
                                        shape=(hi - lo, features))  # fmt: skip
        for s in range(lo, hi, 1 << 18):
            e = min(hi, s + (1 << 18))
            code = np.where(rng.random(e - s) < 0.5, comm[s:e] % features, rng.integers(0, features, e - s))
            blk = np.full((e - s, features), -mu / sd)
            blk[np.arange(e - s), code] = (1 - mu) / sd
            arr[s - lo : e - lo] = blk
        arr.flush()
        del arr
    ids = rng.choice(n, size=targets, replace=False)
    a, b = int(targets * 50000 / 90982), int(targets * 65982 / 90982)
    tr, va, te = ids[:a], ids[a:b], ids[b:]
    np.savez(d / "friendster_labels.npz", train_idx=tr, val_idx=va, test_idx=te, train_labels=comm[tr],
             val_labels=comm[va], test_labels=comm[te])  # fmt: skip
    np.save(d / "friendster_rw_index.npy", np.sort(ids))
    return d


def child(d: Path, walks: int, rmax: float, threads: int, features_in_ram: int | None) -> dict[str, Any]:
    """Load + precompute in this process; its peak RSS (bytes) and CPU seconds (all threads)."""
    import numba

    import mlkit.graph.io as gio
    from mlkit.tasks.gbp.precompute import propagate_rows

    if features_in_ram is not None:
        gio.FEATURES_IN_RAM = features_in_ram
    numba.set_num_threads(threads)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0  # the imports' peak, before the data
    with open("/proc/self/statm") as fh:  # resident now (the imports' peak can lie above it)
        now = int(fh.read().split()[1]) * resource.getpagesize()
    t0 = time.perf_counter()
    g = gio.load_graph(d)
    load_s = time.perf_counter() - t0
    tg = np.load(d / "friendster_rw_index.npy")
    prop = {"estimator": "bidirectional", "weights": "sgc", "levels": 4, "rmax": rmax, "r": 0.5, "walks": walks,
            "self_loops": True, "thresholds": "original", "alpha": 0.1, "tol": 0.01, "heat_t": 5.0}  # fmt: skip
    x = np.asarray(g.features[np.sort(g.train_idx)], dtype=np.float64)
    mean, std = x.mean(0).astype(np.float32), np.where(x.std(0) > 0, x.std(0), 1.0).astype(np.float32)
    rep: dict[str, Any] = {}
    res = propagate_rows(g, prop, targets=tg, seed=0, mean=mean, std=std, report=rep)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"n": g.num_nodes, "nnz": int(g.indptr[-1]), "features": int(g.features.shape[1]),
            "targets": int(tg.shape[0]), "peak_rss": ru.ru_maxrss * 1024.0, "base_rss": base, "base_now": now,
            "cpu_s": ru.ru_utime + ru.ru_stime, "load_s": load_s, "timings": res.timings, "report": rep,
            "on_disk": hasattr(g.features, "columns")}  # fmt: skip


def measure(d: Path, walks: int, rmax: float, threads: int, features_in_ram: int | None = None) -> dict[str, Any]:
    """Run `child` in a fresh interpreter (no fork of a process whose thread pools already run)."""
    import json
    import subprocess

    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(d), "--walks", str(walks), "--rmax",
           str(rmax), "--threads", str(threads)]  # fmt: skip
    if features_in_ram is not None:
        cmd += ["--features-in-ram", str(features_in_ram)]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def projection_of(r: dict[str, Any], walks: int, threads: int) -> dict[str, float]:
    from mlkit.tasks.gbp.precompute import xt_chunk

    mode = "pull" if "pull_ball" in r["report"] else "push"
    p = gm.project(r["n"], r["nnz"], r["features"], r["targets"], walks, 4, threads, mode,
                   chunk=xt_chunk(r["n"], r["features"]), base=r["base_now"] + gm.KERNELS,
                   on_disk=r["on_disk"])  # fmt: skip
    p["peak"] = max(p["peak"], r["base_rss"])  # the peak is the imports' or the work's, whichever is higher
    return p


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--degree", type=float, default=8.0, help="undirected edge draws per node (~2x entries)")
    ap.add_argument("--entries", type=int, default=None, help="--dry-run: directed entries incl. self-loops")
    ap.add_argument("--features", type=int, default=100)
    ap.add_argument("--targets", type=int, default=90_982)
    ap.add_argument("--walks", type=int, default=1000)
    ap.add_argument("--rmax", type=float, default=4e-8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--root", default="/tmp/gbp-friendster")
    ap.add_argument("--dry-run", action="store_true", help="print the projected peak only")
    ap.add_argument("--features-in-ram", type=int, default=None,
                    help="bytes above which Friendster features stay on disk (mlkit.graph.io.FEATURES_IN_RAM)")
    ap.add_argument("--pull-memory", type=float, default=1.0, help="GiB of pull level buffer (propagation.pull_memory)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        import json

        print(json.dumps(child(Path(args.child), args.walks, args.rmax, args.threads, args.features_in_ram)))
        return []
    if args.features_in_ram is not None:
        import mlkit.graph.io as gio

        gio.FEATURES_IN_RAM = args.features_in_ram
    from mlkit.tasks.gbp.precompute import xt_chunk

    rows = []
    for n in args.nodes:
        nnz = args.entries or int(n * (2 * args.degree + 2 + 1))
        proj = gm.project(n, nnz, args.features, args.targets, args.walks, 4, args.threads, "pull",
                          chunk=xt_chunk(n, args.features), pull_budget=args.pull_memory * 2**30)  # fmt: skip
        print(f"# n={n:,} entries={nnz:,} F={args.features} |S|={args.targets:,} walks={args.walks} "
              f"threads={args.threads}: projected peak {proj['peak'] / 2**30:.2f} GiB", file=sys.stderr)  # fmt: skip
        print(gm.describe(proj), file=sys.stderr)
        if args.dry_run:
            rows.append({"n": n, "projected_gib": proj["peak"] / 2**30})
            continue
        d = write_friendster(Path(args.root) / f"fr{n}_d{args.degree:g}_f{args.features}_t{args.targets}", n,
                             args.degree, args.features, args.targets)  # fmt: skip
        r = measure(d, args.walks, args.rmax, args.threads, args.features_in_ram)
        p = projection_of(r, args.walks, args.threads)
        row = {"n": r["n"], "entries": r["nnz"], "measured_gib": r["peak_rss"] / 2**30,
               "projected_gib": p["peak"] / 2**30,
               "inputs_gib": (p["graph"] + r["n"] * r["features"] * 4.0) / 2**30,  # graph + float32 features
               "cpu_s": r["cpu_s"], "load_s": r["load_s"], **{k: round(v, 2) for k, v in r["timings"].items()},
               "walk_entries": r["report"].get("walk_entries"), "walk_entries_model": p["walk_entries"]}  # fmt: skip
        print(row, flush=True)
        rows.append(row)
    if len(rows) >= 2 and not args.dry_run:
        a, b = rows[0], rows[-1]
        print(f"peak growth {a['n']:,} -> {b['n']:,} nodes: +{b['measured_gib'] - a['measured_gib']:.2f} GiB; "
              f"features + graph at {b['n']:,}: {b['inputs_gib']:.2f} GiB")  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
