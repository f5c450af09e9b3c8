"""ner `--preset paper` (issue 20): the printed protocol against spec §2.7, the lexicon taken from the word-vector
file, per-direction word tables, and old single-table checkpoints still loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import yaml

from mlkit.cli import main
from mlkit.core import checkpoint
from mlkit.core.config import get_dotted
from mlkit.tasks.ner.decode import build_model, model_from_ckpt
from mlkit.tasks.ner.vocab import build_vocab, collate

# spec ner.md §2.7 (original defaults) and §2.1-2.2
PAPER = {
    "arch": "lattice",
    "epochs": 100,
    "patience": 0,
    "batch_size": 1,
    "optimizer": "sgd",
    "lr": 0.015,
    "lr_decay": 0.05,
    "momentum": 0.0,
    "weight_decay": 0.0,
    "clip_grad": 0.0,
    "seed": 100,
    "number_normalized": True,
    "model.char_dim": 50,
    "model.word_dim": 50,
    "model.hidden": 200,
    "model.dropout": 0.5,
    "model.lattice_dropout": 0.5,
    "model.word_emb": "per_direction",
    "lexicon.min_len": 2,
}


def test_config_preset_paper_prints_the_spec_protocol(capsys):
    assert main(["ner", "config", "--preset", "paper"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    for key, want in PAPER.items():
        assert get_dotted(cfg, key) == want, key
    assert "presets" not in cfg
    assert main(["ner", "config", "--preset", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown preset" in err


def _write(path: Path, rows: list[tuple[str, list[str]]]) -> None:
    path.write_text(
        "".join("".join(f"{c} {t}\n" for c, t in zip(s, tags)) + "\n" for s, tags in rows), encoding="utf-8"
    )


def test_word_vector_file_is_the_lexicon(runs_dir, tmp_path, capsys):
    """Without --lexicon, --word-vectors FILE supplies the lexicon (header skipped), including words jieba lacks."""
    data = tmp_path / "corpus"
    data.mkdir()
    rows = [(list("甲乙丙去丁戊"), ["B-PER", "M-PER", "E-PER", "O", "B-LOC", "E-LOC"])]
    for split in ("train", "dev", "test"):
        _write(data / f"{split}.char.bmes", rows * (6 if split == "train" else 1))
    vec = tmp_path / "ctb.vec"
    vec.write_text("3 2\n甲乙丙 1 0\n丁戊 0 1\n去丁 0.5 0.5\n", encoding="utf-8")
    code = main(["ner", "train", "--data", str(data), "--word-vectors", str(vec), "--project", str(runs_dir),
                 "--epochs", "1", "--set", "model.hidden=8", "--quiet", "--json"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    run = Path(json.loads(capsys.readouterr().out)["run_dir"])
    ck = checkpoint.load(run / "weights" / "best.pt", "ner")
    assert ck["extra"]["lexicon"]["words"].split("\n") == ["甲乙丙", "丁戊", "去丁"]
    assert ck["extra"]["lexicon"]["source"] == str(vec)
    assert {"甲乙丙", "丁戊", "去丁"} <= set(ck["extra"]["words"])  # matched in train: rows in the table
    sd = ck["state_dict"]
    assert "word_emb_b.weight" in sd  # per-direction tables by default
    # 'jieba' keeps jieba's dict.txt as the lexicon even with word vectors
    code = main(["ner", "train", "--data", str(data), "--word-vectors", str(vec), "--lexicon", "jieba",
                 "--project", str(runs_dir), "--epochs", "1", "--set", "model.hidden=8", "--quiet", "--json"])  # fmt: skip
    assert code == 0
    run = Path(json.loads(capsys.readouterr().out)["run_dir"])
    words = checkpoint.load(run / "weights" / "best.pt", "ner")["extra"]["lexicon"]["words"].split("\n")
    assert len(words) > 300_000 and "甲乙丙" not in words


def _model(word_emb: str):
    vocab = build_vocab("lattice", [list("张三去北京")], [["B-PER", "E-PER", "O", "B-LOC", "E-LOC"]],
                        ["张三", "北京"], None, None, None, True)  # fmt: skip
    mcfg = {"char_dim": 6, "bichar_dim": 4, "word_dim": 5, "seg_dim": 3, "hidden": 8, "dropout": 0.0,
            "lattice_dropout": 0.5, "word_emb": word_emb}  # fmt: skip
    torch.manual_seed(0)
    return build_model("lattice", vocab, mcfg), vocab


def test_per_direction_tables_start_equal_and_train_apart():
    model, vocab = _model("per_direction")
    assert model.word_emb_b.weight is not model.word_emb.weight
    assert torch.equal(model.word_emb_b.weight, model.word_emb.weight)
    assert model.word_emb_b.weight.data_ptr() != model.word_emb.weight.data_ptr()
    batch = collate(vocab.encode([list("张三去北京")], [["B-PER", "E-PER", "O", "B-LOC", "E-LOC"]]), "lattice", "cpu")
    model.train()
    model.loss(batch).sum().backward()
    gf, gb = model.word_emb.weight.grad, model.word_emb_b.weight.grad
    assert gf.abs().sum() > 0 and gb.abs().sum() > 0 and not torch.allclose(gf, gb)
    shared, _ = _model("shared")
    assert not hasattr(shared, "word_emb_b")


def test_single_table_checkpoint_still_loads():
    """A checkpoint written before per-direction tables (no model.word_emb key, one table) rebuilds as shared."""
    model, vocab = _model("shared")
    mcfg = {k: v for k, v in {"char_dim": 6, "bichar_dim": 4, "word_dim": 5, "seg_dim": 3, "hidden": 8,
                              "dropout": 0.0, "lattice_dropout": 0.5}.items()}  # fmt: skip
    ckpt = {"config": {"arch": "lattice", "model": mcfg}, "extra": vocab.extra(), "state_dict": model.state_dict()}
    got, _ = model_from_ckpt(ckpt, "cpu")
    assert not hasattr(got, "word_emb_b")
    assert np.allclose(got.word_emb.weight.detach().numpy(), model.word_emb.weight.detach().numpy())
