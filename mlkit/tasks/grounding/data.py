"""Assembled grounding data: the parsed corpus, the float16 feature memmap cache (built once, with per-image IoU
top-K neighbour tables and detector softmax), the vocabulary and frozen word vectors, the phrase->class map, the
training pairs and the evaluation phrases (spec §2.1, §3, §5)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlkit.core.artifact import cached
from mlkit.core.errors import DataError
from mlkit.kernels.grounding_distill import iou_neighbours
from mlkit.tasks.grounding import features as F
from mlkit.tasks.grounding.flickr import (
    LAYOUT,
    SPLITS,
    read_annotation,
    read_sentences,
    read_split,
    tokenize,
    union_box,
)

T_MAX = 10  # tokens per phrase


@dataclass
class Store:
    """The feature cache of one dataset: memmaps [N, R, ...] in image order, padded regions masked."""

    folder: Path
    feats: np.ndarray  # float16 [N, R, D]
    boxes: np.ndarray  # float32 [N, R, 4]
    rmask: np.ndarray  # bool [N, R]
    neigh: np.ndarray  # int16 [N, R, K]: top-K IoU neighbours of each region (itself first), -1 = none
    det: np.ndarray | None  # float16 [N, R, C+1]: detector softmax, column 0 = background


@dataclass
class Phrases:
    """Evaluation phrases of one split (those whose entity has a box)."""

    img: np.ndarray  # int [M] image index
    tok: np.ndarray  # int32 [M, T]
    cls: np.ndarray  # int [M] class column (1..C) or -1
    gt: np.ndarray  # float32 [M, 4] union box
    boxes: list[list[tuple]]  # every box of the entity (--gt-mode any; the pointing game)
    types: list[tuple[str, ...]]
    text: list[str]


@dataclass
class GData:
    root: Path
    ids: list[str]
    split: dict[str, np.ndarray]
    sizes: np.ndarray  # [N, 2] width, height
    store: Store
    classes: list[str]
    vocab: list[str]
    emb: np.ndarray  # [V+1, d], row 0 = padding / unknown word (zeros)
    phrase_map: dict[str, str]
    soft: dict[str, list[list[float]]]  # phrase -> [[class column, weight] x 5] (--distill soft)
    pairs: dict[str, np.ndarray] = field(default_factory=dict)  # train pairs: img, tok [Np,P,T], cls, soft
    evals: dict[str, Phrases] = field(default_factory=dict)
    mu: float = 0.0
    sigma: float = 1.0


def signature(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _build_store(
    tmp: Path, root: Path, fmt: str, ids: list[str], n_cls: int, k: int, max_regions: int
) -> None:
    shapes: list[tuple[int, int, bool]] = []
    for _, (b, f, d) in F.iter_features(root, fmt, ids, n_cls):
        shapes.append((len(b), f.shape[1], d is not None))
    r = min(max_regions, max(s[0] for s in shapes))
    dims = {s[1] for s in shapes}
    if len(dims) != 1:
        raise DataError(f"feature widths differ between images: {sorted(dims)}", str(root / "features"),
                        "Extract every image with the same backbone.")  # fmt: skip
    has_det = all(s[2] for s in shapes)
    n, dim = len(ids), dims.pop()
    mm = np.lib.format.open_memmap
    feats = mm(tmp / "feats.npy", "w+", np.float16, (n, r, dim))
    boxes = mm(tmp / "boxes.npy", "w+", np.float32, (n, r, 4))
    rmask = mm(tmp / "rmask.npy", "w+", np.bool_, (n, r))
    neigh = mm(tmp / "neigh.npy", "w+", np.int16, (n, r, k))
    det = mm(tmp / "det.npy", "w+", np.float16, (n, r, n_cls + 1)) if has_det and n_cls else None
    for i, (_, (b, f, d)) in enumerate(F.iter_features(root, fmt, ids, n_cls)):
        m = min(r, len(b))
        feats[i, :m], boxes[i, :m], rmask[i, :m] = f[:m], b[:m], True
        neigh[i] = iou_neighbours(boxes[i], rmask[i], k)
        if det is not None:
            z = d[:m] - d[:m].max(1, keepdims=True)
            e = np.exp(z)
            det[i, :m] = e / e.sum(1, keepdims=True)
    for a in (feats, boxes, rmask, neigh, det):
        if a is not None:
            a.flush()


def open_store(
    root: Path, fmt: str, ids: list[str], n_cls: int, k: int, max_regions: int, log: Any = None
) -> Store:
    fdir = root / "features"
    settings = {"root": str(root.resolve()), "sig": signature(fdir), "ids": hashlib.sha256("\n".join(ids).encode())
                .hexdigest()[:16], "fmt": fmt, "k": k, "classes": n_cls, "max_regions": max_regions}  # fmt: skip
    folder = cached("grounding-feats", settings, lambda tmp: _build_store(tmp, root, fmt, ids, n_cls, k, max_regions),
                    log=log)  # fmt: skip
    load = lambda name: np.load(folder / f"{name}.npy", mmap_mode="r")  # noqa: E731
    det = load("det") if (folder / "det.npy").is_file() else None
    return Store(folder, load("feats"), load("boxes"), load("rmask"), load("neigh"), det)


def find_glove(root: Path, path: str) -> Path:
    if path:
        return Path(path).expanduser()
    found = sorted(root.glob("glove*.txt"))
    if len(found) != 1:
        raise DataError(f"{'no' if not found else len(found)} glove*.txt word-vector files in the dataset folder",
                        str(root), "Pass the GloVe text file (e.g. glove.6B.300d.txt) with --glove.")  # fmt: skip
    return found[0]


def _head(tokens: list[str]) -> str | None:
    words = [t for t in tokens if t[0].isalnum()]
    return words[-1] if words else None


def _stem(w: str) -> str:
    return w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w


def build_phrase_map(phrases: set[str], wv: dict[str, np.ndarray], classes: list[str],
                     theta: float) -> tuple[dict[str, str], dict[str, list[list[float]]]]:  # fmt: skip
    """Normalised phrase -> class name through word vectors (spec §2.4), and the soft top-5 class weights."""
    if not classes or not wv:
        return {}, {}
    dim = len(next(iter(wv.values())))
    cvec = np.zeros((len(classes), dim), np.float32)
    token_cls: dict[str, int] = {}
    for c, name in enumerate(classes):
        toks = tokenize(name)
        vs = [wv[t] for t in toks if t in wv]
        if vs:
            cvec[c] = np.mean(vs, 0)
        for t in toks:
            token_cls.setdefault(_stem(t), c)
    cvec /= np.maximum(np.linalg.norm(cvec, axis=1, keepdims=True), 1e-8)
    hard, soft = {}, {}
    for p in sorted(phrases):
        toks = p.split()
        head = _head(toks)
        if head is None:
            continue
        vs = [wv[head]] if head in wv else [wv[t] for t in toks if t in wv]
        if not vs:
            continue
        e = np.mean(vs, 0)
        cos = cvec @ (e / max(float(np.linalg.norm(e)), 1e-8))
        best = int(cos.argmax())
        if _stem(head) in token_cls:
            hard[p] = classes[token_cls[_stem(head)]]
        elif cos[best] >= theta:
            hard[p] = classes[best]
        top = np.argsort(-cos)[:5]
        w = np.exp((cos[top] - cos[top].max()) / 0.1)
        soft[p] = [[float(c + 1), float(x)] for c, x in zip(top, w / w.sum())] + [[0.0, 0.0]] * (5 - len(top))
    return hard, soft


def read_phrase_map(path: Path, classes: list[str]) -> dict[str, str]:
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(
            f"unreadable phrase map ({type(e).__name__})", str(path), "Give JSON {phrase: class}."
        ) from None
    if not isinstance(m, dict) or not all(isinstance(v, str) for v in m.values()):
        raise DataError("phrase map is not {phrase: class name}", str(path), "Give JSON {phrase: class}.")
    bad = sorted({v for v in m.values() if v.lower() not in classes})
    if bad:
        raise DataError(f"unknown classes in the phrase map: {', '.join(bad[:5])}", str(path),
                        "Use names from features/classes.txt.")  # fmt: skip
    return {" ".join(tokenize(k)): v.lower() for k, v in m.items()}


def load(root: Path, cfg: dict, log: Any = None, vocab: list[str] | None = None,
         phrase_map: dict[str, str] | None = None) -> GData:  # fmt: skip
    """Parse the Flickr30K Entities layout under root, open (or build) the feature cache, build the text side.

    vocab / phrase_map: a trained model's (eval): phrases are encoded with them instead of the data's own."""
    if not root.is_dir():
        raise DataError("dataset folder not found", str(root), f"Expected layout: {LAYOUT}.")
    split_ids = {s: read_split(root, s) for s in SPLITS}
    ids = [i for s in SPLITS for i in split_ids[s]]
    if len(set(ids)) != len(ids):
        raise DataError(
            "an image id is listed twice in the split files", str(root), "Each id in one split only."
        )
    if not split_ids["train"]:
        raise DataError("train.txt is empty", str(root / "train.txt"), "List the training image ids.")
    index = {i: n for n, i in enumerate(ids)}
    sents = [read_sentences(root / "Sentences" / f"{i}.txt") for i in ids]
    annos = [read_annotation(root / "Annotations" / f"{i}.xml") for i in ids]
    classes = F.read_classes(root)
    fmt = F.detect_format(root) if cfg["features"] == "auto" else cfg["features"]
    store = open_store(root, fmt, ids, len(classes), int(cfg["neighbours"]), int(cfg["max_regions"]), log)
    texts = {" ".join(tokenize(p.text)) for ss in sents for s in ss for p in s.phrases}
    want = {t for p in texts for t in p.split()} | {t for c in classes for t in tokenize(c)}
    words, vecs = F.read_glove(find_glove(root, cfg["glove"]), want)
    wv = dict(zip(words, vecs))
    hard, soft = build_phrase_map(texts, wv, classes, float(cfg["theta"]))
    mp = Path(cfg["phrase_map"]).expanduser() if cfg["phrase_map"] else root / "phrase_to_label.json"
    if phrase_map is not None:
        hard = dict(phrase_map)
    elif mp.is_file():
        hard = read_phrase_map(mp, classes)
    own = sorted(words)
    emb = np.zeros((len(own) + 1, vecs.shape[1]), np.float32)
    for n, w in enumerate(own, 1):
        emb[n] = wv[w]
    data = GData(root, ids, {s: np.array([index[i] for i in split_ids[s]], np.int64) for s in SPLITS},
                 np.array([(a.width, a.height) for a in annos], np.float32), store, classes, own, emb, hard, soft)  # fmt: skip
    tid = {w: n for n, w in enumerate(vocab if vocab is not None else data.vocab, 1)}
    cid = {c: n for n, c in enumerate(classes, 1)}
    if cfg["referit"]:  # ReferIt grouping: every phrase of an image in one pseudo-sentence
        from mlkit.tasks.grounding.flickr import Sentence

        pairs = []
        for n in data.split["train"]:
            seen = {" ".join(tokenize(p.text)): p for s in sents[n] for p in s.phrases}
            pairs.append((n, Sentence([], list(seen.values()))))
    else:
        pairs = [(n, s) for n in data.split["train"] for s in sents[n]]
    p_max = max(1, max(len(s.phrases) for _, s in pairs))
    tok = np.zeros((len(pairs), p_max, T_MAX), np.int32)
    cls = np.full((len(pairs), p_max), -1, np.int16)
    sw = np.zeros((len(pairs), p_max, 5, 2), np.float32)
    for k, (_, s) in enumerate(pairs):
        for j, p in enumerate(s.phrases):
            key = " ".join(tokenize(p.text))
            tok[k, j] = encode(key, tid)
            cls[k, j] = cid.get(hard.get(key, ""), -1)
            if key in soft:
                sw[k, j] = soft[key]
    data.pairs = {"img": np.array([n for n, _ in pairs], np.int64), "tok": tok, "cls": cls, "soft": sw}
    for sp in ("val", "test"):
        data.evals[sp] = eval_phrases(data.split[sp], sents, annos, tid, cid, hard)
    data.mu, data.sigma = scalar_stats(store, data.split["train"])
    return data


def scalar_stats(store: Store, images: np.ndarray, chunk: int = 256) -> tuple[float, float]:
    """The scalar (mu, sigma) of the valid regions' features of `images`, read in chunks (float64 sums)."""
    n = s1 = s2 = 0.0
    for a in range(0, len(images), chunk):
        idx = np.sort(images[a : a + chunk])
        x = np.asarray(store.feats[idx], np.float64)[np.asarray(store.rmask[idx])]
        n, s1, s2 = n + x.size, s1 + x.sum(), s2 + (x * x).sum()
    mu = s1 / max(n, 1.0)
    return float(mu), float(max(np.sqrt(max(s2 / max(n, 1.0) - mu * mu, 0.0)), 1e-6))


def encode(phrase: str, tid: dict[str, int]) -> np.ndarray:
    out = np.zeros(T_MAX, np.int32)
    for k, t in enumerate(phrase.split()[:T_MAX]):
        out[k] = tid.get(t, 0)
    return out


def eval_phrases(images: np.ndarray, sents: list, annos: list, tid: dict, cid: dict, hard: dict) -> Phrases:
    img, tok, cls, gt, boxes, types, text = [], [], [], [], [], [], []
    for n in images:
        a = annos[n]
        for s in sents[n]:
            for p in s.phrases:
                bs = a.boxes.get(p.entity)
                if not bs or "notvisual" in p.types:
                    continue
                key = " ".join(tokenize(p.text))
                img.append(n)
                tok.append(encode(key, tid))
                cls.append(cid.get(hard.get(key, ""), -1))
                gt.append(union_box(bs))
                boxes.append(list(bs))
                types.append(p.types)
                text.append(p.text)
    return Phrases(np.array(img, np.int64), np.array(tok, np.int32).reshape(-1, T_MAX), np.array(cls, np.int64),
                   np.array(gt, np.float32).reshape(-1, 4), boxes, types, text)  # fmt: skip
