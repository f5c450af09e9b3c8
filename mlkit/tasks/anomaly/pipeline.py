"""M3DM per-category pipeline pieces: cached extraction, banks, scoring of one sample, fusion, checkpoint state."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlkit.tasks.anomaly.data import Sample, load
from mlkit.tasks.anomaly.memory import (
    MODALITIES,
    BankWriter,
    coreset_plan,
    coreset_sizes,
    fit_ocsvm,
    scalar_stats,
    score_bank,
    subsample_bank,
    upsample_map,
)
from mlkit.tasks.anomaly.model import UFF, fuse


@dataclass
class CategoryState:
    """What scoring one category needs: normalised banks, scalar norms, fusion weights and thresholds."""

    banks: dict[str, torch.Tensor] = field(default_factory=dict)
    norm: dict[str, tuple[float, float]] = field(default_factory=dict)
    scale_img: dict[str, float] = field(default_factory=dict)
    scale_pix: dict[str, float] = field(default_factory=dict)
    w_img: np.ndarray | None = None
    w_pix: np.ndarray | None = None
    thr: float = float("inf")
    pix_thr: float = float("inf")


def extract(
    samples: list[Sample], extractor: Any, cache: Path | None, track: Any, label: str
) -> tuple[list, tuple[float, float]]:
    """Pass A: features of every sample, cached as float16 .npy when `cache` is set.

    Returns (pairs, (wall s, CPU s) per freshly extracted sample); CPU time (all threads of this process) is the
    number that does not depend on how busy a shared machine is.
    """
    out, spent, cpu, n = [], 0.0, 0.0, 0
    for i, s in enumerate(track(samples, label)):
        rgb_p = cache / f"{i:04d}_rgb.npy" if cache else None
        pt_p = cache / f"{i:04d}_pt.npy" if cache else None
        if rgb_p is not None and rgb_p.is_file() and pt_p.is_file():
            out.append((np.load(rgb_p, mmap_mode="r"), np.load(pt_p, mmap_mode="r")))
            continue
        t0, c0 = time.perf_counter(), time.process_time()
        rgb, pt = extractor(load(s, extractor.size))
        spent += time.perf_counter() - t0
        cpu += time.process_time() - c0
        n += 1
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)
            np.save(rgb_p, rgb.astype(np.float16))
            np.save(pt_p, pt.astype(np.float16))
            out.append((np.load(rgb_p, mmap_mode="r"), np.load(pt_p, mmap_mode="r")))
        else:
            out.append((rgb.astype(np.float16), pt.astype(np.float16)))
    return out, (spent / max(1, n), cpu / max(1, n))


def features_of(mod: str, rgb: np.ndarray, pt: np.ndarray, uff: UFF | None, device: str, bg: str = "drop"
                ) -> np.ndarray:  # fmt: skip
    """The raw patch rows of one sample for one bank.

    bg "drop": fused rows of patches without point support (x_pt = 0, background) are returned as zeros: they are
    dropped from the bank like the pt bank's zero rows, and `score_sample` gives them distance 0. bg "reference"
    keeps them as the original computes them ([chi_pt(0) || chi_rgb(x_rgb)]: near-constant rows that match each
    other), which costs coreset time (75% of a synthetic fs bank) and lets background RGB texture score.
    """
    if mod == "rgb":
        return np.asarray(rgb, np.float32)
    if mod == "pt":
        return np.asarray(pt, np.float32)
    fs = fuse(uff, rgb, pt, device)
    if bg == "drop":
        fs[~np.any(np.asarray(pt) != 0, axis=1)] = 0.0
    return fs


def build_banks(
    feats: list,
    mode: str,
    uff: UFF | None,
    cfg: dict[str, Any],
    folder: Path,
    seed: int,
    device: str,
    log: Any,
) -> CategoryState:
    """Raw float16 memmap banks (zero rows dropped) -> scalar norms -> coreset -> normalised float32 banks."""
    mods = MODALITIES[mode]
    need = set(mods) | ({"pt", "rgb"} if cfg["memory"]["norm"] == "reference" else set())
    rgb0, pt0 = feats[0]
    dims = {"rgb": rgb0.shape[1], "pt": pt0.shape[1], "fs": rgb0.shape[1] + pt0.shape[1]}
    rows_per = {"rgb": rgb0.shape[0], "pt": pt0.shape[0], "fs": pt0.shape[0]}
    writers = {m: BankWriter(folder / f"bank_{m}.npy", rows_per[m] * len(feats), dims[m]) for m in need}
    for rgb, pt in feats:
        for m in need:
            writers[m].add(features_of(m, rgb, pt, uff, device, cfg["memory"]["fs_background"]))
    raw = {m: w.rows() for m, w in writers.items()}
    st = CategoryState()
    stats = {m: scalar_stats(raw[m]) for m in need}
    for m in mods:
        st.norm[m] = (stats["pt"][0], stats["rgb"][1]) if cfg["memory"]["norm"] == "reference" else stats[m]
    sizes = coreset_sizes({m: len(raw[m]) for m in mods}, rows_per["pt"] * len(feats), cfg)
    for m in mods:  # the memory bound first, before the greedy loops run
        if 0 < sizes[m] < len(raw[m]):
            pool, width, peak = coreset_plan(len(raw[m]), dims[m], sizes[m], cfg)
            log(f"  coreset {m}: {sizes[m]} of {pool} rows on a {width}-d projection, peak ≈ {peak / 2**20:.0f} MiB "
                f"(raw bank {len(raw[m]) * dims[m] * 2 / 2**20:.0f} MiB float16 on disk)")  # fmt: skip
    for k, m in enumerate(mods):
        rows = (
            subsample_bank(raw[m], sizes[m], cfg, seed + k, device) if len(raw[m]) else np.zeros((0, dims[m]))
        )
        mu, sd = st.norm[m]
        bank = (rows - mu) / sd
        if m == "pt" or len(bank) == 0:  # background test patches (all zero) find an exact match in pt
            bank = np.concatenate([bank, np.full((1, dims[m]), -mu / sd)])
        st.banks[m] = torch.from_numpy(bank.astype(np.float32))
        log(f"  bank {m}: {len(raw[m])} non-zero rows -> {len(bank)} kept (dim {dims[m]})")
    return st


def score_sample(
    st: CategoryState,
    rgb: np.ndarray,
    pt: np.ndarray,
    mode: str,
    uff: UFF | None,
    cfg: dict[str, Any],
    device: str,
) -> dict[str, tuple[float, np.ndarray]]:
    """Per-bank (image score, blurred 224 map) of one sample."""
    out = {}
    m_cfg = cfg["memory"]
    for mod in MODALITIES[mode]:
        mu, sd = st.norm[mod]
        raw = features_of(mod, rgb, pt, uff, device, m_cfg["fs_background"])
        x = torch.from_numpy((raw - mu) / sd).float().to(device)
        bank = st.banks[mod].to(device)
        if mod == "fs" and m_cfg["fs_background"] == "drop":  # background patches: distance 0 (see features_of)
            fg = torch.from_numpy(np.any(raw != 0, axis=1)).to(device)
            s, m = (
                score_bank(x[fg], bank, bool(m_cfg["reweight"]), int(m_cfg["chunk"]))
                if fg.any()
                else (0.0, None)
            )
            full = torch.zeros(len(x), device=device)
            if m is not None:
                full[fg] = m
            m = full
        else:
            s, m = score_bank(x, bank, bool(m_cfg["reweight"]), int(m_cfg["chunk"]))
        out[mod] = (s, upsample_map(m, int(cfg["image_size"]), float(m_cfg["blur_sigma"])))
    return out


def combine(
    st: CategoryState, scores: dict[str, tuple[float, np.ndarray]], mode: str
) -> tuple[float, np.ndarray]:
    """Decision-layer fusion: single bank -> its own score; several -> w.x over the scaled score vectors."""
    mods = MODALITIES[mode]
    if len(mods) == 1:
        s, m = scores[mods[0]]
        return float(s), m
    img = np.array([scores[m][0] / st.scale_img[m] for m in mods])
    pix = np.stack([scores[m][1] / st.scale_pix[m] for m in mods], axis=-1)
    return float(img @ st.w_img), (pix @ st.w_pix).astype(np.float32)


def fit_fusion(st: CategoryState, per_sample: list[dict[str, tuple[float, np.ndarray]]], mode: str,
               cfg: dict[str, Any], seed: int) -> None:  # fmt: skip
    """Scales (pass-C std or 1/lambda) and the two OCSVMs D_a (images) and D_s (pixels)."""
    mods = MODALITIES[mode]
    if len(mods) == 1:
        return
    f = cfg["fusion"]
    lam = dict(zip(("pt", "rgb", "fs"), f["lambdas"]))
    img = np.array([[d[m][0] for m in mods] for d in per_sample])
    rng = np.random.default_rng(seed)
    per_img = max(1, int(f["pixel_samples"]) // max(1, len(per_sample)))
    pix = []
    for d in per_sample:
        flat = np.stack([d[m][1].ravel() for m in mods], axis=-1)
        pix.append(flat[rng.choice(len(flat), min(per_img, len(flat)), replace=False)])
    pix = np.concatenate(pix)
    for k, m in enumerate(mods):
        if f["score_norm"] == "train":
            st.scale_img[m] = float(img[:, k].std()) or 1.0
            st.scale_pix[m] = float(pix[:, k].std()) or 1.0
        else:
            st.scale_img[m] = st.scale_pix[m] = 1.0 / lam[m]
    sc_i = np.array([st.scale_img[m] for m in mods])
    sc_p = np.array([st.scale_pix[m] for m in mods])
    st.w_img = fit_ocsvm(img / sc_i, cfg, seed)
    st.w_pix = fit_ocsvm(pix / sc_p, cfg, seed + 1)


# --- checkpoint state: tensors and builtins only --------------------------------------------------------------
def to_state_dict(states: dict[str, CategoryState], uff: UFF | None) -> dict[str, torch.Tensor]:
    """Flatten banks (float16), norms, fusion weights and thresholds, plus the UFF weights, into tensors."""
    sd: dict[str, torch.Tensor] = {}
    if uff is not None:
        sd.update({f"uff.{k}": v.detach().cpu() for k, v in uff.state_dict().items()})
    for cat, st in states.items():
        p = f"cat.{cat}."
        for m, b in st.banks.items():
            sd[p + f"bank.{m}"] = b.half()
            sd[p + f"norm.{m}"] = torch.tensor(st.norm[m], dtype=torch.float64)
        for m in st.scale_img:
            sd[p + f"scale.{m}"] = torch.tensor([st.scale_img[m], st.scale_pix[m]], dtype=torch.float64)
        if st.w_img is not None:
            sd[p + "w_img"] = torch.from_numpy(st.w_img)
            sd[p + "w_pix"] = torch.from_numpy(st.w_pix)
        sd[p + "thr"] = torch.tensor([st.thr, st.pix_thr], dtype=torch.float64)
    return sd


def from_state_dict(
    sd: dict[str, torch.Tensor], extra: dict[str, Any], cfg: dict[str, Any]
) -> tuple[dict, UFF | None]:
    """Rebuild the per-category states and the UFF module from a checkpoint."""
    uff = None
    if extra.get("uff"):
        d_rgb, d_pt = extra["dims"]
        uff = UFF(d_pt, d_rgb, int(cfg["uff"]["hidden_ratio"]))
        uff.load_state_dict({k[4:]: v for k, v in sd.items() if k.startswith("uff.")})
        uff.eval()
    states = {}
    for cat in extra["categories"]:
        p = f"cat.{cat}."
        st = CategoryState()
        for m in MODALITIES[extra["modalities"]]:
            st.banks[m] = sd[p + f"bank.{m}"].float()
            mu, s = sd[p + f"norm.{m}"].tolist()
            st.norm[m] = (mu, s)
            if p + f"scale.{m}" in sd:
                st.scale_img[m], st.scale_pix[m] = sd[p + f"scale.{m}"].tolist()
        if p + "w_img" in sd:
            st.w_img, st.w_pix = sd[p + "w_img"].numpy(), sd[p + "w_pix"].numpy()
        st.thr, st.pix_thr = sd[p + "thr"].tolist()
        states[cat] = st
    return states, uff
