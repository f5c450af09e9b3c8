"""kge models (spec §2.3-2.4): DKGE joint embeddings (attentive one-layer GCN over the contextual subgraph plus a
global gate) and plain TransE; both score f(h, r, t) = ||o_h + o_r - o_t||_p. nn.Modules only."""

from __future__ import annotations

import math

import torch
from torch import nn


def _xavier(n: int, d: int) -> nn.Parameter:
    w = torch.empty(n, d)
    nn.init.xavier_uniform_(w)
    return nn.Parameter(w)


class TransE(nn.Module):
    """o_x = k_x (no context)."""

    arch = "transe"

    def __init__(self, n_ent: int, n_rel: int, dim: int, norm: int = 2) -> None:
        super().__init__()
        self.n_ent, self.n_rel, self.dim, self.norm = n_ent, n_rel, dim, norm
        self.ent_k = _xavier(n_ent, dim)
        self.rel_k = _xavier(n_rel, dim)

    def ent(self, ids: torch.Tensor) -> torch.Tensor:
        return self.ent_k[ids]

    def rel(self, ids: torch.Tensor) -> torch.Tensor:
        return self.rel_k[ids]

    def all_entities(self, chunk: int = 4096) -> torch.Tensor:
        return self.ent_k

    def all_relations(self) -> torch.Tensor:
        return self.rel_k

    def set_contexts(self, ctx) -> None:  # noqa: ANN001 - TransE has none
        return None

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """f(h, r, t) of a [B, 3] batch (through forward, so a DDP wrapper syncs the gradients)."""
        return score_batch(self, batch)


class DKGE(nn.Module):
    """Joint embeddings o_x = σ(g) ⊙ k_x + (1 - σ(g)) ⊙ Σ_i α_i ReLU(Â_x H_x W)[i] (spec §2.3)."""

    arch = "dkge"

    def __init__(
        self, n_ent: int, n_rel: int, dim: int, L: int = 30, norm: int = 2, mask_pads: bool = False
    ) -> None:
        super().__init__()
        self.n_ent, self.n_rel, self.dim, self.L, self.norm, self.mask_pads = (
            n_ent,
            n_rel,
            dim,
            L,
            norm,
            mask_pads,
        )
        self.ent_k = _xavier(n_ent, dim)
        self.rel_k = _xavier(n_rel, dim)
        self.ent_c = nn.Parameter(
            torch.randn(n_ent, dim)
        )  # nn.Embedding's N(0, 1); the PAD row is a zero constant
        self.rel_c = nn.Parameter(torch.randn(n_rel, dim))
        b = 1.0 / math.sqrt(dim)
        self.W_E = nn.Parameter(torch.empty(dim, dim).uniform_(-b, b))
        self.W_R = nn.Parameter(torch.empty(dim, dim).uniform_(-b, b))
        self.v_E = nn.Parameter(torch.rand(dim))
        self.v_R = nn.Parameter(torch.rand(dim))
        self.g_E = nn.Parameter(torch.rand(dim))
        self.g_R = nn.Parameter(torch.rand(dim))
        self.register_buffer("ent_ctx", torch.full((n_ent, L), n_ent, dtype=torch.long), persistent=False)
        self.register_buffer("ent_adj", torch.eye(L + 1).repeat(n_ent, 1, 1), persistent=False)
        self.register_buffer("rel_ctx", torch.full((n_rel, L, 2), n_rel, dtype=torch.long), persistent=False)
        self.register_buffer("rel_adj", torch.eye(L + 1).repeat(n_rel, 1, 1), persistent=False)

    def set_contexts(self, ctx) -> None:  # noqa: ANN001 - a context.Contexts
        dev = self.ent_k.device
        self.ent_ctx = torch.as_tensor(ctx.ent_ctx, device=dev)
        self.ent_adj = torch.as_tensor(ctx.ent_adj, device=dev)
        self.rel_ctx = torch.as_tensor(ctx.rel_ctx, device=dev)
        self.rel_adj = torch.as_tensor(ctx.rel_adj, device=dev)

    @staticmethod
    def _padded(c: torch.Tensor) -> torch.Tensor:
        return torch.cat([c, c.new_zeros(1, c.shape[1])])

    def _joint(self, k, H, adj, W, v, g, pad_mask):  # noqa: ANN001, ANN202
        Hp = torch.relu(torch.bmm(adj, H) @ W)  # [U, L+1, d]
        s = torch.relu(k.unsqueeze(1) * Hp) @ v  # [U, L+1]
        if pad_mask is not None:
            s = s.masked_fill(pad_mask, float("-inf"))
        a = torch.softmax(s, dim=1)
        z = (a.unsqueeze(2) * Hp).sum(1)
        gate = torch.sigmoid(g)
        return gate * k + (1 - gate) * z

    def ent(self, ids: torch.Tensor) -> torch.Tensor:
        k = self.ent_k[ids]
        slots = self.ent_ctx[ids]
        H = torch.cat([k.unsqueeze(1), self._padded(self.ent_c)[slots]], 1)
        mask = None
        if self.mask_pads:
            mask = torch.cat([torch.zeros_like(slots[:, :1], dtype=torch.bool), slots == self.n_ent], 1)
        return self._joint(k, H, self.ent_adj[ids], self.W_E, self.v_E, self.g_E, mask)

    def rel(self, ids: torch.Tensor) -> torch.Tensor:
        k = self.rel_k[ids]
        slots = self.rel_ctx[ids]  # [U, L, 2]
        c = self._padded(self.rel_c)
        H = torch.cat([k.unsqueeze(1), c[slots[..., 0]] + c[slots[..., 1]]], 1)
        mask = None
        if self.mask_pads:
            mask = torch.cat(
                [torch.zeros_like(slots[:, :1, 0], dtype=torch.bool), slots[..., 0] == self.n_rel], 1
            )
        return self._joint(k, H, self.rel_adj[ids], self.W_R, self.v_R, self.g_R, mask)

    def all_entities(self, chunk: int = 4096) -> torch.Tensor:
        ids = torch.arange(self.n_ent, device=self.ent_k.device)
        return torch.cat([self.ent(ids[i : i + chunk]) for i in range(0, self.n_ent, chunk)])

    def all_relations(self) -> torch.Tensor:
        return self.rel(torch.arange(self.n_rel, device=self.rel_k.device))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """f(h, r, t) of a [B, 3] batch, each distinct element's joint embedding computed once."""
        return score_batch(self, batch)


def build(arch: str, n_ent: int, n_rel: int, m: dict) -> nn.Module:
    if arch == "transe":
        return TransE(n_ent, n_rel, int(m["dim"]), int(m["norm"]))
    return DKGE(n_ent, n_rel, int(m["dim"]), int(m["context"]), int(m["norm"]), bool(m["mask_pads"]))


def score_batch(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """f for a [B, 3] (h, r, t) batch, with the joint embeddings of each distinct element computed once."""
    if isinstance(model, TransE):  # o = k: a plain gather, nothing to share
        h, r, t = model.ent_k[batch[:, 0]], model.rel_k[batch[:, 1]], model.ent_k[batch[:, 2]]
        return torch.linalg.vector_norm(h + r - t, ord=model.norm, dim=1)
    ents, inv_e = torch.unique(batch[:, [0, 2]], return_inverse=True)
    rels, inv_r = torch.unique(batch[:, 1], return_inverse=True)
    oe, orl = model.ent(ents), model.rel(rels)
    h, t, r = oe[inv_e[:, 0]], oe[inv_e[:, 1]], orl[inv_r]
    return torch.linalg.vector_norm(h + r - t, ord=model.norm, dim=1)


def score_naive(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """f with one joint-embedding computation per occurrence (the original's way; the benchmark's baseline)."""
    h, r, t = model.ent(batch[:, 0]), model.rel(batch[:, 1]), model.ent(batch[:, 2])
    return torch.linalg.vector_norm(h + r - t, ord=model.norm, dim=1)


def margin_loss(net: nn.Module, pos: torch.Tensor, neg: torch.Tensor, margin: float) -> torch.Tensor:
    """Σ max(0, γ + f(pos) - f(neg)), summed (the original's reduction); one pass for pos and neg together.
    `net` is the model or its DDP wrapper."""
    f = net(torch.cat([pos, neg]))
    return torch.relu(margin + f[: len(pos)] - f[len(pos) :]).sum()
