"""Lattice LSTM throughput: batched (mlkit) vs the per-sentence reference loop (original style), same data/run.

    python benchmarks/ner_throughput.py [--data DIR] [--sentences 200] [--batch-size 16] [--hidden 200] [--threads 1]
                                        [--baseline-threads N] [--repeat 3]

Train = forward + CRF loss + backward + SGD step; predict = forward + Viterbi in eval mode. Both paths use
the same model weights and the same sentences; the table gives sentences/s and chars/s and the ratios. Each
path runs --repeat times, alternating, and the median pass counts (a single 0.4 s batched pass varies by ~10%).
malloc is set up as `mlkit ner` sets it up (`keep_freed_memory`) for both paths.
Without --data the synthetic corpus of spec §7A is generated in a temp folder (with its lexicon); with --data
the lexicon is jieba's dict.txt unless --lexicon is given.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mlkit.core.runtime import keep_freed_memory
from mlkit.tasks.ner.data import jieba_dict_path, load_corpus, read_lexicon
from mlkit.tasks.ner.decode import build_model
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


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def batches(items, size):
    order = np.argsort([len(it["chars"]) for it in items], kind="stable")
    return [[items[i] for i in order[a : a + size]] for a in range(0, len(order), size)]


def run_train(model, groups, per_sentence: bool, device: str = "cpu") -> tuple[float, float]:
    model.train()
    model.per_sentence = per_sentence
    opt = torch.optim.SGD(model.parameters(), lr=0.001)
    t0, c0 = time.perf_counter(), time.process_time()
    for group in groups:
        batch = collate(group, "lattice", device, per_sentence=per_sentence)
        loss = model.loss(batch).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    _sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


def run_predict(model, groups, per_sentence: bool, device: str = "cpu") -> tuple[float, float]:
    model.eval()
    model.per_sentence = per_sentence
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        for group in groups:
            model.decode(collate(group, "lattice", device, per_sentence=per_sentence))
    _sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="BMES corpus folder (default: synthetic §7A corpus)")
    ap.add_argument("--lexicon", default=None)
    ap.add_argument("--sentences", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--predict-batch-size", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=200, help="total hidden size (both directions)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--baseline-threads",
        type=int,
        default=0,
        help="torch threads of the per-sentence passes (0: --threads); its tiny ops often run best on 1",
    )
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N] (same device for both paths)")
    ap.add_argument("--repeat", type=int, default=3, help="passes per path; the median pass is reported")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    torch.manual_seed(0)
    model, items = setup(args.data, args.lexicon, args.sentences, args.hidden)
    model.to(args.device)
    dev = args.device
    n_sent, n_chars = len(items), sum(len(it["chars"]) for it in items)
    n_words = sum(len(it["ws"]) for it in items)
    run_train(model, batches(items[:32], args.batch_size), False, dev)  # warm-up (numba, allocator)
    run_predict(model, batches(items[:32], args.predict_batch_size), False, dev)
    base_threads = args.baseline_threads or args.threads

    def with_threads(n: int, fn):
        def run() -> tuple[float, float]:
            torch.set_num_threads(n)
            try:
                return fn()
            finally:
                torch.set_num_threads(args.threads)

        return run

    runs = {
        "train_batched": lambda: run_train(model, batches(items, args.batch_size), False, dev),
        "train_per_sentence": with_threads(
            base_threads, lambda: run_train(model, batches(items, 1), True, dev)
        ),
        "predict_batched": lambda: run_predict(model, batches(items, args.predict_batch_size), False, dev),
        "predict_per_sentence": with_threads(
            base_threads, lambda: run_predict(model, batches(items, 1), True, dev)
        ),
    }
    passes: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}
    for _ in range(max(args.repeat, 1)):
        for k, fn in runs.items():
            passes[k].append(fn())
    res = {k: sorted(v)[len(v) // 2] for k, v in passes.items()}
    print(
        f"{n_sent} sentences, {n_chars} chars, {n_words / n_chars:.2f} matched words/char, hidden {args.hidden}, "
        f"threads {args.threads} (per-sentence {base_threads}), device {dev}, train batch {args.batch_size}, predict batch {args.predict_batch_size}, "
        f"median of {max(args.repeat, 1)} passes"
    )
    load = os.getloadavg()
    print(
        "wall = elapsed seconds; cpu = this process's CPU seconds (the fairer number on shared, busy cores); "
        f"load average after the runs {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs"
    )
    print(f"{'path':<22}{'wall s':>8}{'cpu s':>8}{'sent/s':>9}{'chars/s':>10}{'cpu chars/s':>13}")
    for k, (wall, cpu) in res.items():
        print(
            f"{k:<22}{wall:>8.2f}{cpu:>8.2f}{n_sent / wall:>9.1f}{n_chars / wall:>10.0f}{n_chars / cpu:>13.0f}"
        )
    out = {f"{k}/chars_per_s": n_chars / v[0] for k, v in res.items()}
    out["loadavg_1m"] = load[0]
    out.update({f"{k}/cpu_chars_per_s": n_chars / v[1] for k, v in res.items()})
    for mode in ("train", "predict"):
        out[f"{mode}_ratio"] = res[f"{mode}_per_sentence"][0] / res[f"{mode}_batched"][0]
        out[f"{mode}_cpu_ratio"] = res[f"{mode}_per_sentence"][1] / res[f"{mode}_batched"][1]
    print(
        f"batched / per-sentence speed-up (wall | cpu): train {out['train_ratio']:.1f}x | {out['train_cpu_ratio']:.1f}x, "
        f"predict {out['predict_ratio']:.1f}x | {out['predict_cpu_ratio']:.1f}x"
    )
    return out


if __name__ == "__main__":
    main()
