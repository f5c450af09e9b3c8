"""ner hooks: corpus -> vocab -> model -> CRF loss on length-bucketed batches; best dev F1; spans out."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from mlkit.core.config import apply_preset
from mlkit.core.errors import UsageError
from mlkit.core.runtime import Ctx, keep_freed_memory
from mlkit.core.task import Task, TrainState
from mlkit.tasks.ner import decode as D
from mlkit.tasks.ner.corpus import eval_split, parse_split_files
from mlkit.tasks.ner.data import data_root, raw_tokens
from mlkit.tasks.ner.vocab import ARCHS, NerData, Vocab, collate, prepare


def _setup_cpu(cfg: dict) -> None:
    """The CPU thread count of the config, and malloc kept from handing freed buffers back (see runtime)."""
    if cfg["threads"] > 0:
        torch.set_num_threads(cfg["threads"])
    keep_freed_memory()


class NerTask(Task):
    def finalize(self, cfg: dict, explicit: frozenset[str], mode: str) -> dict:
        checks = (
            ("arch", cfg["arch"], ARCHS),
            ("optimizer", cfg["optimizer"], ("sgd", "adam")),
            ("lr_scaling", cfg["lr_scaling"], tuple(D.LR_POWER)),
            ("predict format", cfg["predict"]["format"], ("json", "conll")),
            ("scheme", cfg["scheme"], ("auto", "bmes", "bio", "bioes")),
        )
        for what, value, allowed in checks:
            if value not in allowed:
                raise UsageError(f"unknown {what} '{value}'", None, f"Use one of: {', '.join(allowed)}.")
        if mode == "train":
            cfg = apply_preset(cfg, explicit)
        if cfg["split_files"]:
            parse_split_files(cfg["split_files"])  # exit 2 on a malformed value, before any work
        return cfg

    def patience(self, cfg: dict) -> int | None:
        return cfg["patience"] or None

    # ---------------------------------------------------------------- train
    def load_data(self, cfg: dict, ctx: Ctx) -> NerData:
        _setup_cpu(cfg)
        return prepare(cfg, data_root(cfg, ctx.log), ctx.log, ctx.warn)

    def build_model(self, cfg: dict, ctx: Ctx, data: NerData) -> Any:
        return D.build_model(cfg["arch"], data.vocab, cfg["model"], data.init).to(ctx.device)

    def build_optimizer(self, cfg: dict, model: Any) -> tuple[Any, Any]:
        lr, wd = D.base_lr(cfg), cfg["weight_decay"]
        if cfg["optimizer"] == "adam":
            return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd), None
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg["momentum"], weight_decay=wd), None

    def train_epoch(self, cfg: dict, ctx: Ctx, st: TrainState) -> dict[str, float]:
        """SGD/Adam over length-bucketed batches, the lr decayed per epoch as in the original."""
        data, model, opt = st.data, st.model, st.optimizer
        for group in opt.param_groups:
            group["lr"] = D.base_lr(cfg) * (1 - cfg["lr_decay"]) ** st.epoch
        model.train()
        total, n_sent, chars, t0 = 0.0, 0, 0, time.perf_counter()
        batches = D.length_batches(data.lengths, cfg["batch_size"], st.generator)
        for idx in ctx.track(batches, f"epoch {st.epoch + 1}"):
            loss = model.loss(collate([data.items[i] for i in idx], data.vocab.arch, ctx.device))
            opt.zero_grad(set_to_none=True)
            loss.mean().backward()
            if cfg["clip_grad"] > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["clip_grad"])
            opt.step()
            total += float(loss.detach().sum())
            n_sent += len(idx)
            chars += int(data.lengths[idx].sum())
            if st.tick():
                break
        secs = time.perf_counter() - t0
        return {"train/loss": total / max(n_sent, 1), "train/chars_per_s": chars / secs}

    def validate(self, cfg: dict, ctx: Ctx, st: TrainState) -> dict[str, float]:
        val = D.score(st.model, st.data.vocab, st.data.corpus["dev"], cfg, ctx.device, "val")
        return {k: val[k] for k in ("val/f1", "val/precision", "val/recall", "val/token_accuracy")}

    def test(self, cfg: dict, ctx: Ctx, st: TrainState) -> dict[str, float]:
        return D.score(st.model, st.data.vocab, st.data.corpus["test"], cfg, ctx.device, "test")

    def checkpoint_extra(self, cfg: dict, ctx: Ctx, data: NerData) -> dict[str, Any]:
        extra = data.vocab.extra()
        extra["lexicon"]["source"] = data.lex_src
        return extra

    # ---------------------------------------------------------------- eval / predict
    def restore(self, cfg: dict, ctx: Ctx, ckpt: dict) -> tuple[Any, Vocab, dict]:
        _setup_cpu(cfg)
        model, vocab = D.model_from_ckpt(ckpt, ctx.device)
        # compile (or load from Numba's cache) the decode kernels now, so the first input line is answered at once
        D.tag_sentences(model, vocab, [list("北京")], cfg["max_len"], 1, ctx.device)
        return model, vocab, dict(ckpt.get("config") or {})

    def evaluate(self, cfg: dict, ctx: Ctx, restored: tuple[Any, Vocab, dict]) -> dict[str, float]:
        """Test-split metrics: entity P/R/F1 (micro and per type) and token accuracy (reads only the test file)."""
        model, vocab, trained = restored
        test = eval_split(cfg, data_root(cfg, ctx.log), vocab.labels, trained, ctx.log)
        return D.score(model, vocab, test, cfg, ctx.device, "test")

    def parse_record(self, cfg: dict, restored: Any, line: str, n: int) -> tuple:
        return (n, line, *raw_tokens(line))  # any text is a sentence: (n, line, chars, offsets)

    def predict_batch_size(self, cfg: dict) -> int:
        """Lines per call: up to 8 forward batches of what is already read, sorted by length inside the call
        (a file runs near the speed of one sorted pass; a line typed into a pipe is still answered at once)."""
        return 8 * int(cfg["predict"]["batch_size"])

    def predict_batch(
        self, cfg: dict, ctx: Ctx, restored: tuple[Any, Vocab, dict], records: list
    ) -> list[Any]:
        model, vocab, _ = restored
        bs = int(cfg["predict"]["batch_size"])
        tagged = D.tag_sentences(model, vocab, [r[2] for r in records], cfg["max_len"], bs, ctx.device)
        return [D.output_row(*r, tags, cfg["predict"]["format"]) for r, tags in zip(records, tagged)]

    def sample_inputs(self, run_dir: Path) -> list[str]:
        return ["王小明在北京大学读书。", "", "  上海 东方明珠  ", "2018年5月,张三去了深圳。"]


TASK = NerTask()
