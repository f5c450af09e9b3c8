"""Paired-array generators beyond the Gaussian (spec §3.2, §3.3), written in the x.npy + y.npy (+ truth.json) layout.

digits: sklearn's 1,797 8x8 digits (shipped inside scikit-learn, offline). x and y are two random views of the
  same image (integer shift by up to `shift` pixels, Gaussian pixel noise); x's columns are row-major pixels, so
  with --splits 2 the subview x'' is the top 4x8 half-image and x' the bottom half. MI unknown (no truth.json).
markov: token sequences of a random first-order Markov chain over `vocab` symbols. x = the last `context` tokens,
  one-hot, most recent first (so x'' = the last token, the first subview); y = the next `horizon` tokens, one-hot.
  For a stationary first-order chain I(x; y) = I(X_0; X_1) = H(pi) - sum_i pi_i H(P_i.) exactly (the future
  depends on the past only through the last token), written to truth.json as {"mi": I} (no per-term truth: the
  chain's later terms are 0 nats, which the per-coordinate formula would not give).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _view(img: np.ndarray, rng: np.random.Generator, shift: int, noise: float) -> np.ndarray:
    dy, dx = rng.integers(-shift, shift + 1, 2)
    out = np.roll(np.roll(img, dy, 0), dx, 1)
    if dy > 0:
        out[:dy] = 0
    elif dy < 0:
        out[dy:] = 0
    if dx > 0:
        out[:, :dx] = 0
    elif dx < 0:
        out[:, dx:] = 0
    return out + rng.normal(0.0, noise, out.shape)


def write_digits(root: Path, rows: int, seed: int, shift: int = 1, noise: float = 0.1) -> Path:
    """`rows` pairs of views of the sklearn digits (images drawn with replacement), pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    imgs = load_digits().images / 16.0
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(imgs), rows)
    x = np.stack([_view(imgs[i], rng, shift, noise).ravel() for i in pick]).astype(np.float32)
    y = np.stack([_view(imgs[i], rng, shift, noise).ravel() for i in pick]).astype(np.float32)
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "x.npy", x)
    np.save(root / "y.npy", y)
    return root


def markov_chain(vocab: int, seed: int, concentration: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """A random transition matrix (Dirichlet rows) and its stationary distribution."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(vocab, concentration), vocab)
    w, v = np.linalg.eig(p.T)
    pi = np.real(v[:, np.argmin(np.abs(w - 1))])
    return p, pi / pi.sum()


def markov_mi(p: np.ndarray, pi: np.ndarray) -> float:
    """I(X_0; X_1) in nats of the stationary chain."""
    def h(q: np.ndarray) -> float:
        q = q[q > 0]
        return float(-(q * np.log(q)).sum())

    return h(pi) - float(sum(pi[i] * h(p[i]) for i in range(len(pi))))


def write_markov(root: Path, rows: int, seed: int, vocab: int = 8, context: int = 4, horizon: int = 2) -> Path:
    """`rows` (context, future) windows of the chain, one-hot, with truth.json {"mi": I(X_0; X_1)}."""
    p, pi = markov_chain(vocab, seed)
    rng = np.random.default_rng(seed + 1)
    n = context + horizon
    seqs = np.empty((rows, n), dtype=np.int64)
    seqs[:, 0] = rng.choice(vocab, rows, p=pi)
    cum = np.cumsum(p, 1)
    for t in range(1, n):
        u = rng.random(rows)
        seqs[:, t] = np.minimum((u[:, None] > cum[seqs[:, t - 1]]).sum(1), vocab - 1)
    eye = np.eye(vocab, dtype=np.float32)
    x = eye[seqs[:, :context][:, ::-1]].reshape(rows, -1)  # most recent token first
    y = eye[seqs[:, context:]].reshape(rows, -1)
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "x.npy", x)
    np.save(root / "y.npy", y)
    truth = {"mi": markov_mi(p, pi), "vocab": vocab, "context": context, "horizon": horizon, "seed": seed}
    (root / "truth.json").write_text(json.dumps(truth, indent=1), encoding="utf-8")
    return root
