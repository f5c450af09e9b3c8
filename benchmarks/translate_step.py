"""Time one DRIT iteration at the spec §7 size (32x32, tiny nets, batch 2 per domain) on CPU or CUDA.

ours:      one forward graph per full iteration; the second E^c/G step's gradients are taken with
           torch.autograd.grad before the first step changes the weights (mlkit.tasks.translate.steps).
baseline:  the usual fix in PyTorch >= 1.5 ports of the original (whose reuse of a stepped graph newer PyTorch
           refuses): a second full forward pass for the second E^c/G step.
Both run interleaved in one process on the same model and data; prints JSON lines with per-iteration times (median;
CPU seconds of the process on CPU, so a shared machine does not skew them; wall seconds on CUDA), the ratio, and
iterations/s of the d_iter = 3 schedule (1 full + 2 D^c-only iterations).

    OMP_NUM_THREADS=1 python benchmarks/translate_step.py [--device cuda] [--reps 20]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
import yaml

from mlkit.tasks.translate.loss import content_d_loss, d_loss
from mlkit.tasks.translate.model import DRIT
from mlkit.tasks.translate.steps import D_GROUPS, Stepper

CFG = yaml.safe_load((Path(__file__).resolve().parents[1] / "mlkit/tasks/translate/config.yaml").read_text())


def baseline_full(st: Stepper, a: torch.Tensor, b: torch.Tensor) -> None:
    """D step, E^c/E^a/G step, then a fresh forward for the E^c/G-only step."""
    m = st.m
    f = st.forward(a, b)
    st._zero()
    ld = d_loss(m.dis["a"], f["a"], f["u"].detach()) + d_loss(m.dis["b"], f["b"], f["v"].detach()) + \
        d_loss(m.dis["a2"], f["a_rnd"], f["a_r"].detach()) + d_loss(m.dis["b2"], f["b_rnd"], f["b_r"].detach())  # fmt: skip
    (ld + content_d_loss(m.dis_c, f["zc_a"].detach(), f["zc_b"].detach())).backward()
    st._step(D_GROUPS, {"dis_c": 5.0})
    st._zero()
    loss1, _, _ = st.losses(f)
    loss1.backward()
    st._step(("enc_c", "enc_a", "gen"))
    st._zero()
    f2 = st.forward(a, b)
    _, loss2, _ = st.losses(f2)
    loss2.backward()
    st._step(("enc_c", "gen"))
    st._zero()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--preset", default="", help="'paper': the paper's widths (216 crops)")
    args = ap.parse_args()
    cfg = copy.deepcopy(CFG)
    if args.preset == "paper":
        cfg["model"].update(CFG["presets"]["paper"]["model"])
    torch.manual_seed(0)
    dev = args.device
    m = DRIT(cfg).to(dev).train()
    opt = torch.optim.Adam([{"params": v} for v in m.groups().values()], lr=2e-4, betas=(0.5, 0.999))
    st = Stepper(cfg, m, opt)
    a = torch.rand(2, 3, args.size, args.size, device=dev) * 2 - 1
    b = torch.rand(2, 3, args.size, args.size, device=dev) * 2 - 1

    cuda = dev.startswith("cuda")
    clk = time.perf_counter if cuda else time.process_time  # CPU: process CPU seconds (robust to a shared machine)

    def clock(fn) -> float:  # noqa: ANN001
        if cuda:
            torch.cuda.synchronize()
        t = clk()
        fn(a, b)
        if cuda:
            torch.cuda.synchronize()
        return clk() - t

    fns = {"ours": st.full, "baseline": lambda x, y: baseline_full(st, x, y), "content_only": st.content_only}
    for fn in fns.values():
        fn(a, b)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(args.reps):  # interleaved, so machine load hits both alike
        for k, fn in fns.items():
            times[k].append(clock(fn))
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    sched = {k: 3.0 / (med[k] + 2 * med["content_only"]) for k in ("ours", "baseline")}
    for k in ("ours", "baseline"):
        print(json.dumps({"bench": "translate_step", "impl": k, "device": dev, "clock": "wall" if cuda else "cpu",
                          "size": args.size,
                          "full_iter_s": round(med[k], 5), "content_only_s": round(med["content_only"], 5),
                          "iters_per_s_d_iter3": round(sched[k], 2)}))  # fmt: skip
    print(json.dumps({"bench": "translate_step", "speedup_full_iter": round(med["baseline"] / med["ours"], 3),
                      "speedup_schedule": round(sched["ours"] / sched["baseline"], 3)}))  # fmt: skip


if __name__ == "__main__":
    main()
