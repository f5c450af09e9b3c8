"""Time one NCE+Distill training epoch with the batched distillation gathers (mlkit.kernels.grounding_distill)
against the original's way, a Python loop over the batch and its phrases, in the same run on the same data.

    python benchmarks/grounding_epoch.py                     # synthetic set, 800 train images, B = 32, K = 8
    python benchmarks/grounding_epoch.py --train 400 --batch 64 --device cuda

Both variants share everything else (memmap feature gathers, encoders, InfoNCE) and the same seed, so the
ratio is the distillation's share of the epoch. Also prints the distillation step alone (forward + backward).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlkit.core.config import load_defaults  # noqa: E402
from mlkit.kernels.grounding_distill import distill_batched, distill_loop, teacher_column  # noqa: E402
from mlkit.tasks.grounding import data as D  # noqa: E402
from mlkit.tasks.grounding.steps import make_batch, steps_per_epoch, train_epoch  # noqa: E402
from mlkit.tasks.grounding.synth import write_synth  # noqa: E402
from mlkit.tasks.grounding.task import _model  # noqa: E402


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=800)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reps", type=int, default=2, help="epochs timed per variant (median)")
    args = ap.parse_args()
    os.environ.setdefault("MLKIT_CACHE", tempfile.mkdtemp(prefix="mlkit-bench-"))
    cfg = load_defaults("mlkit.tasks.grounding")
    cfg["batch_size"] = args.batch
    root = Path(os.environ["MLKIT_CACHE"]) / f"grounding-bench-{args.train}"
    if not (root / "test.txt").is_file():
        write_synth(root, args.train, 20, 20, 20, 128, 0)
    data = D.load(root, cfg)
    res: dict[str, float] = {}
    for impl in ("batched", "loop"):
        cfg["distill_impl"] = impl
        times = []
        for rep in range(args.reps):
            torch.manual_seed(0)
            model = _model(
                cfg, len(data.emb), data.emb.shape[1], data.store.feats.shape[2], data.mu, data.sigma
            )
            model.embed.weight.data.copy_(torch.from_numpy(data.emb))
            model = model.to(args.device)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            gen = torch.Generator().manual_seed(rep)
            _sync(args.device)
            t = time.perf_counter()
            train_epoch(cfg, data, model, opt, gen, args.device, 1, lambda: False)
            _sync(args.device)
            times.append(time.perf_counter() - t)
        res[f"epoch_s_{impl}"] = statistics.median(times)
    # the distillation alone on one batch (forward + backward)
    gen = torch.Generator().manual_seed(0)
    b = make_batch(data, np.arange(args.batch), gen, args.device, 16)
    model.train()
    f, g = model(b["feats"], b["tok"])
    pair = torch.einsum("ipe,ire->ipr", g, f).detach()
    tcol = teacher_column(b["det"], b["cls"])
    valid = b["pmask"] & (b["cls"] >= 0)
    for name, fn in (("batched", distill_batched), ("loop", distill_loop)):
        ts = []
        for _ in range(20):
            s = pair.clone().requires_grad_(True)
            _sync(args.device)
            t = time.perf_counter()
            loss, _ = fn(s, b["rmask"], b["neigh"], tcol, valid, 1.0)
            loss.backward()
            _sync(args.device)
            ts.append(time.perf_counter() - t)
        res[f"distill_ms_{name}"] = statistics.median(ts) * 1000
    res["epoch_ratio_loop_over_batched"] = res["epoch_s_loop"] / res["epoch_s_batched"]
    res["distill_ratio_loop_over_batched"] = res["distill_ms_loop"] / res["distill_ms_batched"]
    res["steps_per_epoch"] = steps_per_epoch(data, args.batch)
    res["device"] = args.device
    res["threads"] = torch.get_num_threads()
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()}))


if __name__ == "__main__":
    main()
