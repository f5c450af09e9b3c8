"""The original's photometric train augmentations (spec §2.5), on HWC uint8 crops: defocus (disc blur, radius
1-5 px at 256 px, scaled with the side), brightness / contrast, colour jitter (brightness, contrast, saturation, hue)
and Gaussian noise, each applied with probability 0.5 from the batch generator. Masks are never touched."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageEnhance
from scipy.ndimage import convolve

P = 0.5  # probability of each augmentation


def _u(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(1, generator=gen))


def _hit(gen: torch.Generator) -> bool:
    return bool(torch.rand(1, generator=gen) < P)


def disc_kernel(radius: float) -> np.ndarray:
    """A normalised disc of the given radius (>= 1 px wide)."""
    r = max(int(np.ceil(radius)), 1)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    k = (xx**2 + yy**2 <= max(radius, 0.5) ** 2).astype(np.float32)
    return k / k.sum()


def defocus(img: np.ndarray, radius: float) -> np.ndarray:
    k = disc_kernel(radius)[:, :, None]
    out = convolve(img.astype(np.float32), k, mode="reflect")
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def brightness_contrast(img: np.ndarray, b: float, c: float) -> np.ndarray:
    """x -> (x - mean) * (1 + c) + mean + b * 255 (albumentations-style limits of 0.2)."""
    x = img.astype(np.float32)
    m = float(x.mean())
    return np.clip((x - m) * (1.0 + c) + m + 255.0 * b, 0, 255).astype(np.uint8)


def colour_jitter(img: np.ndarray, gen: torch.Generator) -> np.ndarray:
    """Brightness, contrast and saturation factors in [0.8, 1.2], hue shifted by up to 0.2 of the circle."""
    im = Image.fromarray(img)
    for enh in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        im = enh(im).enhance(_u(gen, 0.8, 1.2))
    hsv = np.asarray(im.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int32) + int(round(_u(gen, -0.2, 0.2) * 255))) % 256
    return np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"))


def gauss_noise(img: np.ndarray, gen: torch.Generator) -> np.ndarray:
    """Additive N(0, var) noise, var in [10, 50] (on the 0-255 scale), drawn per image."""
    sd = np.sqrt(_u(gen, 10.0, 50.0))
    noise = torch.randn(img.shape, generator=gen).numpy() * sd
    return np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def photometric(img: np.ndarray, gen: torch.Generator) -> np.ndarray:
    """All four, each with probability 0.5, in the original's order."""
    if _hit(gen):
        img = defocus(img, _u(gen, 1.0, 5.0) * img.shape[0] / 256.0)
    if _hit(gen):
        img = brightness_contrast(img, _u(gen, -0.2, 0.2), _u(gen, -0.2, 0.2))
    if _hit(gen):
        img = colour_jitter(img, gen)
    if _hit(gen):
        img = gauss_noise(img, gen)
    return img
