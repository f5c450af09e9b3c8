"""Patch features: handcrafted RGB cells (28x28) and point features aligned to the 56x56 grid (spec §2.3-2.5, §2.11)."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlkit.core.errors import UsageError
from mlkit.tasks.anomaly.data import MEAN, STD

CELL = 8  # RGB grid = image_size / 8, point grid = image_size / 4
LAB_SCALE = np.array(
    [1 / 10.0, 1 / 10.0, 1 / 10.0], dtype=np.float32
)  # Lab to about [-10, 10], near the histograms


def rgb_handcrafted(rgb: np.ndarray) -> np.ndarray:
    """40-d cell features (H/8, W/8, 40): Lab mean/std at cell and 3x3-cell context, 9-bin HOG at both, LBP-uniform."""
    from scipy.ndimage import uniform_filter
    from skimage.color import rgb2gray, rgb2lab
    from skimage.feature import local_binary_pattern

    h, w = rgb.shape[:2]
    gh, gw = h // CELL, w // CELL
    lab = rgb2lab(rgb).astype(np.float32) * LAB_SCALE

    def cells(a: np.ndarray) -> np.ndarray:  # (H, W, C) -> (gh, gw, C) cell means
        return a[: gh * CELL, : gw * CELL].reshape(gh, CELL, gw, CELL, -1).mean(axis=(1, 3))

    def context(a: np.ndarray) -> np.ndarray:  # 3x3-cell mean of cell statistics
        return uniform_filter(a, size=(3, 3, 1), mode="nearest")

    m1, m2 = cells(lab), cells(lab * lab)
    std = np.sqrt(np.clip(m2 - m1 * m1, 0, None))
    cm1, cm2 = context(m1), context(m2)
    cstd = np.sqrt(np.clip(cm2 - cm1 * cm1, 0, None))
    gray = rgb2gray(rgb).astype(np.float32)
    gy, gx = np.gradient(gray)
    mag = np.hypot(gx, gy)
    ori = np.mod(np.arctan2(gy, gx), np.pi)  # unsigned orientation
    bins = np.minimum((ori / np.pi * 9).astype(np.int64), 8)
    hog = np.zeros((h, w, 9), dtype=np.float32)
    np.put_along_axis(hog, bins[..., None], mag[..., None], axis=2)
    hog_c = cells(hog)
    hog_x = context(hog_c)
    hog_c = hog_c / (np.linalg.norm(hog_c, axis=2, keepdims=True) + 1e-6)
    hog_x = hog_x / (np.linalg.norm(hog_x, axis=2, keepdims=True) + 1e-6)
    lbp = local_binary_pattern((gray * 255).astype(np.uint8), P=8, R=1, method="uniform").astype(np.int64)
    onehot = np.zeros((h, w, 10), dtype=np.float32)
    np.put_along_axis(onehot, np.minimum(lbp, 9)[..., None], 1.0, axis=2)
    lbp_c = cells(onehot)
    return np.concatenate([m1, std, cm1, cstd, hog_c, hog_x, lbp_c], axis=2).astype(np.float32)


def pool_point_features(values: np.ndarray, valid: np.ndarray, grid: int) -> np.ndarray:
    """PFA steps 2-3: scatter per-point features to the image, zero background, AvgPool 3x3 s1, adaptive pool to grid."""
    import torch
    import torch.nn.functional as F

    h, w = valid.shape
    full = torch.zeros(values.shape[1], h, w)
    if len(values):
        full[:, torch.from_numpy(valid)] = torch.from_numpy(np.ascontiguousarray(values.T, dtype=np.float32))
    pooled = F.adaptive_avg_pool2d(F.avg_pool2d(full[None], 3, stride=1), grid)[0]
    return pooled.permute(1, 2, 0).numpy()


def interpolate_3nn(centres: np.ndarray, feats: np.ndarray, points: np.ndarray) -> np.ndarray:
    """PFA step 1: 3-NN inverse squared-distance interpolation from group centres to every point."""
    from scipy.spatial import cKDTree

    k = min(3, len(centres))
    d, i = cKDTree(centres).query(points, k=k)
    d, i = np.asarray(d).reshape(len(points), k), np.asarray(i).reshape(len(points), k)
    wgt = 1.0 / (d * d + 1e-8)
    wgt /= wgt.sum(axis=1, keepdims=True)
    return np.einsum("nk,nkd->nd", wgt, feats[i]).astype(np.float32)


class Extractor:
    """Turns one loaded sample into (rgb patches (g*g, Dr), point patches (4g*4g, Dp)) as float32."""

    def __init__(self, cfg: dict[str, Any], device: str = "cpu") -> None:
        self.cfg = cfg
        self.device = device
        self.size = int(cfg["image_size"])
        self.rgb_kind, self.rgb_model = _rgb_backbone(str(cfg["rgb_backbone"]), device)
        self.pt_kind, self.pt_model = _point_backbone(str(cfg["point_backbone"]), device)

    def __call__(self, x: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return self.rgb(x["rgb"]), self.points(x["xyz"], x["valid"])

    def rgb(self, rgb: np.ndarray) -> np.ndarray:
        if self.rgb_kind == "handcrafted":
            f = rgb_handcrafted(rgb)
        else:
            import torch

            t = torch.from_numpy(((rgb - MEAN) / STD).transpose(2, 0, 1).copy())[None].to(self.device)
            with torch.no_grad():
                f = self.rgb_model(t)[0].float().cpu().numpy()
        return f.reshape(-1, f.shape[-1])

    def points(self, xyz: np.ndarray, valid: np.ndarray) -> np.ndarray:
        grid = self.size // 4
        pts = xyz[valid]
        if self.pt_kind == "fpfh":
            per_point = fpfh_features(pts, self.cfg)
        else:
            from mlkit.tasks.anomaly.backbones import pointmae_point_features

            per_point = pointmae_point_features(self.pt_model, pts, self.cfg, self.device)
        f = pool_point_features(per_point, valid, grid)
        return f.reshape(-1, f.shape[-1])

    @property
    def dims(self) -> tuple[int, int]:
        r = 40 if self.rgb_kind == "handcrafted" else int(self.rgb_model.embed_dim)
        p = 33 if self.pt_kind == "fpfh" else 1152
        return r, p


def fpfh_features(pts: np.ndarray, cfg: dict[str, Any]) -> np.ndarray:
    """Per-point FPFH (N, 33) with the configured neighbourhood sizes."""
    from mlkit.kernels.fpfh import fpfh

    if len(pts) == 0:
        return np.zeros((0, 33), dtype=np.float32)
    return fpfh(pts, int(cfg["fpfh"]["normal_k"]), int(cfg["fpfh"]["feature_k"])).astype(np.float32)


def _rgb_backbone(spec: str, device: str) -> tuple[str, Any]:
    if spec == "handcrafted":
        return "handcrafted", None
    if spec.startswith("timm:"):
        from mlkit.tasks.anomaly.backbones import build_vit

        return "timm", build_vit(spec[5:], device)
    raise UsageError(
        f"unknown rgb backbone '{spec}'", "rgb_backbone", "Use handcrafted or timm:<arch>[@weights.pth]."
    )


def _point_backbone(spec: str, device: str) -> tuple[str, Any]:
    if spec == "fpfh":
        return "fpfh", None
    if spec.split("@")[0] == "pointmae":
        from mlkit.tasks.anomaly.backbones import build_pointmae

        return "pointmae", build_pointmae(spec.split("@", 1)[1] if "@" in spec else None, device)
    raise UsageError(f"unknown point backbone '{spec}'", "point_backbone", "Use fpfh or pointmae[@ckpt.pth].")
