"""Corpora, lexicon, vectors and raw-text handling for ner (spec §3, §8)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from mlkit.core.errors import DataError

Sentence = tuple[list[str], list[str]]  # chars, BMES tags
LAYOUT_HINT = (
    "Expected <root>/{train,dev,test}.char.bmes (or {train,dev,test}.*.bmes, or train/dev/test *.bio|*.bioes|*.txt) "
    "with one '<char> <tag>' per line and a blank line between sentences."
)
SPLIT_PUNCT = "。！？；!?;"
_DIGITS = re.compile(r"\d")


def normalize(text: str) -> str:
    """Map every digit to 0 (number_normalized=True of the original)."""
    return _DIGITS.sub("0", text)


# --- tagged files ---
def read_tagged(path: Path) -> list[Sentence]:
    """Read '<char> <tag>' lines (whitespace separated: first field char, last field tag), blank line = break."""
    out: list[Sentence] = []
    chars: list[str] = []
    tags: list[str] = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"not valid UTF-8 at byte {exc.start}", str(path), "Convert the file to UTF-8."
        ) from None
    for no, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            if chars:
                out.append((chars, tags))
                chars, tags = [], []
            continue
        if len(fields) < 2:
            raise DataError(f"line {no} has no tag: {line.strip()[:40]!r}", str(path), LAYOUT_HINT)
        chars.append(fields[0][0] if len(fields[0]) > 1 else fields[0])
        tags.append(fields[-1])
    if chars:
        out.append((chars, tags))
    return out


def detect_scheme(sentences: Sequence[Sentence]) -> str:
    """bmes when M- tags occur, bioes when E-/S- occur with I-, bio when only B/I/O, else bmes."""
    prefixes = {t.split("-", 1)[0].upper() for _, tags in sentences for t in tags if "-" in t}
    if "M" in prefixes:
        return "bmes"
    if "I" in prefixes and prefixes & {"E", "S"}:
        return "bioes"
    if "I" in prefixes:
        return "bio"
    return "bmes"


def to_bmes(tags: Sequence[str], scheme: str) -> list[str]:
    """Convert BIO or BIOES tags to BMES (I -> M; BIO spans get E/S ends)."""
    if scheme == "bmes":
        return list(tags)
    split = [(t.split("-", 1)[0].upper(), t.split("-", 1)[1]) if "-" in t else ("O", "") for t in tags]
    if scheme == "bioes":
        return [
            f"M-{typ}" if p == "I" else (tags[i] if p != "O" else "O") for i, (p, typ) in enumerate(split)
        ]
    out = []
    for i, (p, typ) in enumerate(split):
        if p == "O":
            out.append("O")
            continue
        nxt = split[i + 1] if i + 1 < len(split) else ("O", "")
        cont = nxt[0] == "I" and nxt[1] == typ
        if p == "B":
            out.append(f"B-{typ}" if cont else f"S-{typ}")
        else:
            prev = split[i - 1] if i else ("O", "")
            opened = prev[0] in ("B", "I") and prev[1] == typ
            if not opened:
                out.append(f"B-{typ}" if cont else f"S-{typ}")
            else:
                out.append(f"M-{typ}" if cont else f"E-{typ}")
    return out


def find_splits(root: Path) -> dict[str, Path]:
    """Locate train/dev/test files in `root` (spec §3.1 search order)."""
    if not root.is_dir():
        raise DataError("data path is not a folder", str(root), LAYOUT_HINT)
    found: dict[str, Path] = {}
    for split in ("train", "dev", "test"):
        patterns = [
            f"{split}.char.bmes",
            f"{split}.*.bmes",
            f"{split}*.bmes",
            f"{split}*.bioes",
            f"{split}*.bio",
            f"{split}*.txt",
        ]
        for pat in patterns:
            hits = sorted(root.glob(pat))
            if hits:
                found[split] = hits[0]
                break
    if "train" not in found:
        raise DataError("no training file found", str(root), LAYOUT_HINT)
    return found


def load_corpus(
    root: Path, scheme: str, dev_fraction: float, seed: int, warn=None
) -> dict[str, list[Sentence]]:
    """Read the splits, convert tags to BMES, carve dev from train when it is missing."""
    files = find_splits(Path(root))
    raw = {k: read_tagged(p) for k, p in files.items()}
    if not raw["train"]:
        raise DataError("the training file holds no sentences", str(files["train"]), LAYOUT_HINT)
    sch = scheme if scheme != "auto" else detect_scheme(raw["train"])
    if sch not in ("bmes", "bio", "bioes"):
        raise DataError(f"unknown tag scheme '{scheme}'", None, "Use auto, bmes, bio or bioes.")
    out = {k: [(c, to_bmes(t, sch)) for c, t in v] for k, v in raw.items()}
    if "dev" not in out:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(out["train"]))
        n_dev = max(1, int(round(dev_fraction * len(order))))
        out["dev"] = [out["train"][i] for i in sorted(order[:n_dev])]
        out["train"] = [out["train"][i] for i in sorted(order[n_dev:])]
        if warn:
            warn(f"no dev file in {root}: carved {n_dev} sentences ({dev_fraction:.0%}) off train")
    if "test" not in out:
        out["test"] = out["dev"]
        if warn:
            warn(f"no test file in {root}: test metrics are computed on dev")
    return out


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


def data_root(cfg: dict) -> Path:
    """The dataset folder: --data, or the synthetic corpus of spec §7A (built once into $MLKIT_CACHE)."""
    if cfg["data"] is not None:
        return Path(cfg["data"])
    from mlkit.core.artifact import cached
    from mlkit.tasks.ner.synth import write_corpus

    s = {k: cfg["synth"][k] for k in ("chars", "lexicon_size", "train", "dev", "test", "seed")}
    return cached("ner-synth", s, lambda tmp: write_corpus(tmp, **s))


# --- lexicon ---
def training_lexicon(cfg: dict, root: Path) -> tuple[list[str], str]:
    """The lexicon's words and source: --lexicon, the synthetic corpus' lexicon.txt, or jieba's dict.txt."""
    lc = cfg["lexicon"]
    path = lc["path"]
    if path is None:
        path = root / "lexicon.txt" if cfg["data"] is None else jieba_dict_path()
    return read_lexicon(Path(path), lc["min_len"], lc["max_len"], cfg["number_normalized"]), str(path)


def jieba_dict_path() -> Path:
    """jieba's dict.txt inside the installed package."""
    try:
        return Path(str(resources.files("jieba").joinpath("dict.txt")))
    except ModuleNotFoundError:
        raise DataError(
            "jieba is not installed", None, "pip install jieba (its dict.txt is the default lexicon)"
        ) from None


def read_lexicon(path: Path, min_len: int, max_len: int, number_normalized: bool) -> list[str]:
    """Words of a lexicon file (first field per line: plain lists and jieba's 'word freq pos' both work)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError("lexicon file not found", str(path), "Pass an existing file to --lexicon.") from None
    except UnicodeDecodeError:
        raise DataError("lexicon is not valid UTF-8", str(path), "Convert it to UTF-8.") from None
    seen: set[str] = set()
    words: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        w = normalize(fields[0]) if number_normalized else fields[0]
        if min_len <= len(w) <= max_len and w not in seen:
            seen.add(w)
            words.append(w)
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
    try:
        fh = p.open(encoding="utf-8")
    except FileNotFoundError:
        raise DataError("vector file not found", str(p), "Pass an existing word2vec text file.") from None
    dim = None
    with fh:
        for no, line in enumerate(fh, 1):
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
