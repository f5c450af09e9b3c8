"""Trie matcher (Numba over CSR arrays) against the naive substring scan."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mlkit.kernels.ner_trie import build_trie, match_many, match_numba, match_reference

ALPHABET = "abc中国人民"
words_st = st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=5), min_size=0, max_size=30)
texts_st = st.lists(st.text(alphabet=ALPHABET, min_size=0, max_size=25), min_size=1, max_size=5)


@settings(max_examples=25, deadline=None)
@given(words=words_st, texts=texts_st, min_len=st.integers(1, 3))
def test_trie_matches_naive_scan(words, texts, min_len):
    trie = build_trie(words)
    many = match_many(texts, trie, min_len)
    for text, got in zip(texts, many):
        want = match_reference(text, words, min_len)
        one = match_numba(text, trie, min_len)
        for a, b, c in zip(want, got, one):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(a, c)


def test_single_chars_skipped_and_order():
    words = ["中国", "中国人", "国人", "人", "人民"]
    s, last, w = match_numba("中国人民", build_trie(words))
    # sorted by last then start; "人" (length 1) never matches
    assert list(zip(s.tolist(), last.tolist(), w.tolist())) == [(0, 1, 0), (0, 2, 1), (1, 2, 2), (2, 3, 4)]
