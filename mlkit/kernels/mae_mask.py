"""MAE's per-sample random masking and the decoder's unshuffle (LiVT's MGP hot spot, spec longtail §2.1, §5).

The encoder must see only the kept 25 % of the patch tokens: `random_masking` gathers them (batched argsort of
uniform noise, keep the first `len_keep`), `unshuffle` puts the encoded visible tokens back in patch order with
the mask token in every masked slot for the decoder. Both are plain batched torch (CPU and CUDA alike, autograd
through the gathers); `random_masking_ref` / `unshuffle_ref` are the per-sample NumPy loops they are checked
against (tests/kernels/test_mae_mask.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def keep_count(num_tokens: int, mask_ratio: float) -> int:
    """Tokens kept per sample: int(N (1 - ratio)), at least 1 (MAE's rounding)."""
    return max(1, int(num_tokens * (1.0 - float(mask_ratio))))


# ------------------------------------------------------------------------------------------------ reference
def random_masking_ref(
    x: np.ndarray, noise: np.ndarray, mask_ratio: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(visible (B, K, D), mask (B, N) with 1 = removed, ids_restore (B, N)), one sample at a time."""
    b, n, d = x.shape
    k = keep_count(n, mask_ratio)
    vis = np.zeros((b, k, d), x.dtype)
    mask = np.ones((b, n), np.float32)
    restore = np.zeros((b, n), np.int64)
    for i in range(b):
        order = sorted(range(n), key=lambda j: (noise[i, j], j))  # ascending noise: small = keep
        for pos, j in enumerate(order):
            restore[i, j] = pos
        for pos in range(k):
            vis[i, pos] = x[i, order[pos]]
            mask[i, order[pos]] = 0.0
    return vis, mask, restore


def unshuffle_ref(vis: np.ndarray, mask_token: np.ndarray, ids_restore: np.ndarray) -> np.ndarray:
    """Tokens in patch order: slot j takes visible token ids_restore[j] if it was kept, else the mask token."""
    b, k, d = vis.shape
    n = ids_restore.shape[1]
    out = np.zeros((b, n, d), vis.dtype)
    for i in range(b):
        for j in range(n):
            r = ids_restore[i, j]
            out[i, j] = vis[i, r] if r < k else mask_token.reshape(d)
    return out


# ------------------------------------------------------------------------------------------------ torch path
def random_masking(x: Any, mask_ratio: float, noise: Any = None) -> tuple[Any, Any, Any, Any]:
    """(visible tokens (B, K, D), mask (B, N) 1 = removed, ids_restore (B, N), ids_keep (B, K)).

    noise: (B, N) uniform scores (drawn from torch's global generator when None); the K smallest are kept."""
    import torch

    b, n, d = x.shape
    k = keep_count(n, mask_ratio)
    if noise is None:
        noise = torch.rand(b, n, device=x.device)
    ids_shuffle = torch.argsort(noise, dim=1, stable=True)
    ids_restore = torch.argsort(ids_shuffle, dim=1, stable=True)
    ids_keep = ids_shuffle[:, :k]
    vis = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(b, k, d))
    mask = torch.ones(b, n, device=x.device, dtype=x.dtype)
    mask[:, :k] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return vis, mask, ids_restore, ids_keep


def unshuffle(vis: Any, mask_token: Any, ids_restore: Any) -> Any:
    """Visible tokens (B, K, D) and the mask token (1, 1, D) -> (B, N, D) in patch order."""
    import torch

    b, k, d = vis.shape
    n = ids_restore.shape[1]
    full = torch.cat([vis, mask_token.to(vis.dtype).expand(b, n - k, d)], dim=1)
    return torch.gather(full, 1, ids_restore.unsqueeze(-1).expand(b, n, d))
