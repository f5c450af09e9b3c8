"""The region-phrase score s(r, p) = <f(v_r), g(p)> (spec §2.2): nn.Modules only."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Grounder(nn.Module):
    """Region MLP D->h->E and phrase LSTM (max over valid steps, step 0 always) + MLP, both L2-normalised.

    Region features are standardised with the scalar (mu, sigma) of the training features, kept as buffers; the
    word vectors are a frozen embedding (row 0: padding and unknown words, zeros)."""

    def __init__(self, vocab_size: int, word_dim: int, feat_dim: int, lstm_hidden: int = 300, mlp_hidden: int = 1024,
                 dim: int = 512, mu: float = 0.0, sigma: float = 1.0) -> None:  # fmt: skip
        super().__init__()
        self.embed = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        self.embed.weight.requires_grad_(False)
        self.lstm = nn.LSTM(word_dim, lstm_hidden, batch_first=True)
        self.phrase_mlp = nn.Sequential(
            nn.Linear(lstm_hidden, mlp_hidden), nn.ReLU(), nn.Linear(mlp_hidden, dim)
        )
        self.region_mlp = nn.Sequential(
            nn.Linear(feat_dim, mlp_hidden), nn.ReLU(), nn.Linear(mlp_hidden, dim)
        )
        self.register_buffer("mu", torch.tensor(float(mu)))
        self.register_buffer("sigma", torch.tensor(float(sigma)))

    def regions(self, feats: torch.Tensor) -> torch.Tensor:
        """[..., D] -> [..., E] unit vectors."""
        return F.normalize(self.region_mlp((feats.float() - self.mu) / self.sigma), dim=-1)

    def phrases(self, tok: torch.Tensor) -> torch.Tensor:
        """[N, T] token ids (0 = padding/unknown) -> [N, E] unit vectors."""
        h, _ = self.lstm(self.embed(tok.long()))
        valid = tok > 0
        valid[:, 0] = True  # the original's quirk: step 0 is always in the max, even when masked
        h = h.masked_fill(~valid[..., None], float("-inf")).amax(1)
        return F.normalize(self.phrase_mlp(h), dim=-1)

    def forward(self, feats: torch.Tensor, tok: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats [B, R, D], tok [B, P, T] -> region embeddings [B, R, E], phrase embeddings [B, P, E]."""
        b, p, t = tok.shape
        return self.regions(feats), self.phrases(tok.reshape(b * p, t)).reshape(b, p, -1)
