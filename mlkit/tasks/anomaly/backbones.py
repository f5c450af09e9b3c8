"""The paper's extractors: a timm ViT (DINO ViT-B/8 weights from a local file) and the Point-MAE encoder (§2.3-2.4).

No weights are downloaded. Without a file both get random init (shape and code-path tests only). With a file,
keys are prefix-stripped and the load fails when fewer than 95% of the model's keys were found.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mlkit.core.errors import DataError, UsageError

PREFIXES = ("module.", "MAE_encoder.", "base_model.", "backbone.", "model.")


def strip_prefixes(sd: dict[str, Any]) -> dict[str, Any]:
    """Drop leading wrapper prefixes (module., MAE_encoder., base_model., backbone., model.) from every key."""
    out = {}
    for k, v in sd.items():
        changed = True
        while changed:
            changed = False
            for p in PREFIXES:
                if k.startswith(p):
                    k, changed = k[len(p) :], True
        out[k] = v
    return out


def load_weights(model: nn.Module, path: str, min_fraction: float = 0.95) -> float:
    """Load a local checkpoint non-strictly after prefix stripping; exit 3 when < min_fraction of keys match."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(
            f"weights file not found: {p}", None, "Pass an existing local .pth file (nothing is downloaded)."
        )
    try:
        raw = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise DataError(
            f"cannot read weights ({type(exc).__name__})", str(p), "Pass a torch state_dict file."
        ) from None
    for key in ("base_model", "model", "state_dict", "teacher"):
        if isinstance(raw, dict) and isinstance(raw.get(key), dict):
            raw = raw[key]
            break
    sd = strip_prefixes({k: v for k, v in raw.items() if torch.is_tensor(v)})
    own = model.state_dict()
    usable = {k: v for k, v in sd.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    fraction = len(usable) / max(1, len(own))
    if fraction < min_fraction:
        missing = sorted(set(own) - set(usable))[:3]
        raise DataError(
            f"only {fraction:.0%} of the model's weights found in the file (need {min_fraction:.0%}); missing e.g. {missing}",
            str(p),
            "Pass the matching checkpoint (DINO ViT-B/8 for timm:vit_base_patch8_224, pointmae_pretrain.pth for pointmae).",
        )
    model.load_state_dict(usable, strict=False)
    return fraction


class ViTPatches(nn.Module):
    """A timm ViT run block by block (robust to timm API drift): last-layer patch tokens as (B, h, w, C)."""

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit
        self.embed_dim = int(vit.embed_dim)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.vit
        h, w = x.shape[2] // v.patch_embed.patch_size[0], x.shape[3] // v.patch_embed.patch_size[1]
        t = v.patch_embed(x)
        if hasattr(v, "_pos_embed"):
            t = v._pos_embed(t)
        else:
            t = torch.cat([v.cls_token.expand(len(t), -1, -1), t], dim=1) + v.pos_embed
        if hasattr(v, "norm_pre"):
            t = v.norm_pre(t)
        for blk in v.blocks:
            t = blk(t)
        t = v.norm(t)
        t = t[:, getattr(v, "num_prefix_tokens", 1) :]
        return t.reshape(len(t), h, w, -1)


def build_vit(spec: str, device: str) -> ViTPatches:
    """`arch[@weights.pth]` -> a timm ViT (pretrained=False) with the local weights loaded."""
    import timm

    arch, _, weights = spec.partition("@")
    try:
        vit = timm.create_model(arch, pretrained=False, num_classes=0)
    except Exception as exc:  # noqa: BLE001 - unknown names and bad kwargs
        raise UsageError(
            f"timm cannot build '{arch}' ({exc})", "rgb_backbone", "Use e.g. timm:vit_base_patch8_224."
        ) from None
    if weights:
        load_weights(vit, weights)
    return ViTPatches(vit).eval().to(device)


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential()
        self.mlp.fc1 = nn.Linear(dim, 4 * dim)
        self.mlp.act = nn.GELU()
        self.mlp.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


class _Blocks(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([_Block(dim, heads) for _ in range(depth)])


class _MiniPointNet(nn.Module):
    def __init__(self, out: int = 384) -> None:
        super().__init__()
        self.first_conv = nn.Sequential(
            nn.Conv1d(3, 128, 1), nn.BatchNorm1d(128), nn.ReLU(inplace=True), nn.Conv1d(128, 256, 1)
        )
        self.second_conv = nn.Sequential(
            nn.Conv1d(512, 512, 1), nn.BatchNorm1d(512), nn.ReLU(inplace=True), nn.Conv1d(512, out, 1)
        )

    def forward(self, groups: torch.Tensor) -> torch.Tensor:  # (B, G, k, 3) -> (B, G, out)
        b, g, k, _ = groups.shape
        f = self.first_conv(groups.reshape(b * g, k, 3).transpose(2, 1))
        glob = f.max(dim=2, keepdim=True).values
        f = self.second_conv(torch.cat([glob.expand(-1, -1, k), f], dim=1))
        return f.max(dim=2).values.reshape(b, g, -1)


class PointMAEEncoder(nn.Module):
    """Point-MAE encoder (dim 384, 12 blocks, 6 heads, qkv_bias False); outputs blocks 3, 7, 11 normed -> 1152."""

    embed_dim = 1152

    def __init__(self, dim: int = 384, depth: int = 12, heads: int = 6) -> None:
        super().__init__()
        self.encoder = _MiniPointNet(dim)
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, dim))
        self.blocks = _Blocks(dim, depth, heads)
        self.norm = nn.LayerNorm(dim)

    @torch.no_grad()
    def forward(self, neighbourhoods: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        x = self.encoder(neighbourhoods)
        pos = self.pos_embed(centres)
        feats = []
        for i, blk in enumerate(self.blocks.blocks):
            x = blk(x + pos)  # pos is re-added before every block
            if i in (3, 7, 11):
                feats.append(self.norm(x))
        return torch.cat(feats, dim=-1)


def build_pointmae(weights: str | None, device: str) -> PointMAEEncoder:
    """The Point-MAE encoder, with a local checkpoint (ckpt['base_model'], prefixes stripped) when given."""
    model = PointMAEEncoder()
    if weights:
        load_weights(model, weights)
    return model.eval().to(device)


def pointmae_point_features(
    model: PointMAEEncoder, pts: np.ndarray, cfg: dict[str, Any], device: str
) -> np.ndarray:
    """FPS centres, kNN groups re-centred, encoder tokens (G, 1152), 3-NN interpolation back to every point."""
    from mlkit.kernels.fps import fps
    from mlkit.kernels.knn import knn
    from mlkit.tasks.anomaly.features import interpolate_3nn

    if len(pts) == 0:
        return np.zeros((0, PointMAEEncoder.embed_dim), dtype=np.float32)
    g = min(int(cfg["points"]["groups"]), len(pts))
    k = min(int(cfg["points"]["group_size"]), len(pts))
    p = torch.from_numpy(np.ascontiguousarray(pts, dtype=np.float32)).to(device)
    centre_idx = fps(p, g)
    centres = p[torch.as_tensor(centre_idx, device=p.device)]
    _, nn_idx = knn(centres, p, k, chunk=256)
    groups = p[nn_idx] - centres[:, None]
    tokens = model(groups[None], centres[None])[0].float().cpu().numpy()
    return interpolate_3nn(centres.cpu().numpy(), tokens, pts)
