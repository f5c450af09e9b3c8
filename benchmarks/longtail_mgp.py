"""Time LiVT's MGP step against a full-token step of the same ViT, and mlkit's fine-tune epoch against a bare timm loop.

    python benchmarks/longtail_mgp.py                         # lt-tiny at 28x28 (49 tokens), B = 128, 1 thread
    python benchmarks/longtail_mgp.py --arch vit-base --size 224 --batch 8 --dec 512 8 16 --skip-finetune
    python benchmarks/longtail_mgp.py --device cuda

1. MGP: one AdamW step of the MAE (encoder on the visible 1 - mask_ratio of the tokens, decoder on all) against one
   step where the same encoder sees every token (same decoder, loss on every patch). Prints both and the ratio
   (target >= 2x at mask 0.75 on the tiny ViT).
2. Fine-tune: epochs of mlkit's BFT (steps.bft_epoch: loader, timm transforms, Mixup, Bal-BCE, per-step lr with
   layer-wise scales) against a bare loop with the same timm ViT, dataset, transforms, Mixup, batch and AdamW, on the
   embedded default. Prints both and mlkit / bare (target <= 1.10). Timings are medians of interleaved repeats;
   CPU seconds (process time) are printed beside wall time because this machine is shared.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _median_times(
    fns: dict[str, Any], reps: int, device: str, warm: int = 2
) -> dict[str, tuple[float, float]]:
    """{name: (median wall s, median CPU s)} with the candidates interleaved rep by rep."""
    for fn in fns.values():
        for _ in range(warm):
            fn()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            _sync(device)
            t, c = time.perf_counter(), time.process_time()
            fn()
            _sync(device)
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in fns}


def bench_mgp(a: argparse.Namespace) -> dict[str, float]:
    from mlkit.tasks.longtail.model import MAE, build_vit

    torch.manual_seed(0)
    dec_dim, dec_depth, dec_heads = a.dec
    mae = MAE(build_vit(a.arch, a.size, 0), dec_dim, dec_depth, dec_heads, a.mask_ratio).to(a.device)
    opt = torch.optim.AdamW([p for p in mae.parameters() if p.requires_grad], lr=1e-4, betas=(0.9, 0.95))
    x = torch.randn(a.batch, 3, a.size, a.size, device=a.device)
    amp = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if a.device.startswith("cuda")
        else torch.autocast("cpu", enabled=False)
    )

    def mgp() -> None:
        with amp:
            loss, _, _ = mae(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def full() -> None:
        with amp:
            latent, _, restore = mae.encode(x, 0.0)  # every token enters the encoder
            pred = mae.decode(latent, restore)
            loss = mae.loss(x, pred, torch.ones(pred.shape[:2], device=x.device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t = _median_times({"mgp": mgp, "full": full}, a.reps, a.device)
    n = mae.encoder.patch_embed.num_patches
    print(f"# MGP: {a.arch} {a.size}x{a.size} ({n} tokens, mask {a.mask_ratio}), decoder {dec_dim}/{dec_depth}/"
          f"{dec_heads}, B={a.batch}, {a.device}, {torch.get_num_threads()} thread(s)")  # fmt: skip
    print(f"mgp step   {t['mgp'][0] * 1e3:8.1f} ms wall  {t['mgp'][1] * 1e3:8.1f} ms cpu")
    print(f"full step  {t['full'][0] * 1e3:8.1f} ms wall  {t['full'][1] * 1e3:8.1f} ms cpu")
    ratio = t["full"][0] / t["mgp"][0]
    cpu_ratio = t["full"][1] / max(t["mgp"][1], 1e-9)
    print(f"full / mgp = {ratio:.2f}x wall, {cpu_ratio:.2f}x cpu  (target >= 2x)")
    return {
        "mgp_ms": t["mgp"][0] * 1e3,
        "full_ms": t["full"][0] * 1e3,
        "ratio": ratio,
        "cpu_ratio": cpu_ratio,
    }


def bench_finetune(a: argparse.Namespace) -> dict[str, float]:
    from timm.data import Mixup
    from timm.optim import create_optimizer_v2
    from torch.utils.data import DataLoader

    from mlkit.core.config import load_defaults
    from mlkit.core.runtime import Ctx, Dist
    from mlkit.tasks.longtail import pipeline as P
    from mlkit.tasks.longtail.model import build_vit
    from mlkit.tasks.longtail.steps import bft_epoch, make_bundle

    cfg = load_defaults("mlkit.tasks.longtail")
    cfg["device"] = a.device
    data = P.load(cfg)
    b = make_bundle(cfg, data, a.device)
    ctx = Ctx(task="longtail", mode="train", device=a.device, seed=0, dist=Dist(), console=None, quiet=True)
    c = len(data.classes)

    def model() -> Any:
        torch.manual_seed(0)
        return build_vit(cfg["arch"], int(cfg["input_size"]), c, float(cfg["drop_path"])).to(a.device)

    ours = torch.nn.Module()
    ours.vit = model()
    ours.forward = ours.vit.forward  # type: ignore[method-assign]
    opt_ours = create_optimizer_v2(ours.vit, "adamw", lr=float(cfg["lr"]), weight_decay=0.05,
                                   betas=tuple(cfg["betas"]), layer_decay=float(cfg["layer_decay"]))  # fmt: skip
    bare = model()
    opt_bare = create_optimizer_v2(bare, "adamw", lr=float(cfg["lr"]), weight_decay=0.05, betas=tuple(cfg["betas"]),
                                   layer_decay=float(cfg["layer_decay"]))  # fmt: skip
    mix = Mixup(mixup_alpha=float(cfg["mixup"]), cutmix_alpha=0.0, label_smoothing=float(cfg["smoothing"]),
                num_classes=c)  # fmt: skip
    counts = torch.as_tensor(data.counts, dtype=torch.float64)
    pi = counts / counts.sum()
    bias = (torch.log(pi) - torch.log1p(-pi)).float().to(a.device)
    bs = int(cfg["batch_size"])
    epoch = [0]

    def run_ours() -> None:
        gen = torch.Generator().manual_seed(epoch[0])
        bft_epoch(cfg, ctx, ours, opt_ours, b, 1, gen, lambda: False)

    def run_bare() -> None:
        gen = torch.Generator().manual_seed(epoch[0])
        loader = DataLoader(b.train, batch_size=bs, sampler=torch.randperm(len(b.train), generator=gen).tolist(),
                            drop_last=True)  # fmt: skip
        bare.train()
        for x, y in loader:
            x, y = x.to(a.device), y.to(a.device)
            x, t = mix(x, y)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(bare(x) + bias, t) * c
            opt_bare.zero_grad(set_to_none=True)
            loss.backward()
            opt_bare.step()

    t = _median_times({"mlkit": run_ours, "bare": run_bare}, a.ft_reps, a.device, warm=1)
    steps = len(b.train) // bs
    print(
        f"# fine-tune: {cfg['arch']} {cfg['input_size']}x{cfg['input_size']}, {len(b.train)} images/epoch "
        f"({steps} steps of B={bs}), Mixup {cfg['mixup']}, Bal-BCE, layer decay {cfg['layer_decay']}, {a.device}"
    )
    print(f"mlkit epoch {t['mlkit'][0] * 1e3:8.1f} ms wall  {t['mlkit'][1] * 1e3:8.1f} ms cpu")
    print(f"bare  epoch {t['bare'][0] * 1e3:8.1f} ms wall  {t['bare'][1] * 1e3:8.1f} ms cpu")
    ratio = t["mlkit"][0] / t["bare"][0]
    cpu_ratio = t["mlkit"][1] / max(t["bare"][1], 1e-9)
    print(f"mlkit / bare = {ratio:.3f} wall, {cpu_ratio:.3f} cpu  (target <= 1.10)")
    return {"ratio": ratio, "cpu_ratio": cpu_ratio}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="lt-tiny")
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--mask-ratio", type=float, default=0.75)
    ap.add_argument("--dec", type=int, nargs=3, default=[64, 1, 4], metavar=("DIM", "DEPTH", "HEADS"))
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--ft-reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-finetune", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    bench_mgp(a)
    if not a.skip_finetune:
        bench_finetune(a)


if __name__ == "__main__":
    main()
