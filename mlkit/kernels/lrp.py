"""Hot spot of `mlkit segment`: the K class heatmaps of one batch (spec §5).

With BN in eval mode and eps -> 0, the unrolled LRP-eps decoder equals Gradient x Input (spec §2.2), so the K
decoder passes collapse into ONE batched vector-Jacobian product: autograd.grad with is_grads_batched over the K
one-hot cotangents (vmap over the backward pass), H_c = sum_channels x * dz_c/dx. With create_graph=True the
result is differentiable (double backward), so it can stand in for the decoder in an eval-BN training step.

Reference: `reference_heatmaps`, the explicit unrolled decoder (mlkit.tasks.segment.decoder) on the same encoder.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def gxi_heatmaps(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, create_graph: bool = False
                 ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(z, H): logits z = fn(x) (N, K) and heatmaps H (N, K, H, W) from one batched VJP over the K classes."""
    if not x.requires_grad:
        x = x.detach().requires_grad_(True)
    z = fn(x)
    k = z.shape[1]
    eye = torch.eye(k, dtype=z.dtype, device=z.device)[:, None, :].expand(k, *z.shape)
    (g,) = torch.autograd.grad(z, x, grad_outputs=eye, is_grads_batched=True, create_graph=create_graph)
    return z, (x[None] * g).sum(2).transpose(0, 1)


def reference_heatmaps(encoder: torch.nn.Module, x: torch.Tensor, eps: float = 1e-8
                       ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(z, H) from the explicit unrolled LRP-eps decoder tied to `encoder` (the oracle of gxi_heatmaps)."""
    from mlkit.tasks.segment.decoder import LRPDecoder

    dec = LRPDecoder(encoder, eps)
    try:
        z = dec.record(x)
        return z, dec.heatmaps(z)
    finally:
        dec.close()
