"""Lexicon, vectors, raw text, long-sentence chunks and the dataset root for ner (spec §3, §8); corpora: corpus.py."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from mlkit.core.errors import DataError
from mlkit.tasks.ner.corpus import LAYOUT_HINT, load_corpus, read_tagged  # noqa: F401 - the old import path

SPLIT_PUNCT = "。！？；!?;"
_DIGITS = re.compile(r"\d")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ufeff]")


def normalize(text: str) -> str:
    """Map every digit to 0 (number_normalized=True of the original)."""
    return _DIGITS.sub("0", text)


# --- long sentences ---
def chunk_bounds(chars: Sequence[str], max_len: int) -> list[tuple[int, int]]:
    """Split [0, n) into pieces of <= max_len, cutting after 。！？； where possible, else hard."""
    n = len(chars)
    if n <= max_len:
        return [(0, n)]
    pieces: list[tuple[int, int]] = []
    a = 0
    while n - a > max_len:
        cut = -1
        for j in range(a + max_len - 1, a, -1):
            if chars[j] in SPLIT_PUNCT:
                cut = j + 1
                break
        if cut <= a:
            cut = a + max_len
        pieces.append((a, cut))
        a = cut
    pieces.append((a, n))
    return pieces


# --- raw text ---
def raw_tokens(line: str) -> tuple[list[str], list[int]]:
    """Non-whitespace code points of a line and their offsets in it."""
    chars, offsets = [], []
    for i, ch in enumerate(line):
        if not ch.isspace():
            chars.append(ch)
            offsets.append(i)
    return chars, offsets


def data_root(cfg: dict, log=None) -> Path:
    """The dataset (folder or file): --data, or the embedded jieba-lexicon corpus (built once into $MLKIT_CACHE)."""
    if cfg["data"] is not None:
        return Path(cfg["data"])
    from mlkit.core.artifact import cached
    from mlkit.tasks.ner.embedded import SETTINGS_VERSION, write_embedded

    s = {k: cfg["embedded"][k] for k in ("train", "dev", "test", "seed")}
    folder = cached(
        "ner-embedded", {**s, "version": SETTINGS_VERSION}, lambda tmp: write_embedded(tmp, **s), log=log
    )
    if log:
        log(f"no --data: the embedded corpus {folder} (jieba's nr/ns/nt words in sentence templates)")
    return folder


# --- lexicon ---
def lexicon_source(cfg: dict) -> Path:
    """--lexicon FILE; 'jieba' or no --lexicon and no word vectors: jieba's dict.txt; no --lexicon with
    --word-vectors FILE: that file (the original's lexicon is every token of its word-vector file)."""
    path, wv = cfg["lexicon"]["path"], cfg["vectors"]["word"]
    if path == "jieba" or (path is None and not wv):
        return jieba_dict_path()
    return Path(path if path is not None else wv).expanduser()


def training_lexicon(cfg: dict, log=None) -> tuple[list[str], str]:
    """The lexicon's words and source (see `lexicon_source`)."""
    lc = cfg["lexicon"]
    path = lexicon_source(cfg)
    words = read_lexicon(path, lc["min_len"], lc["max_len"], cfg["number_normalized"])
    if log:
        log(f"read lexicon {path}: {len(words)} words of length {lc['min_len']}-{lc['max_len']}")
    return words, str(path)


def jieba_dict_path() -> Path:
    """jieba's dict.txt inside the installed package."""
    try:
        return Path(str(resources.files("jieba").joinpath("dict.txt")))
    except ModuleNotFoundError:
        raise DataError(
            "jieba is not installed", None, "pip install jieba (its dict.txt is the default lexicon)"
        ) from None


def read_text(path: Path, what: str, fix: str) -> str:
    """A UTF-8 text file (a BOM is stripped); a missing file or bad UTF-8 is exit 3 naming file and line."""
    try:
        raw = Path(path).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise DataError(f"{what} not found", str(path), fix) from None
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{what} is not valid UTF-8", f"{path} line {line}", "Convert it to UTF-8.") from None


def read_lexicon(path: Path, min_len: int, max_len: int, number_normalized: bool) -> list[str]:
    """Words of a lexicon file (first field per line: plain lists, jieba's 'word freq pos' and word2vec text files
    with or without their 'N D' header all work)."""
    text = read_text(Path(path), "lexicon file", "Pass an existing file to --lexicon.")
    seen: set[str] = set()
    words: list[str] = []
    for no, line in enumerate(text.split("\n"), 1):
        fields = line.split()
        if not fields or (no == 1 and len(fields) == 2 and all(f.isdigit() for f in fields)):
            continue  # blank, or a word2vec file's 'N D' header
        if _CONTROL.search(fields[0]):
            raise DataError("control character in a lexicon word", f"{path} line {no}", "Remove it.")
        w = normalize(fields[0]) if number_normalized else fields[0]
        if min_len <= len(w) <= max_len and w not in seen:
            seen.add(w)
            words.append(w)
    if not words:
        raise DataError(f"the lexicon holds no word of length {min_len}-{max_len}", str(path),
                        "One word per line (or jieba's 'word freq pos').")  # fmt: skip
    return words


def lexicon_hash(words: Sequence[str]) -> str:
    """sha256 of the lexicon's words (order included)."""
    return hashlib.sha256("\n".join(words).encode("utf-8")).hexdigest()


# --- vectors ---
def read_vectors(path: str, number_normalized: bool = True) -> dict[str, np.ndarray]:
    """word2vec text vectors (optional 'N D' header), or 'lac' for jieba's LAC-small char vectors (128-d)."""
    if path == "lac":
        return lac_char_vectors()
    out: dict[str, np.ndarray] = {}
    p = Path(path)
    text = read_text(p, "vector file", "Pass an existing word2vec text file.")
    dim = None
    for no, line in enumerate(text.split("\n"), 1):
        fields = line.rstrip().split(" ")
        if no == 1 and len(fields) == 2 and all(f.isdigit() for f in fields):
            continue
        if len(fields) < 2:
            continue
        try:
            vec = np.asarray([float(x) for x in fields[1:]], dtype=np.float32)
        except ValueError:
            raise DataError(
                f"bad vector on line {no}", str(p), "Use word2vec text: 'word v1 v2 ...'."
            ) from None
        if not np.isfinite(vec).all():
            raise DataError("vector holds NaN or infinity", f"{p} line {no}", "Fix or drop that vector.")
        if dim is None:
            dim = vec.shape[0]
        if vec.shape[0] != dim:
            raise DataError(f"line {no} has {vec.shape[0]} values, expected {dim}", str(p))
        key = normalize(fields[0]) if number_normalized else fields[0]
        out.setdefault(key, vec)
    if not out:
        raise DataError("no vectors in file", str(p), "Use word2vec text: 'word v1 v2 ...'.")
    return out


def lac_char_vectors() -> dict[str, np.ndarray]:
    """The Baidu LAC-small char embeddings bundled in jieba (spec §3.2): 20,941 x 128 float32."""
    base = resources.files("jieba").joinpath("lac_small")
    try:
        raw = base.joinpath("model_baseline", "word_emb").read_bytes()
        vocab = base.joinpath("word.dic").read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError):
        raise DataError(
            "jieba's LAC vectors are missing", str(base), "Install jieba 0.42.1 (it ships lac_small)."
        ) from None
    mat = np.frombuffer(raw[29:], "<f4").reshape(-1, 128)
    out = {}
    for line in vocab.splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and parts[0].isdigit() and int(parts[0]) < mat.shape[0]:
            out.setdefault(parts[1], mat[int(parts[0])].copy())
    return out


def embedding_matrix(
    vocab: Sequence[str],
    dim: int,
    vectors: dict[str, np.ndarray] | None,
    unit: bool,
    rng: np.random.Generator,
) -> tuple[np.ndarray, int]:
    """Rows for `vocab` (0 = PAD): pretrained where known (unit-normalised if asked), else U(±sqrt(3/dim))."""
    if vectors:
        dim = len(next(iter(vectors.values())))
    scale = np.sqrt(3.0 / dim)
    mat = rng.uniform(-scale, scale, size=(len(vocab), dim)).astype(np.float32)
    mat[0] = 0.0
    hits = 0
    if vectors:
        for i, key in enumerate(vocab):
            v = vectors.get(key)
            if v is not None and i > 0:
                mat[i] = v / max(float(np.linalg.norm(v)), 1e-12) if unit else v
                hits += 1
    return mat, hits


def seg_tags(text: str) -> list[int]:
    """jieba segmentation of `text` as per-char BMES ids (B=0, M=1, E=2, S=3) for the softword baseline."""
    import jieba

    jieba.setLogLevel(60)
    out: list[int] = []
    for w in jieba.lcut(text, HMM=False):
        n = len(w)
        out += [3] if n == 1 else [0] + [1] * (n - 2) + [2]
    return out[: len(text)] + [3] * (len(text) - len(out))
