"""Train, evaluate and predict for ner: data -> vocab -> model -> CRF loss -> epoch loop -> spans."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from mlkit.core.errors import DataError, UsageError
from mlkit.core.metrics import span_prf, spans_from_tags
from mlkit.core.runtime import Ctx, keep_freed_memory
from mlkit.core.trainer import EpochLoop
from mlkit.tasks.ner.data import (
    chunk_bounds,
    embedding_matrix,
    jieba_dict_path,
    lexicon_hash,
    load_corpus,
    raw_tokens,
    read_lexicon,
    read_vectors,
)
from mlkit.tasks.ner.model import NERModel
from mlkit.tasks.ner.synth import write_corpus
from mlkit.tasks.ner.vocab import ARCHS, WORD_ARCHS, Vocab, build_vocab, collate

LR_POWER = {"none": 0.0, "sqrt": 0.5, "linear": 1.0}


# --- config -> data ---
def data_root(cfg: dict, ctx: Ctx) -> Path:
    """The dataset folder: --data, or the synthetic corpus (into the run dir when training, else a temp dir)."""
    if cfg["data"] is not None:
        return Path(cfg["data"])
    s = cfg["synth"]
    key = "-".join(str(s[k]) for k in ("chars", "lexicon_size", "train", "dev", "test", "seed"))
    base = (
        ctx.run_dir / "data"
        if ctx.run_dir is not None
        else Path(tempfile.gettempdir()) / f"mlkit-ner-synth-{key}"
    )
    if not (base / "train.char.bmes").exists():
        tmp = base.with_name(f"{base.name}.tmp{os.getpid()}")
        write_corpus(
            tmp,
            chars=s["chars"],
            lexicon_size=s["lexicon_size"],
            train=s["train"],
            dev=s["dev"],
            test=s["test"],
            seed=s["seed"],
        )
        try:
            os.replace(tmp, base)  # atomic: a concurrent reader never sees a half-written corpus
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another process won the race with the same corpus
    return base


def check_cfg(cfg: dict) -> None:
    """Refuse unknown choices (exit 2); apply the CPU thread setting and keep freed buffers (see runtime)."""
    if cfg["threads"] > 0:
        torch.set_num_threads(cfg["threads"])
    keep_freed_memory()
    if cfg["arch"] not in ARCHS:
        raise UsageError(f"unknown arch '{cfg['arch']}'", None, f"Use one of: {', '.join(ARCHS)}.")
    if cfg["optimizer"] not in ("sgd", "adam"):
        raise UsageError(f"unknown optimizer '{cfg['optimizer']}'", None, "Use sgd or adam.")
    if cfg["lr_scaling"] not in LR_POWER:
        raise UsageError(f"unknown lr_scaling '{cfg['lr_scaling']}'", None, "Use none, sqrt or linear.")
    if cfg["predict"]["format"] not in ("json", "conll"):
        raise UsageError(f"unknown predict format '{cfg['predict']['format']}'", None, "Use json or conll.")


def build_model(arch: str, vocab: Vocab, mcfg: dict, init: dict[str, np.ndarray] | None = None) -> NERModel:
    sizes = {
        "chars": len(vocab.chars),
        "bichars": len(vocab.bichars),
        "words": len(vocab.words),
        "labels": len(vocab.labels),
    }
    return NERModel(arch, sizes, mcfg, init)


def model_from_ckpt(ckpt: dict, device: str) -> tuple[NERModel, Vocab]:
    """Rebuild vocabularies and network from a self-contained checkpoint."""
    cfg = ckpt["config"]
    vocab = Vocab.from_extra(cfg["arch"], ckpt["extra"])
    sd = ckpt["state_dict"]
    init = {k: sd[f"{k}_emb.weight"].numpy() for k in ("char", "bichar", "word") if f"{k}_emb.weight" in sd}
    model = build_model(cfg["arch"], vocab, cfg["model"], init)
    model.load_state_dict(sd)
    return model.to(device).eval(), vocab


# --- decoding with chunking ---
def tag_sentences(
    model: NERModel,
    vocab: Vocab,
    sentences: Sequence[Sequence[str]],
    max_len: int,
    batch_size: int,
    device: str,
) -> list[list[str]]:
    """BMES tags for whole sentences: long ones are chunked at 。！？； and the pieces rejoined."""
    pieces: list[tuple[int, int, int]] = []
    for k, s in enumerate(sentences):
        pieces += [(k, a, b) for a, b in chunk_bounds(s, max_len) if b > a]
    order = sorted(range(len(pieces)), key=lambda i: pieces[i][2] - pieces[i][1])
    out: list[list[str]] = [["O"] * len(s) for s in sentences]
    model.eval()
    for a in range(0, len(order), batch_size):
        idx = order[a : a + batch_size]
        texts = [list(sentences[pieces[i][0]][pieces[i][1] : pieces[i][2]]) for i in idx]
        batch = collate(vocab.encode(texts), vocab.arch, device)
        for i, path in zip(idx, model.decode(batch)):
            k, lo, _ = pieces[i]
            out[k][lo : lo + len(path)] = [vocab.labels[t] for t in path]
    return out


def score(
    model: NERModel,
    vocab: Vocab,
    data: Sequence[tuple[list[str], list[str]]],
    cfg: dict,
    device: str,
    prefix: str,
) -> dict[str, float]:
    """Entity P/R/F1 (micro and per type) and token accuracy on tagged sentences."""
    pred = tag_sentences(
        model, vocab, [c for c, _ in data], cfg["max_len"], cfg["predict"]["batch_size"], device
    )
    gold = [t for _, t in data]
    m = span_prf(
        gold, pred, "bmes", strict=True
    )  # spec §2.9 [ours]: dangling or mixed-type spans do not count
    n_tok = sum(len(g) for g in gold)
    m["token_accuracy"] = sum(a == b for g, p in zip(gold, pred) for a, b in zip(g, p)) / max(n_tok, 1)
    return {f"{prefix}/{k}": float(v) for k, v in m.items()}


# --- train ---
def _batches(lengths: np.ndarray, batch_size: int, gen: torch.Generator) -> list[np.ndarray]:
    """Length buckets: sort by length (random tie-break), cut into batches, shuffle the batch order."""
    noise = torch.rand(len(lengths), generator=gen).numpy()
    order = np.lexsort((noise, lengths))
    batches = [order[a : a + batch_size] for a in range(0, len(order), batch_size)]
    perm = torch.randperm(len(batches), generator=gen).tolist()
    return [batches[i] for i in perm]


def _chunk_train(
    data: Sequence[tuple[list[str], list[str]]], max_len: int
) -> list[tuple[list[str], list[str]]]:
    return [(c[a:b], t[a:b]) for c, t in data for a, b in chunk_bounds(c, max_len) if b > a]


def _lexicon(cfg: dict, root: Path) -> tuple[list[str], str]:
    lc = cfg["lexicon"]
    path = lc["path"]
    if path is None:
        path = root / "lexicon.txt" if cfg["data"] is None else jieba_dict_path()
    return read_lexicon(Path(path), lc["min_len"], lc["max_len"], cfg["number_normalized"]), str(path)


def _optimizer(cfg: dict, model: NERModel) -> tuple[torch.optim.Optimizer, float]:
    if cfg["optimizer"] == "adam":
        lr = cfg["lr"]
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=cfg["weight_decay"]), lr
    lr = cfg["lr"] * cfg["batch_size"] ** LR_POWER[cfg["lr_scaling"]]
    return torch.optim.SGD(
        model.parameters(), lr=lr, momentum=cfg["momentum"], weight_decay=cfg["weight_decay"]
    ), lr


def prepare(cfg: dict, ctx: Ctx) -> tuple[dict, Vocab, dict[str, np.ndarray], str]:
    """Read the corpus, lexicon and vectors; build vocabularies and initial embedding matrices."""
    check_cfg(cfg)
    root = data_root(cfg, ctx)
    corpus = load_corpus(root, cfg["scheme"], cfg["dev_fraction"], cfg["seed"], ctx.warn)
    arch = cfg["arch"]
    lexicon, lex_src = _lexicon(cfg, root) if arch in WORD_ARCHS else ([], "")
    vc = cfg["vectors"]
    norm = cfg["number_normalized"]
    word_src = (
        vc["word"] if vc["word"] is not None else (str(root / "words.vec") if cfg["data"] is None else None)
    )
    cv = read_vectors(vc["char"], norm) if vc["char"] else None
    bv = read_vectors(vc["bichar"], norm) if vc["bichar"] and arch != "char" and arch != "lattice" else None
    wv = read_vectors(word_src, norm) if word_src and arch in WORD_ARCHS else None
    tags = [t for split in corpus.values() for _, t in split]
    vocab = build_vocab(arch, [c for c, _ in corpus["train"]], tags, lexicon, cv, bv, wv, norm)
    rng = np.random.default_rng(cfg["seed"])
    mc = cfg["model"]
    init: dict[str, np.ndarray] = {}
    init["char"], hits_c = embedding_matrix(vocab.chars, mc["char_dim"], cv, True, rng)
    if arch in ("char+bichar", "char+bichar+softword", "softlexicon"):
        init["bichar"], _ = embedding_matrix(vocab.bichars, mc["bichar_dim"], bv, True, rng)
    if arch in WORD_ARCHS:
        init["word"], hits_w = embedding_matrix(vocab.words, mc["word_dim"], wv, False, rng)
        init["word_freq"] = np.asarray(vocab.word_freq, dtype=np.float32)
        ctx.log(
            f"lexicon {lex_src}: {len(lexicon)} words (sha256 {lexicon_hash(lexicon)[:12]}), "
            f"{len(vocab.words) - 3} with embedding rows, {hits_w} pretrained"
        )
    ctx.log(
        f"data {root}: {', '.join(f'{k} {len(v)}' for k, v in corpus.items())} sentences; "
        f"{len(vocab.chars)} chars ({hits_c} pretrained), labels {' '.join(vocab.labels)}"
    )
    return corpus, vocab, init, lex_src


def train(cfg: dict, ctx: Ctx) -> dict[str, float]:
    """Train with SGD/Adam on length-bucketed batches; best dev F1 selects best.pt; report test at it."""
    corpus, vocab, init, lex_src = prepare(cfg, ctx)
    device = ctx.device
    model = build_model(cfg["arch"], vocab, cfg["model"], init).to(device)
    opt, lr0 = _optimizer(cfg, model)
    extra = vocab.extra()
    extra["lexicon"]["source"] = lex_src
    loop = EpochLoop(
        ctx, cfg, model, opt, monitor="val/f1", mode="max", patience=cfg["patience"] or None, extra=extra
    )
    train_data = _chunk_train(corpus["train"], cfg["max_len"])
    items = vocab.encode([c for c, _ in train_data], [t for _, t in train_data])
    lengths = np.asarray([len(it["chars"]) for it in items])
    for epoch in loop:
        for group in opt.param_groups:
            group["lr"] = lr0 * (1 - cfg["lr_decay"]) ** epoch
        model.train()
        total, n_sent, t0 = 0.0, 0, time.perf_counter()
        batches = _batches(lengths, cfg["batch_size"], loop.generator())
        for idx in ctx.track(batches, f"epoch {epoch + 1}"):
            batch = collate([items[i] for i in idx], vocab.arch, device)
            loss = model.loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.mean().backward()
            if cfg["clip_grad"] > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["clip_grad"])
            opt.step()
            total += float(loss.detach().sum())
            n_sent += len(idx)
        secs = time.perf_counter() - t0
        val = score(model, vocab, corpus["dev"], cfg, device, "val")
        loop.log(
            {
                "train/loss": total / max(n_sent, 1),
                "train/chars_per_s": float(lengths.sum()) / secs,
                "val/f1": val["val/f1"],
                "val/precision": val["val/precision"],
                "val/recall": val["val/recall"],
                "val/token_accuracy": val["val/token_accuracy"],
            }
        )
    model.load_state_dict(loop.best_state())
    return loop.finish(score(model, vocab, corpus["test"], cfg, device, "test"))


# --- eval / predict ---
def evaluate(cfg: dict, ctx: Ctx, ckpt: dict) -> dict[str, float]:
    """Test-split metrics of a checkpoint: entity P/R/F1 (micro and per type) and token accuracy."""
    check_cfg(cfg)
    model, vocab = model_from_ckpt(ckpt, ctx.device)
    root = data_root(cfg, ctx)
    corpus = load_corpus(root, cfg["scheme"], cfg["dev_fraction"], cfg["seed"], ctx.warn)
    known = set(vocab.labels)
    unknown = sorted({t for _, tags in corpus["test"] for t in tags} - known)
    if unknown:
        ctx.warn(f"labels not in the checkpoint are scored as O: {' '.join(unknown)}")
    test = [(c, [t if t in known else "O" for t in tags]) for c, tags in corpus["test"]]
    return score(model, vocab, test, cfg, ctx.device, "test")


def _output(line: str, chars: list[str], offsets: list[int], tags: list[str], fmt: str) -> dict | str:
    if fmt == "conll":
        return "".join(f"{c} {t}\n" for c, t in zip(chars, tags)) + "\n"
    ents = []
    for a, b, typ in spans_from_tags(tags, "bmes", strict=True):
        start, end = offsets[a], offsets[b - 1] + 1
        ents.append({"start": start, "end": end, "type": typ, "text": line[start:end]})
    return {"text": line, "entities": ents}


def predict(cfg: dict, ctx: Ctx, ckpt: dict, records: Iterable[str]) -> Iterator[dict | str]:
    """One output per input line, in order: JSON spans with offsets into the original line, or CoNLL lines."""
    check_cfg(cfg)
    if not isinstance(ckpt.get("extra"), dict) or "labels" not in ckpt["extra"]:
        raise DataError(
            "checkpoint has no ner vocabularies", None, "Pass a best.pt/last.pt written by mlkit ner."
        )
    model, vocab = model_from_ckpt(ckpt, ctx.device)
    fmt, bs = cfg["predict"]["format"], cfg["predict"]["batch_size"]
    buf: list[tuple[str, list[str], list[int]]] = []

    def flush() -> Iterator[dict | str]:
        tagged = tag_sentences(model, vocab, [c for _, c, _ in buf], cfg["max_len"], bs, ctx.device)
        for (line, chars, offs), tags in zip(buf, tagged):
            yield _output(line, chars, offs, tags, fmt)
        buf.clear()

    for line in records:
        buf.append((line, *raw_tokens(line)))
        if len(buf) >= bs:
            yield from flush()
    if buf:
        yield from flush()
