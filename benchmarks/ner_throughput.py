"""Lattice LSTM throughput: batched (mlkit) vs the per-sentence reference loop (original style), same data/run.

    python benchmarks/ner_throughput.py [--data DIR] [--sentences 200] [--batch-size 16] [--hidden 200] [--threads 1]

Train = forward + CRF loss + backward + SGD step; predict = forward + Viterbi in eval mode. Both paths use
the same model weights and the same sentences; the table gives sentences/s and chars/s and the ratios.
Without --data the synthetic corpus of spec §7A is generated in a temp folder (with its lexicon); with --data
the lexicon is jieba's dict.txt unless --lexicon is given.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mlkit.tasks.ner.data import jieba_dict_path, load_corpus, read_lexicon
from mlkit.tasks.ner.run import build_model
from mlkit.tasks.ner.synth import write_corpus
from mlkit.tasks.ner.vocab import build_vocab, collate


def setup(data: str | None, lexicon: str | None, n: int, hidden: int):
    root = Path(data) if data else write_corpus(Path(tempfile.mkdtemp()), train=max(n, 200), dev=10, test=10)
    corpus = load_corpus(root, "auto", 0.1, 0)
    lex_path = lexicon or (str(root / "lexicon.txt") if not data else str(jieba_dict_path()))
    lex = read_lexicon(Path(lex_path), 2, 12, True)
    sents = corpus["train"][:n]
    vocab = build_vocab(
        "lattice",
        [c for c, _ in corpus["train"]],
        [t for _, t in corpus["train"]] + [["O"]],
        lex,
        None,
        None,
        None,
        True,
    )
    mcfg = {
        "char_dim": 50,
        "bichar_dim": 50,
        "word_dim": 50,
        "seg_dim": 20,
        "hidden": hidden,
        "dropout": 0.5,
        "lattice_dropout": 0.5,
    }
    model = build_model("lattice", vocab, mcfg)
    items = vocab.encode([c for c, _ in sents], [t for _, t in sents])
    return model, items


def batches(items, size):
    order = np.argsort([len(it["chars"]) for it in items], kind="stable")
    return [[items[i] for i in order[a : a + size]] for a in range(0, len(order), size)]


def run_train(model, groups, per_sentence: bool) -> float:
    model.train()
    model.per_sentence = per_sentence
    opt = torch.optim.SGD(model.parameters(), lr=0.001)
    t0 = time.perf_counter()
    for group in groups:
        batch = collate(group, "lattice", per_sentence=per_sentence)
        loss = model.loss(batch).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def run_predict(model, groups, per_sentence: bool) -> float:
    model.eval()
    model.per_sentence = per_sentence
    t0 = time.perf_counter()
    with torch.no_grad():
        for group in groups:
            model.decode(collate(group, "lattice", per_sentence=per_sentence))
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="BMES corpus folder (default: synthetic §7A corpus)")
    ap.add_argument("--lexicon", default=None)
    ap.add_argument("--sentences", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--predict-batch-size", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=200, help="total hidden size (both directions)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, items = setup(args.data, args.lexicon, args.sentences, args.hidden)
    n_sent, n_chars = len(items), sum(len(it["chars"]) for it in items)
    n_words = sum(len(it["ws"]) for it in items)
    run_train(model, batches(items[:32], args.batch_size), False)  # warm-up (numba, allocator)
    run_predict(model, batches(items[:32], args.predict_batch_size), False)
    res = {
        "train_batched": run_train(model, batches(items, args.batch_size), False),
        "train_per_sentence": run_train(model, batches(items, 1), True),
        "predict_batched": run_predict(model, batches(items, args.predict_batch_size), False),
        "predict_per_sentence": run_predict(model, batches(items, 1), True),
    }
    print(
        f"{n_sent} sentences, {n_chars} chars, {n_words / n_chars:.2f} matched words/char, hidden {args.hidden}, "
        f"threads {args.threads}, train batch {args.batch_size}, predict batch {args.predict_batch_size}"
    )
    print(f"{'path':<22}{'seconds':>10}{'sent/s':>10}{'chars/s':>11}")
    for k, secs in res.items():
        print(f"{k:<22}{secs:>10.2f}{n_sent / secs:>10.1f}{n_chars / secs:>11.0f}")
    out = {f"{k}/chars_per_s": n_chars / v for k, v in res.items()}
    out["train_ratio"] = res["train_per_sentence"] / res["train_batched"]
    out["predict_ratio"] = res["predict_per_sentence"] / res["predict_batched"]
    print(
        f"batched / per-sentence speed-up: train {out['train_ratio']:.1f}x, predict {out['predict_ratio']:.1f}x"
    )
    return out


if __name__ == "__main__":
    main()
