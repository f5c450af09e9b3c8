"""Lexicon matching for the lattice: a character trie stored as CSR arrays, walked by a Numba kernel.

For every start b the walk follows c_b, c_{b+1}, ... through the trie until no child exists and
records every node that ends a lexicon word of length >= min_len (spec §2.1, O(n·L)). Results are flat
arrays (start, last, word_id) sorted by last then start; `last` is the index of the word's final char.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit


@dataclass(frozen=True)
class Trie:
    """CSR trie: node n's children are chars[ptr[n]:ptr[n+1]] (sorted code points) -> nodes[...]."""

    ptr: np.ndarray  # int64 [N+1]
    chars: np.ndarray  # int32 [E]
    nodes: np.ndarray  # int32 [E]
    word_id: np.ndarray  # int32 [N], -1 when no word ends at the node
    depth: np.ndarray  # int32 [N], length of the prefix the node spells


def build_trie(words: Sequence[str]) -> Trie:
    """Build the CSR trie of `words`; word i gets id i (duplicates keep the first id)."""
    children: list[dict[int, int]] = [{}]
    word_id = [-1]
    depth = [0]
    for i, w in enumerate(words):
        node = 0
        for ch in w:
            code = ord(ch)
            nxt = children[node].get(code)
            if nxt is None:
                nxt = len(children)
                children[node][code] = nxt
                children.append({})
                word_id.append(-1)
                depth.append(depth[node] + 1)
            node = nxt
        if word_id[node] < 0:
            word_id[node] = i
    ptr = np.zeros(len(children) + 1, dtype=np.int64)
    chars: list[int] = []
    nodes: list[int] = []
    for n, kids in enumerate(children):
        for code in sorted(kids):
            chars.append(code)
            nodes.append(kids[code])
        ptr[n + 1] = len(chars)
    return Trie(
        ptr=ptr,
        chars=np.asarray(chars, dtype=np.int32),
        nodes=np.asarray(nodes, dtype=np.int32),
        word_id=np.asarray(word_id, dtype=np.int32),
        depth=np.asarray(depth, dtype=np.int32),
    )


def encode(text: str) -> np.ndarray:
    """The code points of `text` as int32."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.int32).copy()


def word_index(words: Sequence[str]) -> dict[str, int]:
    """word -> first id, for match_reference."""
    index: dict[str, int] = {}
    for i, w in enumerate(words):
        index.setdefault(w, i)
    return index


def match_reference(
    text: str, words: Sequence[str], min_len: int = 2, index: dict[str, int] | None = None, longest: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Naive scan: test every substring of length >= min_len against the word set (the truth).

    `index` (from word_index) and `longest` (the longest word's length) may be passed to skip rebuilding them.
    """
    if index is None:
        index = word_index(words)
    if longest <= 0:
        longest = max((len(w) for w in index), default=0)
    out = []
    n = len(text)
    for last in range(n):
        for start in range(max(0, last - longest + 1), last - min_len + 2):
            wid = index.get(text[start : last + 1])
            if wid is not None:
                out.append((start, last, wid))
    arr = np.asarray(out, dtype=np.int64).reshape(-1, 3)
    return arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy()


@njit(cache=True)
def _child(ptr, chars, nodes, node, code):
    lo = ptr[node]
    hi = ptr[node + 1]
    while lo < hi:
        mid = (lo + hi) // 2
        c = chars[mid]
        if c < code:
            lo = mid + 1
        elif c > code:
            hi = mid
        else:
            return nodes[mid]
    return -1


@njit(cache=True)
def _walk(codes, lo, hi, ptr, chars, nodes, word_id, depth, min_len, out_s, out_l, out_w, k):
    for b in range(lo, hi):
        node = 0
        j = b
        while j < hi:
            node = _child(ptr, chars, nodes, node, codes[j])
            if node < 0:
                break
            if word_id[node] >= 0 and depth[node] >= min_len:
                if out_s.shape[0] > 0:
                    out_s[k] = b
                    out_l[k] = j
                    out_w[k] = word_id[node]
                k += 1
            j += 1
    return k


@njit(cache=True)
def match_many_numba(codes, offsets, ptr, chars, nodes, word_id, depth, min_len):
    """Match every sentence codes[offsets[s]:offsets[s+1]]; return (sent, start, last, word_id), local offsets.

    Rows are grouped by sentence, and inside a sentence sorted by last then start.
    """
    n_sent = offsets.shape[0] - 1
    empty = np.zeros(0, dtype=np.int64)
    counts = np.zeros(n_sent + 1, dtype=np.int64)
    for s in range(n_sent):
        counts[s + 1] = _walk(
            codes,
            offsets[s],
            offsets[s + 1],
            ptr,
            chars,
            nodes,
            word_id,
            depth,
            min_len,
            empty,
            empty,
            empty,
            0,
        )
    for s in range(n_sent):
        counts[s + 1] += counts[s]
    total = counts[n_sent]
    out_s = np.empty(total, dtype=np.int64)
    out_l = np.empty(total, dtype=np.int64)
    out_w = np.empty(total, dtype=np.int64)
    sent = np.empty(total, dtype=np.int64)
    for s in range(n_sent):
        lo = offsets[s]
        k0 = counts[s]
        _walk(codes, lo, offsets[s + 1], ptr, chars, nodes, word_id, depth, min_len, out_s, out_l, out_w, k0)
        k1 = counts[s + 1]
        n = offsets[s + 1] - lo
        key = np.empty(k1 - k0, dtype=np.int64)
        for t in range(k0, k1):
            out_s[t] -= lo
            out_l[t] -= lo
            key[t - k0] = out_l[t] * (n + 1) + out_s[t]
        order = np.argsort(key, kind="mergesort")
        tmp_s = out_s[k0:k1][order]
        tmp_l = out_l[k0:k1][order]
        tmp_w = out_w[k0:k1][order]
        out_s[k0:k1] = tmp_s
        out_l[k0:k1] = tmp_l
        out_w[k0:k1] = tmp_w
        sent[k0:k1] = s
    return sent, out_s, out_l, out_w


def match_numba(text: str, trie: Trie, min_len: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Match one sentence with the Numba trie walk; returns (start, last, word_id)."""
    codes = encode(text)
    offsets = np.array([0, len(codes)], dtype=np.int64)
    _, s, last, w = match_many_numba(
        codes, offsets, trie.ptr, trie.chars, trie.nodes, trie.word_id, trie.depth, min_len
    )
    return s, last, w


def match_many(
    texts: Sequence[str], trie: Trie, min_len: int = 2
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Match many sentences in one kernel call; one (start, last, word_id) triple per sentence."""
    lens = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    codes = encode("".join(texts))
    sent, s, last, w = match_many_numba(
        codes, offsets, trie.ptr, trie.chars, trie.nodes, trie.word_id, trie.depth, min_len
    )
    bounds = np.searchsorted(sent, np.arange(len(texts) + 1))
    return [(s[a:b], last[a:b], w[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
