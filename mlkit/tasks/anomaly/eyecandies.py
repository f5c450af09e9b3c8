"""Eyecandies -> MVTec 3D-AD layout (spec §3): depth back-projected to an organised xyz TIFF, RGB = image_4.

Raw: <Class>/train/data/NNN_* and <Class>/test_public/data/NN_* (17 files per sample); used here: `_image_4.png`,
`_depth.png` (uint16), `_info_depth.yaml` (normalization min/max), `_pose.txt` (4x4) and `_mask.png` (test).
Depth in metres = d / 65535 * (max - min) + min; points = inverse(K4 @ pose) @ [u z, v z, z, 1] with focal 711.11 and
principal point (W/2, H/2). Axes are reordered to (x, z, y) and scaled by (0.1, -0.1, 0.1); far points (z > 1.8 m or
|x| > 1 m before scaling) are blanked. The ground under the candy is then removed by `mlkit anomaly preprocess`
(RANSAC on the border), which replaces the reference's fixed level-rotation-and-height cut.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from mlkit.core.errors import DataError

FOCAL = 711.11


def backproject(depth: np.ndarray, pose: np.ndarray, focal: float = FOCAL) -> np.ndarray:
    """Organised (H, W, 3) world points from a metric depth map and a 4x4 camera pose."""
    h, w = depth.shape
    k4 = np.array([[focal, 0, w / 2, 0], [0, focal, h / 2, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=np.float64)
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    cam = np.stack([u * depth, v * depth, depth, np.ones_like(depth)], axis=-1).reshape(-1, 4)
    world = cam @ np.linalg.inv(k4 @ pose).T
    return world[:, :3].reshape(h, w, 3)


def convert_sample(prefix: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(rgb uint8, xyz float32 in the MVTec convention, mask uint8 0/255 or None) of one raw sample."""
    files = {s: Path(f"{prefix}{s}") for s in ("_image_4.png", "_depth.png", "_info_depth.yaml", "_pose.txt")}
    for f in files.values():
        if not f.is_file():
            raise DataError(
                f"missing Eyecandies file {f.name}",
                str(f.parent),
                "Each sample needs image_4, depth, info_depth, pose.",
            )
    info = yaml.safe_load(files["_info_depth.yaml"].read_text())
    lo, hi = float(info["normalization"]["min"]), float(info["normalization"]["max"])
    with Image.open(files["_depth.png"]) as im:
        d = np.asarray(im, dtype=np.float64)
    depth = d / 65535.0 * (hi - lo) + lo
    pts = backproject(depth, np.loadtxt(files["_pose.txt"]).reshape(4, 4))
    far = (depth > 1.8) | (np.abs(pts[..., 0]) > 1) | (d == 0)
    xyz = np.stack([pts[..., 0] * 0.1, pts[..., 2] * -0.1, pts[..., 1] * 0.1], axis=-1).astype(np.float32)
    xyz[far] = 0
    with Image.open(files["_image_4.png"]) as im:
        rgb = np.asarray(im.convert("RGB"))
    mask_p = Path(f"{prefix}_mask.png")
    mask = None
    if mask_p.is_file():
        with Image.open(mask_p) as im:
            mask = ((np.asarray(im.convert("L")) > 0) * 255).astype(np.uint8)
    return rgb, xyz, mask


def convert_root(src: Path, out: Path) -> list[str]:
    """Convert every class folder of `src` into `out` (train/good, test/good, test/bad); returns the classes."""
    import tifffile

    classes = sorted(p.name for p in Path(src).iterdir() if (p / "train" / "data").is_dir())
    if not classes:
        raise DataError(
            "no Eyecandies class with train/data/ found", str(src), "Pass the raw Eyecandies root."
        )
    for cls in classes:
        for split, sub in (("train", "train"), ("test", "test_public")):
            prefixes = sorted(
                {p.name.split("_")[0] for p in (Path(src) / cls / sub / "data").glob("*_image_4.png")}
            )
            counters: dict[str, int] = {}
            for pid in prefixes:
                rgb, xyz, mask = convert_sample(Path(src) / cls / sub / "data" / pid)
                bad = mask is not None and mask.any()
                folder = (
                    out / cls / ("train/good" if split == "train" else f"test/{'bad' if bad else 'good'}")
                )
                n = counters[str(folder)] = counters.get(str(folder), -1) + 1
                for s in ("rgb", "xyz") + (("gt",) if split == "test" else ()):
                    (folder / s).mkdir(parents=True, exist_ok=True)
                Image.fromarray(rgb).save(folder / "rgb" / f"{n:03d}.png")
                tifffile.imwrite(folder / "xyz" / f"{n:03d}.tiff", xyz, photometric="rgb")
                if split == "test":
                    gt = mask if mask is not None else np.zeros(rgb.shape[:2], np.uint8)
                    Image.fromarray(gt).save(folder / "gt" / f"{n:03d}.png")
    return classes
