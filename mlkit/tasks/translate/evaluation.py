"""Evaluation of `mlkit translate` (spec §7, issue deliverable 3): diversity (mean pairwise distance between outputs
of one input under random attributes), FID / KID on a named feature network, the content check (a digit classifier
trained on real A, applied to B->A translations vs raw B) and the domain-adaptation check, plus grid PNGs.

Metric names say what was measured: LPIPS only with a user's local AlexNet weights (and the `lpips` package for its
linear heads); otherwise pixel L1 on [0, 1] and `feat-cnn`, the features of a small CNN trained here on the run's
own images (8-way domain x rotation classification, no labels), never called LPIPS or Inception.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from mlkit.core.errors import UsageError
from mlkit.tasks.translate.model import DRIT


@torch.no_grad()
def translate(m: DRIT, x: torch.Tensor, src: str, dst: str, z: torch.Tensor, bs: int = 256) -> torch.Tensor:
    """G_dst(E^c_src(x), z) in eval mode, batched; x and the output in [-1, 1]. A zero-attribute ablation model
    ignores z (it was trained with z = 0 everywhere: a deterministic translator)."""
    if getattr(m, "zero_attr", False):
        z = torch.zeros_like(z)
    outs = [m.gen[dst](m.enc_c[src](x[i : i + bs]), z[i : i + bs]) for i in range(0, len(x), bs)]
    return torch.cat(outs)


def small_cnn(cin: int, k: int, width: int = 16) -> nn.Module:
    """A 3-stage conv net (BN, ReLU, max-pool) + global pool: `.features(x)` -> (N, 2w), `.head` -> k logits."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            w = width
            self.body = nn.Sequential(
                nn.Conv2d(cin, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
                nn.AdaptiveAvgPool2d(1), nn.Flatten())  # fmt: skip
            self.head = nn.Linear(2 * w, k)

        def features(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.body(x))

    return Net()


def fit(net: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int, bs: int = 64,
        lr: float = 2e-3, aug: Callable[[torch.Tensor], torch.Tensor] | None = None) -> nn.Module:  # fmt: skip
    """Adam, cross-entropy; returns the net in eval mode."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), bs):
            j = perm[i : i + bs].to(x.device)
            xb = x[j] if aug is None else aug(x[j])
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(xb), y[j]).backward()
            opt.step()
    # BN statistics re-estimated on the training data with the final weights (cumulative average): the running
    # averages of a short, high-lr run lag the weights and cost tens of points of test accuracy
    bns = [b for b in net.modules() if isinstance(b, nn.BatchNorm2d)]
    for b in bns:
        b.reset_running_stats()
        b.momentum = None
    with torch.no_grad():
        for i in range(0, len(x), 256):
            net(x[i : i + 256])
    return net.eval()


@torch.no_grad()
def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    pred = torch.cat([net(x[i : i + 512]).argmax(1) for i in range(0, len(x), 512)])
    return float((pred == y).float().mean())


def _pad(x: torch.Tensor, c: int) -> torch.Tensor:
    return x if x.shape[1] == c else (x.repeat(1, c // x.shape[1], 1, 1) if x.shape[1] == 1 else x.mean(1, keepdim=True))


class FeatureNet:
    """Features for FID / KID and the feature distance: a user's TorchScript module (images in [-1, 1] -> (N, D)), or
    `feat-cnn`: a small CNN trained on both domains' real train images to tell (domain, rotation) apart."""

    def __init__(self, name: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.name, self.fn = name, fn

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.fn(x[i : i + 256]).flatten(1) for i in range(0, len(x), 256)]).double()


def feature_net(path: str | None, xa: torch.Tensor, xb: torch.Tensor, epochs: int, seed: int) -> FeatureNet:
    if path:
        try:
            net = torch.jit.load(str(Path(path).expanduser()), map_location=xa.device).eval()
        except (OSError, RuntimeError, ValueError) as e:
            raise UsageError(f"cannot load eval.feature_net ({e.__class__.__name__})", path,
                             "Give a TorchScript file mapping images in [-1, 1] to (N, D) features.") from None  # fmt: skip
        return FeatureNet(f"user:{Path(path).name}", net)
    c = max(xa.shape[1], xb.shape[1])
    x = torch.cat([_pad(xa, c), _pad(xb, c)])
    dom = torch.cat([torch.zeros(len(xa)), torch.ones(len(xb))]).long().to(x.device)
    xr = torch.cat([torch.rot90(x, k, (2, 3)) for k in range(4)])
    yr = torch.cat([dom * 4 + k for k in range(4)])
    torch.manual_seed(seed)
    net = fit(small_cnn(c, 8).to(x.device), xr, yr, epochs, seed)
    return FeatureNet("feat-cnn", lambda t: net.features(_pad(t, c)))


def lpips_fn(backbone: str, device: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """LPIPS (AlexNet) from the `lpips` package's linear heads and the user's local torchvision AlexNet weights."""
    try:
        import lpips  # type: ignore[import-not-found]
    except ImportError:
        raise UsageError("eval.lpips_backbone needs the `lpips` package (its linear heads)", "eval.lpips_backbone",
                         "pip install lpips, or drop eval.lpips_backbone to use pixel L1 + feat-cnn.") from None  # fmt: skip
    sd = torch.load(str(Path(backbone).expanduser()), map_location="cpu", weights_only=True)
    feats = {k.removeprefix("features."): v for k, v in sd.items() if k.startswith("features.")}
    net = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    own = dict(net.net.named_parameters())
    for name, p in own.items():  # slice<k>.<index>.<weight|bias> -> features.<index>.<weight|bias>
        p.data.copy_(feats[name.split(".", 1)[1]])
    net = net.to(device).eval()
    return lambda x, y: net(_pad(x, 3), _pad(y, 3)).flatten()


@torch.no_grad()
def diversity(m: DRIT, x: torch.Tensor, src: str, dst: str, k: int, feats: FeatureNet | None, seed: int,
              lp: Callable | None = None) -> dict[str, float]:  # fmt: skip
    """Mean over inputs and over the k(k-1)/2 output pairs: pixel L1 on [0, 1], L2 between unit-normalised
    features, LPIPS when `lp` is given. Random attributes z ~ N(0, I), seeded."""
    g = torch.Generator().manual_seed(seed)
    n = len(x)
    z = torch.randn(k, n, m.nz, generator=g).to(x.device)
    outs = torch.stack([translate(m, x, src, dst, z[j]) for j in range(k)])  # (k, n, C, H, W)
    l1, fd, lpv = [], [], []
    f = [F.normalize(feats(o).float(), dim=1) for o in outs] if feats is not None else None
    for i in range(k):
        for j in range(i + 1, k):
            l1.append(((outs[i] - outs[j]).abs().mean((1, 2, 3)) / 2).mean())
            if f is not None:
                fd.append((f[i] - f[j]).norm(dim=1).mean())
            if lp is not None:
                lpv.append(lp(outs[i], outs[j]).mean())
    out = {"l1": float(torch.stack(l1).mean())}
    if fd:
        out["feat"] = float(torch.stack(fd).mean())
    if lpv:
        out["lpips"] = float(torch.stack(lpv).mean())
    return out


def fid(f1: torch.Tensor, f2: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets."""
    from scipy import linalg

    a, b = f1.cpu().numpy(), f2.cpu().numpy()
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = np.real(linalg.sqrtm(s1 @ s2))
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def kid(f1: torch.Tensor, f2: torch.Tensor, subsets: int = 10, size: int = 200, seed: int = 0) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel (x.y / d + 1)^3, averaged over random subsets."""
    g = torch.Generator().manual_seed(seed)
    d, vals = f1.shape[1], []
    s = min(size, len(f1), len(f2))
    for _ in range(subsets):
        x = f1[torch.randperm(len(f1), generator=g)[:s]]
        y = f2[torch.randperm(len(f2), generator=g)[:s]]
        kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
        mmd = (kxx.sum() - kxx.diag().sum()) / (s * (s - 1)) + (kyy.sum() - kyy.diag().sum()) / (s * (s - 1)) \
            - 2 * kxy.mean()  # fmt: skip
        vals.append(float(mmd))
    return float(np.mean(vals))


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [-1, 1] -> HxWx3 uint8."""
    a = ((x.detach().cpu().float().clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
    return np.repeat(a, 3, 0).transpose(1, 2, 0) if a.shape[0] == 1 else a.transpose(1, 2, 0)


def write_grid(path: Path, rows: list[list[torch.Tensor]], scale: int = 2, pad: int = 2) -> Path:
    """A PNG grid: one row per list, images (C, H, W) in [-1, 1], nearest-upscaled by `scale`."""
    h, w = rows[0][0].shape[1:]
    ncol = max(len(r) for r in rows)
    canvas = np.full((len(rows) * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, np.uint8)
    for i, r in enumerate(rows):
        for j, im in enumerate(r):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            canvas[y : y + h, x : x + w] = to_uint8(im)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(canvas)
    img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(path)
    return path


def sample_grid(m: DRIT, x: torch.Tensor, src: str, dst: str, k: int, seed: int, path: Path) -> Path:
    """len(x) rows: the input, then k translations with random attributes (the §7 10 x 6 grid for 10 inputs, k 5)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(k, len(x), m.nz, generator=g).to(x.device)
    outs = [translate(m, x, src, dst, z[j]) for j in range(k)]
    return write_grid(path, [[x[i]] + [o[i] for o in outs] for i in range(len(x))])
