"""mi representation learning on images (spec §2.6, §3.2): two augmented views of an image are x and y; DEMI's
subviews of x are progressively revealed horizontal bands (x_1 = the top 1/s of the rows, ..., x_s = x: each a
deterministic function of the next); one CNN encoder E with unit-vector heads gives psi = <u(E(x_1)), v(E(y))> / tau
and phi_k = <P([E(x_k); E(x_{k-1})]), v(E(y))> / tau. The objective is the chosen estimator of objective.terms, so
InfoNCE (s = 1) and DEMI-IS share every line of the bound code. eval: a linear probe (logistic regression) on E's
pooled features of the un-augmented train images, accuracy on the test images, beside the same probe on a randomly
initialised encoder.

Layouts: CIFAR-10/100 python pickles and ImageFolder trees, read by the longtail task's readers (restricted
unpickler, one-line DataErrors naming the file); the embedded default is sklearn's real 8x8 digits upsampled to
32x32 and written as a CIFAR-10 folder (`--kind images`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlkit.core.errors import DataError
from mlkit.tasks.longtail import data as LD


def is_image_root(root: Path) -> bool:
    """True when --data holds a CIFAR pickle folder or an ImageFolder tree (root/train/<class>/...)."""
    root = Path(root)
    return root.is_dir() and (LD.cifar_kind(root) is not None or (root / "train").is_dir())


def _arrays(split: LD.Split, size: int, where: str) -> np.ndarray:
    if split.arrays is not None and split.arrays.shape[1:3] == (size, size):
        return split.arrays
    out = np.empty((len(split), size, size, 3), np.uint8)
    for i in range(len(split)):
        out[i] = np.asarray(split.image(i).convert("RGB").resize((size, size)), np.uint8)
    if not len(out):
        raise DataError("no images", where, "Put images in the train and test splits.")
    return out


def read_images(root: Path, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(train uint8 NHWC, train labels, test images, test labels, class names) of a CIFAR or ImageFolder root."""
    root = Path(root)
    fmt = LD.detect_format(root)
    if fmt in ("cifar10", "cifar100"):
        train, test, names = LD.read_cifar(LD.cifar_kind(root)[1], fmt)  # type: ignore[index]
    else:
        train, names = LD.read_folder(root / "train")
        sub = next((root / s for s in ("test", "val") if (root / s).is_dir()), None)
        if sub is None:
            raise DataError("no test/ or val/ folder beside train/", str(root), "Add <root>/test/<class>/*.png.")
        test, _ = LD.read_folder(sub, names)
    return (_arrays(train, size, str(root)), train.labels, _arrays(test, size, str(root)), test.labels, names)


def augment(img: torch.Tensor, gen: torch.Generator, pad: int = 4, jitter: float = 0.4, noise: float = 0.05
            ) -> torch.Tensor:  # fmt: skip
    """A random view of a float batch [M, 3, H, W] in [0, 1]: reflect-padded random crop (per image), brightness
    and contrast jitter, Gaussian noise. No flips (digits and text are not mirror-symmetric)."""
    m, _, h, w = img.shape
    big = F.pad(img, (pad, pad, pad, pad), mode="reflect")
    off = torch.randint(0, 2 * pad + 1, (m, 2), generator=gen).tolist()
    out = torch.stack([big[i, :, oy : oy + h, ox : ox + w] for i, (oy, ox) in enumerate(off)])
    b = 1 + jitter * (2 * torch.rand(m, 1, 1, 1, generator=gen) - 1)
    c = 1 + jitter * (2 * torch.rand(m, 1, 1, 1, generator=gen) - 1)
    mean = out.mean((1, 2, 3), keepdim=True)
    out = (out - mean) * c.to(out) + mean * b.to(out)
    out = out + noise * torch.randn(out.shape, generator=gen).to(out)
    return out.clamp(0, 1)


def bands(x: torch.Tensor, s: int) -> list[torch.Tensor]:
    """DEMI's chain x_1 ⊂ ... ⊂ x_s = x: x_k shows the top k/s of the rows, the rest zeroed (deterministic)."""
    h = x.shape[-2]
    out = []
    for k in range(1, s + 1):
        keep = (torch.arange(h, device=x.device) < math.ceil(k * h / s)).to(x.dtype)
        out.append(x * keep[:, None])
    return out


class Encoder(nn.Module):
    """A small CNN for 32x32 images: 3 stages of conv-BN-ReLU (32, 64, 128 channels, stride 2 after the first),
    global average pooling -> 128 features (what the linear probe reads)."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        w = width

        def block(i: int, o: int, s: int) -> list[nn.Module]:
            return [nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]

        self.net = nn.Sequential(*block(3, w, 1), *block(w, 2 * w, 2), *block(2 * w, 2 * w, 1),
                                 *block(2 * w, 4 * w, 2), *block(4 * w, 4 * w, 1), nn.AdaptiveAvgPool2d(1),
                                 nn.Flatten())  # fmt: skip
        self.dim = 4 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _head(d_in: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_in), nn.ReLU(), nn.Linear(d_in, d_out))


class VisionCritics(nn.Module):
    """The objective's critics on image batches: scores(x, y) -> s score matrices (M x M), last(x, y) -> the full
    view's; the same interface as model.Critics, so objective.terms runs unchanged (is / sir conditionals)."""

    def __init__(self, splits: int, width: int = 32, embed: int = 64, tau: float = 0.1) -> None:
        super().__init__()
        self.splits, self.tau = int(splits), float(tau)
        self.encoder = Encoder(width)
        d = self.encoder.dim
        self.u = _head(d, embed)  # x_1 (and the full view when s = 1)
        self.v = _head(d, embed)  # y
        self.p = nn.ModuleList(_head(2 * d, embed) for _ in range(self.splits - 1))  # P of phi_k, k >= 2
        self.widths = list(range(1, self.splits + 1))
        self.baseline = nn.Parameter(torch.ones(()))
        self.register_buffer("log_ema", torch.full((), float("nan")))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def scores(self, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        views = bands(x, self.splits)
        m = x.shape[0]
        f = self.encoder(torch.cat(views, 0)).split(m)  # one encoder pass for all subviews
        ey = F.normalize(self.v(self.encoder(y)), dim=1)
        mats = [F.normalize(self.u(f[0]), dim=1) @ ey.T / self.tau]
        for k in range(1, self.splits):
            q = F.normalize(self.p[k - 1](torch.cat([f[k], f[k - 1]], 1)), dim=1)
            mats.append(q @ ey.T / self.tau)
        return mats

    def last(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The full view's matrix (non-decomposed estimators run with s = 1)."""
        return self.scores(x, y)[-1]


class VisionSource:
    """Train/test images on the device; draw(m) gives (view, view) batches; held_out gives fixed test batches."""

    stream = False
    truth: dict | None = None

    def __init__(self, root: Path, size: int, device: Any) -> None:
        xtr, ytr, xte, yte, names = read_images(root, size)
        self.root, self.names, self.size, self.device = str(root), names, size, device
        t = torch.from_numpy
        self.train = t(xtr).permute(0, 3, 1, 2).contiguous()
        self.test = t(xte).permute(0, 3, 1, 2).contiguous()
        self.ytrain, self.ytest = np.asarray(ytr), np.asarray(yte)
        self.dx = self.dy = 3 * size * size

    def batch_size(self, m: int, split: str = "train") -> int:
        return min(m, len(self.train if split == "train" else self.test))

    def _views(self, imgs: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = imgs.float().div(255)
        return augment(x, gen).to(self.device), augment(x, gen).to(self.device)

    def draw(self, m: int) -> Any:
        m = self.batch_size(m)

        def draw(gen: Any) -> tuple[torch.Tensor, torch.Tensor]:
            idx = torch.randperm(len(self.train), generator=gen)[:m]
            return self._views(self.train[idx], gen)

        return draw

    def held_out(self, split: str, m: int, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(11 if split == "val" else 13)
        m = self.batch_size(m, "test")
        return [self._views(self.test[torch.randperm(len(self.test), generator=gen)[:m]], gen) for _ in range(n)]

    def oracle(self) -> None:
        return None


@torch.no_grad()
def embed(model: VisionCritics, imgs: torch.Tensor, device: Any, batch: int = 512) -> np.ndarray:
    model.eval()
    out = [model.features(imgs[i : i + batch].float().div(255).to(device)).cpu() for i in range(0, len(imgs), batch)]
    return torch.cat(out).numpy()


def linear_probe(model: VisionCritics, src: VisionSource, device: Any, sizes: tuple[int, ...] = (10000,),
                 seed: int = 0) -> list[float]:  # fmt: skip
    """Test accuracies of logistic regressions on the encoder's pooled features (standardised), one per label budget
    in sizes: the first n rows of one seeded permutation of the train images, embedded once for all budgets."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    idx = np.random.default_rng(seed).permutation(len(src.train))[: max(sizes)]
    ftr, fte = embed(model, src.train[idx], device), embed(model, src.test, device)
    out = []
    for n in sizes:
        sc = StandardScaler().fit(ftr[:n])
        clf = LogisticRegression(max_iter=2000, C=1.0).fit(sc.transform(ftr[:n]), src.ytrain[idx[:n]])
        out.append(float((clf.predict(sc.transform(fte)) == src.ytest).mean()))
    return out


def write_default(root: Path) -> Path:
    """The embedded image default: sklearn's 1,797 digits at 32x32 RGB as a CIFAR-10 folder (longtail's writer)."""
    LD.write_default(root)
    return root


# ------------------------------------------------------------------------------------------------ predict
def parse_image_pair(line: str, n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """'a.png;b.png' (or tab-separated) -> two uint8 [3, size, size] tensors; DataError naming the line or file."""
    parts = [p.strip() for p in (line.split(";") if ";" in line else line.split("\t"))]
    if len(parts) != 2 or not all(parts):
        raise DataError(f"expected 'image_a;image_b', got {line.strip()[:60]!r}", f"stdin line {n}",
                        "One pair of image paths per line, separated by ';' or a tab.")  # fmt: skip
    out = []
    for p in parts:
        img = LD.read_image(Path(p).expanduser()).convert("RGB").resize((size, size))
        out.append(torch.from_numpy(np.asarray(img, np.uint8).copy()).permute(2, 0, 1))
    return out[0], out[1]


@torch.no_grad()
def pointwise(model: VisionCritics, a: list[torch.Tensor], b: list[torch.Tensor], ref: torch.Tensor, device: Any
              ) -> torch.Tensor:  # fmt: skip
    """Pointwise MI of image pairs: l(a, b) - log mean_r exp l(a, ref_r), l = the sum of the terms' scores."""
    model.eval()
    x = torch.stack(a).float().div(255).to(device)
    y = torch.cat([torch.stack(b), ref]).float().div(255).to(device)
    m = x.shape[0]
    lab = sum(model.scores(x, y))
    return (lab[:, :m].diagonal() - (lab[:, m:].logsumexp(1) - math.log(ref.shape[0]))).cpu()


def sample_pairs(run_dir: Path, k: int) -> list[str]:
    """k 'a.png;b.png' lines from the run's reference images (written as PNGs under <run dir>/samples/)."""
    from PIL import Image

    ckpt = torch.load(Path(run_dir) / "weights" / "last.pt", map_location="cpu", weights_only=True)
    ref = ckpt["extra"]["reference"]
    folder = Path(run_dir) / "samples"
    folder.mkdir(exist_ok=True)
    paths = []
    for i in range(min(2 * k, len(ref))):
        paths.append(folder / f"ref{i}.png")
        Image.fromarray(ref[i].permute(1, 2, 0).numpy()).save(paths[-1])
    return [f"{paths[2 * i]};{paths[2 * i + 1]}" for i in range(len(paths) // 2)]
