"""Networks for ner: the bidirectional Lattice LSTM and the BiLSTM baselines, all ending in the same CRF."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from mlkit.kernels.crf import crf_nll_autograd, crf_nll_torch, viterbi
from mlkit.kernels.lattice import lattice
from mlkit.kernels.lattice_ref import lattice_sentence_torch


def _orthogonal(rows: int, cols: int) -> nn.Parameter:
    w = torch.empty(cols, rows)
    nn.init.orthogonal_(w)
    return nn.Parameter(w.t().contiguous())


class Dropout(nn.Dropout):
    """nn.Dropout with the mask drawn by `torch.rand` (same distribution; ~3x faster than bernoulli_ on CPU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.p >= 1:
            return torch.zeros_like(x)
        keep = torch.rand_like(x) >= self.p
        return x * keep.to(x.dtype).mul_(1.0 / (1.0 - self.p))


class LatticeDirection(nn.Module):
    """Parameters of one lattice direction (spec §2.3-2.4, init §2.6: orthogonal inputs, identity recurrences)."""

    def __init__(self, dc: int, dw: int, hid: int) -> None:
        super().__init__()
        eye = torch.eye(hid)
        self.Wx = _orthogonal(dc, 3 * hid)
        self.Wh = nn.Parameter(torch.cat([eye, eye, eye], 1))
        self.b = nn.Parameter(torch.zeros(3 * hid))
        self.Ux = _orthogonal(dc, hid)
        self.Uc = nn.Parameter(eye.clone())
        self.u = nn.Parameter(torch.zeros(hid))
        self.Vx = _orthogonal(dw, 3 * hid)
        self.Vh = nn.Parameter(torch.cat([eye, eye, eye], 1))
        self.v = nn.Parameter(torch.zeros(3 * hid))

    def params(self) -> dict[str, torch.Tensor]:
        return dict(self.named_parameters())


class NERModel(nn.Module):
    """Embeddings -> encoder (lattice | BiLSTM) -> linear emissions -> linear-chain CRF."""

    def __init__(
        self,
        arch: str,
        sizes: dict[str, int],
        mcfg: dict[str, Any],
        init: dict[str, np.ndarray] | None = None,
    ) -> None:
        super().__init__()
        self.arch = arch
        self.per_sentence = (
            False  # original-style training: per-sentence lattice loop, autograd CRF (benchmarks)
        )
        init = init or {}
        self.char_emb = self._emb("char", sizes["chars"], mcfg["char_dim"], init)
        dim = self.char_emb.embedding_dim
        if arch in ("char+bichar", "char+bichar+softword", "softlexicon"):
            self.bichar_emb = self._emb("bichar", sizes["bichars"], mcfg["bichar_dim"], init)
            dim += self.bichar_emb.embedding_dim
        if arch == "char+bichar+softword":
            self.seg_emb = nn.Embedding(4, mcfg["seg_dim"])
            dim += mcfg["seg_dim"]
        if arch in ("lattice", "softlexicon"):
            self.word_emb = self._emb("word", sizes["words"], mcfg["word_dim"], init)
            if arch == "lattice" and mcfg.get("word_emb", "shared") == "per_direction":
                # the original: each direction owns a copy of the word table (same initial rows), and draws its
                # own lattice-dropout mask
                self.word_emb_b = self._emb("word", sizes["words"], mcfg["word_dim"], init)
                with torch.no_grad():
                    self.word_emb_b.weight.copy_(self.word_emb.weight)
            self.register_buffer(
                "word_freq", torch.tensor(init.get("word_freq", np.ones(sizes["words"])), dtype=torch.float32)
            )
        hid = mcfg["hidden"] // 2
        self.drop = Dropout(mcfg["dropout"])
        self.word_drop = Dropout(mcfg["lattice_dropout"])
        if arch == "lattice":
            dw = self.word_emb.embedding_dim
            self.fwd = LatticeDirection(dim, dw, hid)
            self.bwd = LatticeDirection(dim, dw, hid)
        else:
            if arch == "softlexicon":
                dim += 4 * self.word_emb.embedding_dim
            self.lstm = nn.LSTM(dim, hid, batch_first=True, bidirectional=True)
        n_tags = sizes["labels"]
        self.out = nn.Linear(2 * hid, n_tags)
        self.transitions = nn.Parameter(torch.zeros(n_tags + 2, n_tags + 2))

    @staticmethod
    def _emb(name: str, n: int, dim: int, init: dict[str, np.ndarray]) -> nn.Embedding:
        mat = init.get(name)
        if mat is not None:
            return nn.Embedding.from_pretrained(torch.from_numpy(mat).clone(), freeze=False, padding_idx=0)
        scale = float(np.sqrt(3.0 / dim))
        emb = nn.Embedding(n, dim, padding_idx=0)
        nn.init.uniform_(emb.weight, -scale, scale)
        with torch.no_grad():
            emb.weight[0].zero_()
        return emb

    def _inputs(self, batch: dict[str, Any]) -> torch.Tensor:
        parts = [self.char_emb(batch["chars"])]
        if hasattr(self, "bichar_emb"):
            parts.append(self.bichar_emb(batch["bichars"]))
        if hasattr(self, "seg_emb"):
            parts.append(self.seg_emb(batch["segs"]))
        if self.arch == "softlexicon":
            parts.append(self._soft_lexicon(batch))
        return self.drop(torch.cat(parts, -1))

    def _soft_lexicon(self, batch: dict[str, Any]) -> torch.Tensor:
        """SoftLexicon (Ma et al. 2020): per char, frequency-weighted mean of B/M/E/S word sets, 4/Z scaled."""
        n, m = batch["chars"].shape
        dev = batch["chars"].device
        dw = self.word_emb.embedding_dim
        wb, ws, wl = batch["wb"], batch["ws"], batch["wl"]
        span = wl - ws + 1
        rep = np.repeat(np.arange(len(ws)), span)
        pos = ws[rep] + (np.arange(len(rep)) - np.repeat(np.cumsum(span) - span, span))
        kind = np.where(
            pos == ws[rep], 0, np.where(pos == wl[rep], 2, 1)
        )  # B, M, E (S: length-1 words unused)
        slot = torch.from_numpy((wb[rep] * m + pos) * 4 + kind).to(dev)
        wid = batch["wid"][torch.from_numpy(rep).to(dev)]
        z = self.word_freq[wid]
        sums = torch.zeros(n * m * 4, dw, device=dev).index_add(
            0, slot, z[:, None] * self.word_drop(self.word_emb(wid))
        )
        zs = torch.zeros(n * m * 4, device=dev).index_add(0, slot, z)
        empty = zs == 0
        none = self.word_drop(self.word_emb.weight[2]).unsqueeze(0)
        sums = torch.where(empty[:, None], none.expand_as(sums), sums)
        zs = torch.where(empty, torch.ones_like(zs), zs)
        total = zs.view(n * m, 4).sum(1, keepdim=True)
        pooled = 4 * sums.view(n * m, 4, dw) / total.unsqueeze(2)
        return pooled.view(n, m, 4 * dw)

    def emissions(self, batch: dict[str, Any]) -> torch.Tensor:
        """Emission scores [B, m, T]."""
        x = self._inputs(batch)
        lengths = batch["lengths"]
        if self.arch == "lattice":
            xw = self.word_drop(self.word_emb(batch["wid"]))
            if hasattr(self, "word_emb_b"):  # [2, W, Dw]: forward and backward word inputs
                xw = torch.stack([xw, self.word_drop(self.word_emb_b(batch["wid"]))])
            if self.per_sentence:
                h = self._lattice_per_sentence(x, xw, batch)
            else:
                h = lattice(x, lengths, xw, batch["plan"], self.fwd.params(), self.bwd.params())
        else:
            packed = nn.utils.rnn.pack_padded_sequence(
                x, lengths.cpu(), batch_first=True, enforce_sorted=False
            )
            h, _ = self.lstm(packed)
            h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=x.shape[1])
        return self.out(self.drop(h))

    def _lattice_per_sentence(self, x: torch.Tensor, xw: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        rows = []
        wb, ws, wl = batch["wb"], batch["ws"], batch["wl"]
        pf, pb = self.fwd.params(), self.bwd.params()
        for i, n in enumerate(batch["lengths"].tolist()):
            sel = np.nonzero(wb == i)[0]
            xi, xwi = x[i, :n], xw[..., torch.from_numpy(sel).to(x.device), :]
            xf, xb = (xwi[0], xwi[1]) if xwi.dim() == 3 else (xwi, xwi)
            h = torch.cat(
                [
                    lattice_sentence_torch(xi, ws[sel], wl[sel], xf, pf, False),
                    lattice_sentence_torch(xi, ws[sel], wl[sel], xb, pb, True),
                ],
                -1,
            )
            rows.append(nn.functional.pad(h, (0, 0, 0, x.shape[1] - n)))
        return torch.stack(rows)

    def loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """CRF negative log-likelihood per sentence (summed over its tokens, spec §2.5) -> [B].

        The per-sentence (original-style) model differentiates the forward algorithm by autograd, as the
        original does; the batched model uses the hand-written forward-backward kernels. Same values."""
        nll = crf_nll_autograd if self.per_sentence else crf_nll_torch
        return nll(self.emissions(batch), batch["tags"], batch["lengths"], self.transitions)

    @torch.no_grad()
    def decode(self, batch: dict[str, Any]) -> list[list[int]]:
        """Viterbi tag ids per sentence (Numba on CPU, torch on CUDA)."""
        return viterbi(self.emissions(batch), batch["lengths"], self.transitions)
