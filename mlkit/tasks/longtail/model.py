"""longtail models: timm's VisionTransformer as the encoder / classifier, and the MAE wrapper of MGP (spec §2.1-2.2).

nn.Modules only: no I/O, no device logic.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from mlkit.kernels.mae_mask import random_masking, unshuffle

# name -> (patch, dim, depth, heads); `lt-tiny` is the CPU net of spec §5, the rest the original's variants
ARCHS: dict[str, tuple[int, int, int, int]] = {
    "lt-tiny": (4, 64, 4, 4),
    "vit-tiny": (16, 192, 12, 3),
    "vit-small": (16, 384, 12, 6),
    "vit-base": (16, 768, 12, 12),
    "vit-large": (16, 1024, 24, 16),
    "vit-huge": (14, 1280, 32, 16),
}


def sincos_pos_embed(dim: int, grid: int, cls_token: bool = True) -> np.ndarray:
    """Fixed 2-D sin-cos position embedding (grid*grid [+1 zero row for cls], dim), as MAE builds it."""
    assert dim % 4 == 0, "the sin-cos embedding needs dim divisible by 4"
    col, row = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64))
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))

    def one(pos: np.ndarray) -> np.ndarray:
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    emb = np.concatenate(
        [one(col), one(row)], axis=1
    )  # as MAE: first half from the column index, then the row
    if cls_token:
        emb = np.concatenate([np.zeros((1, dim)), emb], axis=0)
    return emb.astype(np.float32)


def build_vit(arch: str, img_size: int, num_classes: int, drop_path: float = 0.0) -> VisionTransformer:
    """timm ViT with a cls token, average pooling over patch tokens (cls excluded) + fc_norm, LayerNorm eps 1e-6.

    num_classes 0: the encoder of MGP (no head). With global_pool='avg' timm drops the final `norm` for fc_norm."""
    from functools import partial

    patch, dim, depth, heads = ARCHS[arch]
    vit = VisionTransformer(img_size=img_size, patch_size=patch, in_chans=3, num_classes=num_classes,
                            global_pool="avg", embed_dim=dim, depth=depth, num_heads=heads, mlp_ratio=4.0,
                            qkv_bias=True, class_token=True, drop_path_rate=drop_path,
                            norm_layer=partial(nn.LayerNorm, eps=1e-6))  # fmt: skip
    grid = img_size // patch
    with torch.no_grad():
        vit.pos_embed.copy_(torch.from_numpy(sincos_pos_embed(dim, grid))[None])
    if num_classes:
        nn.init.trunc_normal_(vit.head.weight, std=2e-5)
        nn.init.zeros_(vit.head.bias)
    return vit


def patchify(imgs: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, p*p*C), patches in the row-major order of timm's PatchEmbed."""
    b, c, h, w = imgs.shape
    x = imgs.reshape(b, c, h // p, p, w // p, p)
    return torch.einsum("bchpwq->bhwpqc", x).reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(x: torch.Tensor, p: int, c: int = 3) -> torch.Tensor:
    """Inverse of patchify for square images."""
    b, n, _ = x.shape
    g = int(round(n**0.5))
    x = x.reshape(b, g, g, p, p, c)
    return torch.einsum("bhwpqc->bchpwq", x).reshape(b, c, g * p, g * p)


class MAE(nn.Module):
    """Masked autoencoder: the ViT encoder runs on the visible tokens only; a light decoder predicts the masked patches.

    The encoder's pos_embed is the fixed sin-cos table (frozen); `norm` is MAE's encoder norm (dropped at
    fine-tuning, where the classifier pools with fc_norm)."""

    def __init__(self, encoder: VisionTransformer, dec_dim: int = 64, dec_depth: int = 1, dec_heads: int = 4,
                 mask_ratio: float = 0.75, norm_pix: bool = True) -> None:  # fmt: skip
        super().__init__()
        from functools import partial

        self.encoder = encoder
        self.encoder.pos_embed.requires_grad_(False)
        self.encoder.fc_norm = nn.Identity()  # unused by MAE (DDP needs every trainable parameter used)
        dim = encoder.embed_dim
        self.patch = encoder.patch_embed.patch_size[0]
        grid = encoder.patch_embed.grid_size[0]
        ln = partial(nn.LayerNorm, eps=1e-6)
        self.norm = ln(dim)
        self.mask_ratio, self.norm_pix = float(mask_ratio), bool(norm_pix)
        self.decoder_embed = nn.Linear(dim, dec_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dec_dim))
        self.register_buffer("decoder_pos_embed", torch.from_numpy(sincos_pos_embed(dec_dim, grid))[None])
        self.decoder_blocks = nn.ModuleList(
            [Block(dec_dim, dec_heads, 4.0, qkv_bias=True, norm_layer=ln) for _ in range(dec_depth)]
        )
        self.decoder_norm = ln(dec_dim)
        self.decoder_pred = nn.Linear(dec_dim, self.patch * self.patch * 3)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in [self.decoder_embed, self.decoder_pred, *self.decoder_blocks, self.decoder_norm]:
            m.apply(_init_weights)

    def encode(
        self, imgs: torch.Tensor, mask_ratio: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(latent (B, 1+K, D) with cls first, mask (B, N), ids_restore (B, N)); only K = N(1-ratio) tokens enter."""
        v = self.encoder
        x = v.patch_embed(imgs) + v.pos_embed[:, 1:]
        x, mask, ids_restore, _ = random_masking(x, mask_ratio)
        cls = (v.cls_token + v.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = v.norm_pre(torch.cat([cls, x], dim=1))
        return self.norm(v.blocks(x)), mask, ids_restore

    def decode(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        x = self.decoder_embed(latent)
        tokens = unshuffle(x[:, 1:], self.mask_token, ids_restore)
        x = torch.cat([x[:, :1], tokens], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]

    def loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """MSE per patch on the (per-patch normalised) pixels, averaged over masked patches only."""
        target = patchify(imgs, self.patch)
        if self.norm_pix:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        per_patch = ((pred - target) ** 2).mean(dim=-1)
        return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)

    def forward(self, imgs: torch.Tensor, mask_ratio: float | None = None) -> tuple[torch.Tensor, Any, Any]:
        ratio = self.mask_ratio if mask_ratio is None else float(mask_ratio)
        latent, mask, ids_restore = self.encode(imgs, ratio)
        pred = self.decode(latent, ids_restore)
        return self.loss(imgs, pred, mask), pred, mask


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def encoder_state(mae_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ViT weights inside an MAE state_dict (`encoder.*`), without MAE's norm and the decoder."""
    return {k[len("encoder.") :]: v for k, v in mae_state.items() if k.startswith("encoder.")}


def load_encoder(vit: VisionTransformer, state: dict[str, torch.Tensor]) -> list[str]:
    """Load encoder weights into a classifier ViT (pos_embed resampled to its grid); returns the missing keys."""
    from timm.layers import resample_abs_pos_embed

    own = vit.state_dict()
    state = dict(state)
    pe = state.get("pos_embed")
    if pe is not None and pe.shape != own["pos_embed"].shape:
        state["pos_embed"] = resample_abs_pos_embed(pe, list(vit.patch_embed.grid_size), num_prefix_tokens=1)
    keep = {
        k: v
        for k, v in state.items()
        if k in own and own[k].shape == v.shape and not k.startswith(("head.", "fc_norm."))
    }
    vit.load_state_dict(keep, strict=False)
    return sorted(set(own) - set(keep))
