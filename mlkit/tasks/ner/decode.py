"""Model building, chunked decoding, span scoring and predict rows for ner (no I/O, no run lifecycle)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mlkit.core.errors import DataError
from mlkit.core.metrics import span_prf, spans_from_tags
from mlkit.tasks.ner.data import chunk_bounds
from mlkit.tasks.ner.model import NERModel
from mlkit.tasks.ner.vocab import Vocab, collate

LR_POWER = {"none": 0.0, "sqrt": 0.5, "linear": 1.0}


def build_model(arch: str, vocab: Vocab, mcfg: dict, init: dict[str, np.ndarray] | None = None) -> NERModel:
    """A fresh NERModel sized by the vocabularies (init: pretrained/initial embedding matrices)."""
    sizes = {
        "chars": len(vocab.chars),
        "bichars": len(vocab.bichars),
        "words": len(vocab.words),
        "labels": len(vocab.labels),
    }
    return NERModel(arch, sizes, mcfg, init)


def model_from_ckpt(ckpt: dict, device: str) -> tuple[NERModel, Vocab]:
    """Rebuild vocabularies and network from a self-contained checkpoint (exit 3 when it holds none)."""
    if not isinstance(ckpt.get("extra"), dict) or "labels" not in ckpt["extra"]:
        raise DataError("checkpoint has no ner vocabularies", None, "Pass a best.pt/last.pt of mlkit ner.")
    cfg = ckpt["config"]
    vocab = Vocab.from_extra(cfg["arch"], ckpt["extra"])
    sd = ckpt["state_dict"]
    init = {k: sd[f"{k}_emb.weight"].numpy() for k in ("char", "bichar", "word") if f"{k}_emb.weight" in sd}
    # checkpoints from before per-direction word tables hold one table: build what the weights say
    mcfg = {**cfg["model"], "word_emb": "per_direction" if "word_emb_b.weight" in sd else "shared"}
    model = build_model(cfg["arch"], vocab, mcfg, init)
    model.load_state_dict(sd)
    return model.to(device).eval(), vocab


def base_lr(cfg: dict) -> float:
    """The epoch-0 learning rate: lr for adam; lr * batch_size ** p (lr_scaling) for sgd."""
    if cfg["optimizer"] == "adam":
        return float(cfg["lr"])
    return float(cfg["lr"] * cfg["batch_size"] ** LR_POWER[cfg["lr_scaling"]])


def length_batches(lengths: np.ndarray, batch_size: int, gen: torch.Generator) -> list[np.ndarray]:
    """Length buckets: sort by length (random tie-break), cut into batches, shuffle the batch order."""
    noise = torch.rand(len(lengths), generator=gen).numpy()
    order = np.lexsort((noise, lengths))
    batches = [order[a : a + batch_size] for a in range(0, len(order), batch_size)]
    perm = torch.randperm(len(batches), generator=gen).tolist()
    return [batches[i] for i in perm]


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
    bs = cfg["predict"]["batch_size"]
    pred = tag_sentences(model, vocab, [c for c, _ in data], cfg["max_len"], bs, device)
    gold = [t for _, t in data]
    # spec §2.9 [ours]: dangling or mixed-type spans do not count
    m = span_prf(gold, pred, "bmes", strict=True)
    n_tok = sum(len(g) for g in gold)
    m["token_accuracy"] = sum(a == b for g, p in zip(gold, pred) for a, b in zip(g, p)) / max(n_tok, 1)
    return {f"{prefix}/{k}": float(v) for k, v in m.items()}


def output_row(n: int, line: str, chars: list[str], offsets: list[int], tags: list[str], fmt: str) -> Any:
    """A span row {"id", "text", "entities"} with offsets into the original line, or CoNLL '<char> <tag>' lines."""
    if fmt == "conll":
        return "".join(f"{c} {t}\n" for c, t in zip(chars, tags)) + "\n"
    ents = []
    for a, b, typ in spans_from_tags(tags, "bmes", strict=True):
        start, end = offsets[a], offsets[b - 1] + 1
        ents.append({"start": start, "end": end, "type": typ, "text": line[start:end]})
    return {"id": n, "text": line, "entities": ents}
