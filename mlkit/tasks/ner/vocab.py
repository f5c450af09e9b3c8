"""Vocabularies and batch encoding: chars, bichars, jieba seg tags, lexicon matches, labels (spec §2.1-2.2)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlkit.kernels.lattice import lattice_bi_schedule
from mlkit.kernels.ner_trie import Trie, build_trie, match_many
from mlkit.tasks.ner.corpus import load_corpus, map_types, read_label_map
from mlkit.tasks.ner.data import (
    chunk_bounds,
    embedding_matrix,
    lexicon_hash,
    normalize,
    read_vectors,
    seg_tags,
    training_lexicon,
)

PAD, UNK, NONE = "<pad>", "<unk>", "<none>"
BICHAR_END = "-null-"
WORD_ARCHS = ("lattice", "softlexicon")
BICHAR_ARCHS = ("char+bichar", "char+bichar+softword", "softlexicon")
ARCHS = ("lattice", "char", "char+bichar", "char+bichar+softword", "softlexicon")


def index(keys: Sequence[str]) -> dict[str, int]:
    return {k: i for i, k in enumerate(keys)}


@dataclass
class Vocab:
    """Everything that turns text into model indices; stored in the checkpoint as plain lists."""

    arch: str
    chars: list[str]
    bichars: list[str]
    words: list[str]  # lexicon words with an embedding row (0 PAD, 1 UNK, 2 NONE)
    labels: list[str]
    lexicon: list[str]
    word_freq: list[float]
    number_normalized: bool = True
    _trie: Trie | None = field(default=None, repr=False)
    _lex2emb: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.char_ix = index(self.chars)
        self.bichar_ix = index(self.bichars)
        self.word_ix = index(self.words)
        self.label_ix = index(self.labels)

    @property
    def uses_words(self) -> bool:
        return self.arch in WORD_ARCHS

    def trie(self) -> Trie:
        if self._trie is None:
            self._trie = build_trie(self.lexicon)
            self._lex2emb = np.asarray([self.word_ix.get(w, 1) for w in self.lexicon], dtype=np.int64)
        return self._trie

    def norm(self, chars: Sequence[str]) -> list[str]:
        return [normalize(c) for c in chars] if self.number_normalized else list(chars)

    def encode(
        self, sentences: Sequence[Sequence[str]], tags: Sequence[Sequence[str]] | None = None
    ) -> list[dict]:
        """Index arrays for each sentence (chars already split; whitespace removed)."""
        normed = [self.norm(s) for s in sentences]
        matches = match_many(["".join(s) for s in normed], self.trie()) if self.uses_words else None
        items = []
        for k, chars in enumerate(normed):
            item: dict[str, Any] = {
                "chars": np.asarray([self.char_ix.get(c, 1) for c in chars], dtype=np.int64)
            }
            if self.arch in BICHAR_ARCHS:
                bi = [a + b for a, b in zip(chars, chars[1:] + [BICHAR_END])]
                item["bichars"] = np.asarray([self.bichar_ix.get(b, 1) for b in bi], dtype=np.int64)
            if self.arch == "char+bichar+softword":
                item["segs"] = np.asarray(seg_tags("".join(sentences[k])) if chars else [], dtype=np.int64)
            if matches is not None:
                s, last, wid = matches[k]
                item["ws"], item["wl"], item["wid"] = s, last, self._lex2emb[wid]
            if tags is not None:
                item["tags"] = np.asarray(
                    [self.label_ix.get(t, self.label_ix["O"]) for t in tags[k]], dtype=np.int64
                )
            items.append(item)
        return items

    def extra(self) -> dict[str, Any]:
        return {
            "chars": self.chars,
            "bichars": self.bichars,
            "words": self.words,
            "labels": self.labels,
            "word_freq": self.word_freq,
            "number_normalized": self.number_normalized,
            "lexicon": {"words": "\n".join(self.lexicon), "sha256": lexicon_hash(self.lexicon)},
        }

    @classmethod
    def from_extra(cls, arch: str, extra: dict[str, Any]) -> Vocab:
        lex = extra["lexicon"]["words"]
        return cls(
            arch=arch,
            chars=list(extra["chars"]),
            bichars=list(extra["bichars"]),
            words=list(extra["words"]),
            labels=list(extra["labels"]),
            lexicon=lex.split("\n") if lex else [],
            word_freq=list(extra["word_freq"]),
            number_normalized=bool(extra["number_normalized"]),
        )


def build_vocab(
    arch: str,
    train: Sequence[Sequence[str]],
    all_tags: Sequence[Sequence[str]],
    lexicon: list[str],
    char_vecs: dict | None,
    bichar_vecs: dict | None,
    word_vecs: dict | None,
    number_normalized: bool,
) -> Vocab:
    """Vocabularies from train (+ pretrained keys); labels from every split; word rows for matched/pretrained words."""
    norm = (lambda c: normalize(c)) if number_normalized else (lambda c: c)
    train_n = [[norm(c) for c in s] for s in train]
    chars = [PAD, UNK] + sorted({c for s in train_n for c in s} | (set(char_vecs) if char_vecs else set()))
    bichars = [PAD, UNK]
    if arch in BICHAR_ARCHS:
        bi = {a + b for s in train_n for a, b in zip(s, s[1:] + [BICHAR_END])}
        bichars += sorted(bi | (set(bichar_vecs) if bichar_vecs else set()))
    labels = ["O"] + sorted({t for tags in all_tags for t in tags} - {"O"})
    words = [PAD, UNK, NONE]
    freq = [1.0, 1.0, 1.0]
    if arch in WORD_ARCHS and lexicon:
        probe = Vocab(arch, chars, bichars, [PAD, UNK, NONE], labels, lexicon, [1.0] * 3, number_normalized)
        counts: Counter[int] = Counter()
        for _, _, wid in match_many(["".join(s) for s in train_n], probe.trie()):
            counts.update(wid.tolist())
        keep = sorted(
            set(counts) | ({i for i, w in enumerate(lexicon) if w in word_vecs} if word_vecs else set())
        )
        words += [lexicon[i] for i in keep]
        freq += [float(counts.get(i, 0) + 1) for i in keep]
    return Vocab(arch, chars, bichars, words, labels, lexicon, freq, number_normalized)


@dataclass
class NerData:
    """A training run's corpus, vocabularies, initial embeddings and encoded (chunked) training sentences."""

    corpus: dict[str, list]
    vocab: Vocab
    init: dict[str, np.ndarray]
    lex_src: str
    items: list[dict]
    lengths: np.ndarray


def prepare(cfg: dict, root: Path, log: Callable[[str], Any], warn: Callable[[str], Any]) -> NerData:
    """Read the corpus, lexicon and vectors; build vocabularies, initial embeddings and the training items."""
    corpus = load_corpus(root, cfg["scheme"], cfg["dev_fraction"], cfg["seed"], warn, log,
                         cfg["split_files"], cfg["variant"])  # fmt: skip
    if cfg["label_map"]:
        mapping = read_label_map(cfg["label_map"], log)
        corpus = {k: map_types(v, mapping) for k, v in corpus.items()}
    arch, vc, norm = cfg["arch"], cfg["vectors"], cfg["number_normalized"]
    lexicon, lex_src = training_lexicon(cfg, log) if arch in WORD_ARCHS else ([], "")
    if cfg.get("preset") == "paper" and arch in WORD_ARCHS and not vc["word"]:
        warn("--preset paper without --word-vectors: the lexicon is jieba's dict.txt (337k words), a stand-in for "
             "the paper's ctb.50d.vec (704k words, pretrained); give --word-vectors ctb.50d.vec for the paper's")
    word_src = vc["word"]
    cv = read_vectors(vc["char"], norm) if vc["char"] else None
    bv = read_vectors(vc["bichar"], norm) if vc["bichar"] and arch not in ("char", "lattice") else None
    wv = read_vectors(word_src, norm) if word_src and arch in WORD_ARCHS else None
    for what, src, vecs in (("char", vc["char"], cv), ("bichar", vc["bichar"], bv), ("word", word_src, wv)):
        if vecs:
            log(f"read {what} vectors {src}: {len(vecs)} keys")
    tags = [t for split in corpus.values() for _, t in split]
    vocab = build_vocab(arch, [c for c, _ in corpus["train"]], tags, lexicon, cv, bv, wv, norm)
    rng = np.random.default_rng(cfg["seed"])
    mc = cfg["model"]
    init: dict[str, np.ndarray] = {}
    init["char"], hits_c = embedding_matrix(vocab.chars, mc["char_dim"], cv, True, rng)
    if arch in BICHAR_ARCHS:
        init["bichar"], _ = embedding_matrix(vocab.bichars, mc["bichar_dim"], bv, True, rng)
    if arch in WORD_ARCHS:
        init["word"], hits_w = embedding_matrix(vocab.words, mc["word_dim"], wv, False, rng)
        init["word_freq"] = np.asarray(vocab.word_freq, dtype=np.float32)
        log(
            f"lexicon {lex_src}: {len(lexicon)} words (sha256 {lexicon_hash(lexicon)[:12]}), "
            f"{len(vocab.words) - 3} with embedding rows, {hits_w} pretrained"
        )
    log(
        f"data {root}: {', '.join(f'{k} {len(v)}' for k, v in corpus.items())} sentences; "
        f"{len(vocab.chars)} chars ({hits_c} pretrained), labels {' '.join(vocab.labels)}"
    )
    max_len = cfg["max_len"]
    chunks = [(c[a:b], t[a:b]) for c, t in corpus["train"] for a, b in chunk_bounds(c, max_len) if b > a]
    items = vocab.encode([c for c, _ in chunks], [t for _, t in chunks])
    return NerData(corpus, vocab, init, lex_src, items, np.asarray([len(it["chars"]) for it in items]))


def collate(
    items: Sequence[dict], arch: str, device: str = "cpu", per_sentence: bool = False
) -> dict[str, Any]:
    """Pad a list of encoded sentences into tensors (+ lattice index plans for both directions)."""
    import torch

    lengths = np.asarray([len(it["chars"]) for it in items], dtype=np.int64)
    m = max(int(lengths.max()), 1)
    n = len(items)

    def pad(key: str) -> Any:
        arr = np.zeros((n, m), dtype=np.int64)
        for i, it in enumerate(items):
            arr[i, : len(it[key])] = it[key]
        return torch.from_numpy(arr).to(device)

    batch: dict[str, Any] = {
        "lengths": torch.from_numpy(lengths).to(device),
        "chars": pad("chars"),
        "n": n,
        "m": m,
    }
    for key in ("bichars", "segs", "tags"):
        if key in items[0]:
            batch[key] = pad(key)
    if arch in WORD_ARCHS:
        wb = np.concatenate([np.full(len(it["ws"]), i, dtype=np.int64) for i, it in enumerate(items)])
        ws = np.concatenate([it["ws"] for it in items]).astype(np.int64)
        wl = np.concatenate([it["wl"] for it in items]).astype(np.int64)
        wid = np.concatenate([it["wid"] for it in items]).astype(np.int64)
        batch.update(wb=wb, ws=ws, wl=wl, wid=torch.from_numpy(wid).to(device))
        if arch == "lattice" and not per_sentence:
            batch["plan"] = lattice_bi_schedule(lengths, wb, ws, wl)
    return batch
