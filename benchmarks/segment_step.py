"""Time one TW-autoencoder training step against the plain classifier step on the same encoder and batch.

    python benchmarks/segment_step.py                 # K = 4 and K = 21 at 32x32, B = 16, tiny encoder
    python benchmarks/segment_step.py --k 4 --size 48

Prints per K: classifier step ms, TW step ms (one-shot unrolled decoder, iterative mode, and the eval-BN
batched-VJP kernel of mlkit.kernels.lrp), the TW one-shot / classifier ratio (median of per-rep ratios, the two steps
run back to back in each rep), and peak memory (RSS growth on CPU, CUDA
peak on GPU) of one-shot vs iterative mode. The target is ratio <= 6 at K = 4, 32x32 (spec §5 measured ~12x).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mlkit.kernels.lrp import gxi_heatmaps
from mlkit.tasks.segment.loss import class_loss, pixel_loss, tw_step_loss
from mlkit.tasks.segment.model import SegNet, build_encoder


def _time(fn, reps: int, sync) -> float:
    for _ in range(2):
        fn()
    out = []
    for _ in range(reps):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t)
    return statistics.median(out) * 1000


def _paired_ratio(fa, fb, reps: int, sync) -> float:
    """Median over reps of time(fb) / time(fa), the two run back to back in each rep: machine drift between a
    block of fa runs and a block of fb runs does not enter the ratio."""
    for _ in range(2):
        fa(), fb()
    ratios = []
    for _ in range(reps):
        t = []
        for f in (fa, fb):
            sync()
            t0 = time.perf_counter()
            f()
            sync()
            t.append(time.perf_counter() - t0)
        ratios.append(t[1] / t[0])
    return statistics.median(ratios)


def _graph_mib(build) -> float:
    """MiB of distinct tensors autograd saves while `build()` constructs a graph (no backward): the largest
    graph alive at once, i.e. the activation memory a mode needs beyond the weights (CPU and CUDA alike)."""
    seen: dict[tuple[int, int], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen[(t.untyped_storage().data_ptr(), t.device.index or 0)] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        build()
    return sum(seen.values()) / 2**20


def run(k: int, size: int, batch: int, width: int, reps: int, device: str, rule: str = "epsilon"
        ) -> dict[str, float]:  # fmt: skip
    torch.manual_seed(0)
    net = SegNet("tw", build_encoder("tiny", k, width), k, heat_scale=0.0, rule=rule).to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.rand(batch, 3, size, size, device=device)
    y = torch.randint(0, k, (batch, size, size), device=device)
    y[batch // 2 :] = -1
    yi = (torch.rand(batch, k, device=device) < 0.5).float()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def cls_step() -> None:
        opt.zero_grad()
        class_loss(net.classify(x), yi).backward()
        opt.step()

    def tw(mode: str):
        def step() -> None:
            opt.zero_grad()
            tw_step_loss(net, x, y, yi, 1.0, 1.0, mode)
            opt.step()

        return step

    def vjp_step() -> None:  # eval-BN variant: K heatmaps from one batched VJP, double backward
        net.eval()
        opt.zero_grad()
        z, h = gxi_heatmaps(net.encoder, x, create_graph=True)
        (pixel_loss(h * size * size, y) + class_loss(z, yi)).backward()
        opt.step()
        net.train()

    res = {
        "cls_ms": _time(cls_step, reps, sync),
        "tw_ms": _time(tw("oneshot"), reps, sync),
        "tw_iter_ms": _time(tw("iterative"), max(2, reps // 3), sync),
        "vjp_ms": _time(vjp_step, reps, sync),
    }
    res["ratio"] = _paired_ratio(cls_step, tw("oneshot"), reps, sync)

    def graph_oneshot() -> None:
        z, h = net(x)
        pixel_loss(h, y) + class_loss(z, yi)

    def graph_iterative() -> None:  # the z graph plus ONE class's decoder graph (freed after its backward)
        z = net.decoder.record(x)
        with torch.no_grad():
            h_all = net.decoder.heatmaps(z)
        h = torch.cat([net.decoder.heatmaps(z, [0]), h_all[:, 1:]], 1)
        pixel_loss(h, y) + class_loss(z, yi)

    res["peak_oneshot_mib"] = _graph_mib(graph_oneshot)
    res["peak_iterative_mib"] = _graph_mib(graph_iterative)
    if device.startswith("cuda"):
        for mode in ("oneshot", "iterative"):
            torch.cuda.reset_peak_memory_stats()
            tw(mode)()
            res[f"cuda_peak_{mode}_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, nargs="+", default=[4, 21])
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rule", default="epsilon", choices=["epsilon", "alpha-beta"], help="the TW decoder's LRP rule")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"# tiny encoder width {a.width}, B={a.batch}, {a.size}x{a.size}, {a.threads} threads, {a.device}, "
          f"rule {a.rule}")
    for k in a.k:
        r = run(k, a.size, a.batch, a.width, a.reps, a.device, a.rule)
        print(f"K={k:3d}  classifier {r['cls_ms']:7.1f} ms  TW one-shot {r['tw_ms']:7.1f} ms  "
              f"TW iterative {r['tw_iter_ms']:7.1f} ms  TW batched-VJP (eval BN) {r['vjp_ms']:7.1f} ms  "
              f"ratio {r['ratio']:5.2f}x (paired)  peak one-shot {r['peak_oneshot_mib']:.1f} MiB  "
              f"iterative {r['peak_iterative_mib']:.1f} MiB (saved activations)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
