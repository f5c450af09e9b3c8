"""The synthetic lexicon-dependence corpus of spec §7A (the task's embedded default data).

300 random CJK chars; 3,000 random lexicon words of length 2-4 typed O (70%) / PER / LOC / ORG (10% each);
word vectors e(w) = mu_type + 0.3·N(0, I) (50-d, mu_type random unit vectors); char vectors random. A
sentence concatenates 5-15 lexicon words; BMES gold tags come from its entity words. Entity words are split
50/50 into train-only and held-out halves: train sentences use the first half, dev and test sentences the
held-out half, so chars alone cannot reveal the test entities' types, while the lexicon and its vectors can.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TYPES = ("PER", "LOC", "ORG")
DIM = 50


def _tags(word: str, typ: str) -> list[str]:
    if typ == "O":
        return ["O"] * len(word)
    if len(word) == 1:
        return [f"S-{typ}"]
    return [f"B-{typ}"] + [f"M-{typ}"] * (len(word) - 2) + [f"E-{typ}"]


def _write_vec(path: Path, keys: list[str], vecs: np.ndarray) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write(f"{len(keys)} {vecs.shape[1]}\n")
        for k, v in zip(keys, vecs):
            f.write(k + " " + " ".join(f"{x:.5f}" for x in v) + "\n")


def write_corpus(
    out: Path,
    *,
    chars: int = 300,
    lexicon_size: int = 3000,
    train: int = 2000,
    dev: int = 300,
    test: int = 500,
    seed: int = 0,
) -> Path:
    """Write {train,dev,test}.char.bmes, lexicon.txt, words.vec and chars.vec into `out`; return `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    alphabet = [chr(0x4E00 + int(i)) for i in rng.choice(0x9FA5 - 0x4E00, size=chars, replace=False)]
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < lexicon_size:
        w = "".join(alphabet[int(i)] for i in rng.integers(0, chars, size=int(rng.integers(2, 5))))
        if w not in seen:
            seen.add(w)
            words.append(w)
    types = rng.choice(["O", *TYPES], size=lexicon_size, p=[0.7, 0.1, 0.1, 0.1])
    mu = {t: v / np.linalg.norm(v) for t, v in zip(["O", *TYPES], rng.normal(size=(4, DIM)))}
    wvec = np.stack([mu[t] + 0.3 * rng.normal(size=DIM) for t in types])
    o_words = [i for i, t in enumerate(types) if t == "O"]
    ent = [i for i, t in enumerate(types) if t != "O"]
    ent = [ent[int(i)] for i in rng.permutation(len(ent))]
    halves = (ent[: len(ent) // 2], ent[len(ent) // 2 :])

    def sentences(n: int, entities: list[int]) -> list[tuple[str, list[str]]]:
        rows = []
        for _ in range(n):
            text, tags = "", []
            for _ in range(int(rng.integers(5, 16))):
                pool = entities if rng.random() < 0.3 else o_words
                k = pool[int(rng.integers(0, len(pool)))]
                text += words[k]
                tags += _tags(words[k], str(types[k]))
            rows.append((text, tags))
        return rows

    splits = {
        "train": sentences(train, halves[0]),
        "dev": sentences(dev, halves[1]),
        "test": sentences(test, halves[1]),
    }
    for name, rows in splits.items():
        with (out / f"{name}.char.bmes").open("w", encoding="utf-8") as f:
            for text, tags in rows:
                f.write("".join(f"{c} {t}\n" for c, t in zip(text, tags)) + "\n")
    (out / "lexicon.txt").write_text("".join(w + "\n" for w in words), encoding="utf-8")
    _write_vec(out / "words.vec", words, wvec)
    _write_vec(out / "chars.vec", alphabet, rng.normal(size=(chars, DIM)))
    return out
