"""Lexicon matching speed: Numba CSR-trie walk vs the naive substring scan, same sentences and lexicon.

    python benchmarks/ner_match.py [--data DIR] [--lexicon FILE] [--sentences 2000]

Default: jieba's dict.txt (337k words of length >= 2) over the Resume train sentences when
../shared/data is present, else over the synthetic corpus of spec §7A. Both paths must return the same
matches (checked); the table gives chars/s and the speed-up.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from mlkit.kernels.ner_trie import build_trie, match_many, match_reference, word_index
from mlkit.tasks.ner.data import jieba_dict_path, load_corpus, normalize, read_lexicon
from mlkit.tasks.ner.synth import write_corpus

RESUME = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chinese_ner" / "resume"


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--lexicon", default=None)
    ap.add_argument("--sentences", type=int, default=2000)
    args = ap.parse_args(argv)
    root = (
        Path(args.data)
        if args.data
        else (RESUME if RESUME.is_dir() else write_corpus(Path(tempfile.mkdtemp())))
    )
    texts = [normalize("".join(c)) for c, _ in load_corpus(root, "auto", 0.1, 0)["train"][: args.sentences]]
    words = read_lexicon(Path(args.lexicon or jieba_dict_path()), 2, 12, True)
    n_chars = sum(len(t) for t in texts)
    t0 = time.perf_counter()
    trie = build_trie(words)
    t_build = time.perf_counter() - t0
    match_many(texts[:2], trie)  # JIT warm-up (cached after the first run)
    t0 = time.perf_counter()
    fast = match_many(texts, trie)
    t_fast = time.perf_counter() - t0
    index = word_index(words)
    t0 = time.perf_counter()
    longest = max(len(w) for w in words)
    slow = [match_reference(t, words, 2, index, longest) for t in texts]
    t_slow = time.perf_counter() - t0
    for (a, b, c), (x, y, z) in zip(fast, slow):
        assert np.array_equal(a, x) and np.array_equal(b, y) and np.array_equal(c, z)
    n_match = sum(len(f[0]) for f in fast)
    print(
        f"{len(texts)} sentences, {n_chars} chars, lexicon {len(words)} words (trie build {t_build:.2f} s), "
        f"{n_match} matches ({n_match / n_chars:.2f}/char)"
    )
    print(f"{'path':<14}{'seconds':>10}{'chars/s':>14}")
    print(f"{'trie (numba)':<14}{t_fast:>10.3f}{n_chars / t_fast:>14.0f}")
    print(f"{'naive scan':<14}{t_slow:>10.3f}{n_chars / t_slow:>14.0f}")
    print(f"speed-up: {t_slow / t_fast:.1f}x")
    return {
        "trie_chars_per_s": n_chars / t_fast,
        "naive_chars_per_s": n_chars / t_slow,
        "ratio": t_slow / t_fast,
    }


if __name__ == "__main__":
    main()
