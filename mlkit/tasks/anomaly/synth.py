"""The synthetic `blob` category (spec §3), written in the real MVTec 3D-AD format.

A tilted background plane 0.5 m from a pinhole camera, a torus-like "bagel" height map on it, RGB from albedo x
low-frequency texture x Lambert shading of the defect-free surface. Defects: `dent` changes only the geometry, `stain`
only the colour, `combined` both. Units are metres. Everything is seeded per sample.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

CATEGORY = "blob"
ALBEDO = np.array([0.78, 0.55, 0.30])  # bagel brown
STAIN = np.array([0.18, 0.10, 0.22])  # dark purple hue
NON_SQUARE = (208, 176)
# Spec §3 says f = 1.2 S, which leaves the 8 cm bagel at ~20% of the frame (about 10 patches across on the 56 grid).
# We use f = 3.5 S so the object fills ~60% of the frame, like the real MVTec 3D-AD captures; all sizes stay metric.
FOCAL = 3.5  # (H, W) of the last sample in every folder, to exercise padding


def write_dataset(out: Path, seed: int = 0, size: int = 192, counts: dict[str, int] | None = None) -> Path:
    """Write <out>/blob/{train,validation,test}/... and return the category folder."""
    c = {"train": 24, "validation": 4, "test_good": 8, "test_dent": 8, "test_stain": 8, "test_combined": 4}
    c.update(counts or {})
    root = Path(out) / CATEGORY
    jobs = [("train/good", "good", c["train"]), ("validation/good", "good", c["validation"])]
    jobs += [(f"test/{d}", d, c[f"test_{d}"]) for d in ("good", "dent", "stain", "combined")]
    for folder, defect, n in jobs:
        for i in range(n):
            shape = NON_SQUARE if (i == n - 1 and n >= 2) else (size, size)
            rng = np.random.default_rng([seed, zlib.crc32(folder.encode()), i])
            rgb, xyz, gt = make_sample(rng, shape, defect)
            _write(root / folder, i, rgb, xyz, gt if folder.startswith("test") else None)
    (root / "class_ids.json").write_text(json.dumps({"good": 0, "dent": 1, "stain": 2, "combined": 3}) + "\n")
    (root / "readme.txt").write_text("Synthetic `blob` category written by `mlkit anomaly synth` (metres).\n")
    return root


def make_sample(rng: np.random.Generator, shape: tuple[int, int], defect: str) -> tuple[np.ndarray, ...]:
    """One sample: rgb uint8 (H,W,3), xyz float32 (H,W,3) with zeros for missing points, gt uint8 0/255 (H,W)."""
    h_px, w_px = shape
    s = max(h_px, w_px)
    f, z0 = FOCAL * s, 0.5
    v, u = np.mgrid[0:h_px, 0:w_px].astype(np.float64)
    cu, cv = (w_px - 1) / 2, (h_px - 1) / 2
    # object-centred metric coordinates on the plane (before tilt), with a random shift and rotation
    du, dv = rng.uniform(-6, 6, size=2)
    ang = rng.uniform(0, np.pi)
    px = (u - cu - du) * z0 / f
    py = (v - cv - dv) * z0 / f
    a = np.cos(ang) * px + np.sin(ang) * py
    b = -np.sin(ang) * px + np.cos(ang) * py
    height = _bagel(a, b)
    # defects
    gt = np.zeros(shape, dtype=bool)
    dh = np.zeros(shape)
    if defect in ("dent", "combined"):
        cy, cx = _pick_on_object(rng, height, 0.8 * height.max())
        sigma = rng.uniform(4, 8) * s / 192
        amp = rng.uniform(0.002, 0.004) * rng.choice([-1.0, 1.0])
        dh = amp * np.exp(-((v - cy) ** 2 + (u - cx) ** 2) / (2 * sigma**2)) * (height > 0)
        gt |= np.abs(dh) > 0.0005
    stain = np.zeros(shape)
    if defect in ("stain", "combined"):
        cy, cx = _pick_on_object(rng, height, 0.5 * height.max())
        blob = gaussian_filter(rng.normal(size=shape), 2.0 * s / 192)
        rad = rng.uniform(8, 14) * s / 192
        d = np.sqrt((v - cy) ** 2 + (u - cx) ** 2) / rad
        mask = (1.0 - d + 2.5 * blob / (blob.std() + 1e-12) * 0.15 > 0.0) & (height > 0)
        stain = mask * rng.uniform(0.6, 0.9)
        gt |= mask
    # geometry: tilted plane, object height towards the camera, z-noise
    sx, sy = rng.uniform(-0.05, 0.05, size=2)
    z_plane = z0 + sx * (u - cu) * z0 / f + sy * (v - cv) * z0 / f
    z = z_plane - (height + dh) + rng.normal(0, 0.0001, size=shape)
    xyz = np.stack([(u - cu) * z / f, (v - cv) * z / f, z], axis=-1).astype(np.float32)
    drop = rng.random(shape) < 0.01
    drop[:3] = drop[-3:] = True
    drop[:, :3] = drop[:, -3:] = True
    xyz[drop] = 0.0
    # colour: albedo x texture x Lambert shading of the defect-free surface, grey background
    texture = 1.0 + 0.12 * sum(
        np.sin(2 * np.pi * (fa * a + fb * b) / 0.05 + ph)
        for fa, fb, ph in rng.uniform([-1, -1, 0], [1, 1, 2 * np.pi], size=(3, 3))
    )
    gy, gx = np.gradient(height, z0 / f)
    normal = np.stack([-gx, -gy, np.ones(shape)], axis=-1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    light = np.array([-0.3, -0.4, 1.0]) / np.linalg.norm([-0.3, -0.4, 1.0])
    shade = np.clip(normal @ light, 0, 1)
    obj = (height > 0)[..., None]
    colour = ALBEDO * (texture * (0.25 + 0.75 * shade))[..., None]
    colour = colour * (1 - stain[..., None]) + STAIN * stain[..., None]
    bg = 0.5 + 0.02 * rng.normal(size=shape + (1,))
    rgb = np.where(obj, colour, bg) + rng.normal(0, 0.01, size=shape + (3,))
    rgb8 = (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)
    return rgb8, xyz, gt.astype(np.uint8) * 255


def _bagel(a: np.ndarray, b: np.ndarray, r0: float = 0.03, w: float = 0.012, h0: float = 0.015) -> np.ndarray:
    """Torus-like height map (slightly elliptic, so rotation shows): H0 sqrt(1 - ((rho - R)/w)^2) inside the ring."""
    rho = np.sqrt(a**2 + (b / 0.85) ** 2)
    t = 1.0 - ((rho - r0) / w) ** 2
    return h0 * np.sqrt(np.clip(t, 0, None))


def _pick_on_object(rng: np.random.Generator, height: np.ndarray, level: float) -> tuple[float, float]:
    ys, xs = np.nonzero(height > level)
    k = rng.integers(len(ys))
    return float(ys[k]), float(xs[k])


def _write(folder: Path, i: int, rgb: np.ndarray, xyz: np.ndarray, gt: np.ndarray | None) -> None:
    import tifffile

    for sub in ("rgb", "xyz") + (("gt",) if gt is not None else ()):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(folder / "rgb" / f"{i:03d}.png")
    tifffile.imwrite(folder / "xyz" / f"{i:03d}.tiff", xyz, photometric="rgb")
    if gt is not None:
        Image.fromarray(gt).save(folder / "gt" / f"{i:03d}.png")


def embedded_root(cfg: dict[str, Any], track: Any, log: Any) -> Path:
    """The embedded default (cfg synth, preprocess, seed): `blob` preprocessed once into the mlkit cache; its root."""
    import shutil

    from mlkit.core.artifact import cached
    from mlkit.tasks.anomaly.preprocess import preprocess_root

    seed, size, prep = int(cfg["seed"]), int(cfg["synth"]["size"]), cfg["preprocess"]
    counts = {k: int(cfg["synth"][k]) for k in ("train", "validation", "test_good", "test_dent", "test_stain",
                                                "test_combined")}  # fmt: skip

    def build(tmp: Path) -> None:
        write_dataset(tmp / "raw", seed, size, counts)
        preprocess_root(tmp / "raw", tmp / "mvtec", prep, seed, track)
        shutil.rmtree(tmp / "raw")  # `mlkit anomaly synth` writes the raw category

    settings = {"seed": seed, "size": size, "counts": counts, "preprocess": prep}
    root = cached("anomaly-blob", settings, build, log=log) / "mvtec"
    log(f"synthetic `blob` category (preprocessed): {root}")
    return root
