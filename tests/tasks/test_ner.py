"""ner task: readers, synthetic corpus, every architecture, CLI train/eval/predict, acceptance (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mlkit.cli import main
from mlkit.core import checkpoint
from mlkit.tasks.ner import TINY
from mlkit.tasks.ner.corpus import find_splits, load_corpus, read_tagged, to_bmes
from mlkit.tasks.ner.data import chunk_bounds, raw_tokens
from mlkit.tasks.ner.decode import build_model, tag_sentences
from mlkit.tasks.ner.synth import write_corpus
from mlkit.tasks.ner.vocab import ARCHS, build_vocab, collate

MCFG = {
    "char_dim": 8,
    "bichar_dim": 6,
    "word_dim": 5,
    "seg_dim": 3,
    "hidden": 8,
    "dropout": 0.0,
    "lattice_dropout": 0.0,
}
TINY_SET = [f"--set={k}={v}" for k, v in TINY.items() if k != "epochs"]


def _write(path: Path, rows: list[tuple[str, list[str]]]) -> None:
    path.write_text(
        "".join("".join(f"{c} {t}\n" for c, t in zip(s, tags)) + "\n" for s, tags in rows), encoding="utf-8"
    )


# --- data ---
def test_bio_and_bioes_become_bmes():
    assert to_bmes(["B-PER", "I-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-ORG"], "bio") == [
        "B-PER",
        "M-PER",
        "E-PER",
        "O",
        "S-LOC",
        "S-LOC",
        "S-ORG",
    ]
    assert to_bmes(["B-A.B", "I-A.B", "E-A.B", "S-X", "O"], "bioes") == [
        "B-A.B",
        "M-A.B",
        "E-A.B",
        "S-X",
        "O",
    ]


def test_reader_layouts_and_dev_carving(tmp_path):
    rows = [(list("张三在北京"), ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"])] * 20
    _write(tmp_path / "train.bio", rows)
    _write(tmp_path / "test.bio", rows[:3])
    (tmp_path / "train.bio").write_text((tmp_path / "train.bio").read_text().replace(" B-PER", "\tB-PER"))
    assert set(find_splits(tmp_path, ("train", "dev", "test"))) == {"train", "test"}
    warned = []
    corpus = load_corpus(tmp_path, "auto", 0.1, 0, warned.append)
    assert len(corpus["dev"]) == 2 and len(corpus["train"]) == 18 and warned
    assert corpus["train"][0] == (list("张三在北京"), ["B-PER", "E-PER", "O", "B-LOC", "E-LOC"])
    assert read_tagged(tmp_path / "test.bio")[0][0] == list("张三在北京")


@pytest.mark.parametrize("n,max_len", [(5, 10), (30, 10), (31, 7), (100, 250)])
def test_chunks_cover_the_sentence(n, max_len):
    chars = [("。" if i % 4 == 3 else "字") for i in range(n)]
    pieces = chunk_bounds(chars, max_len)
    assert pieces[0][0] == 0 and pieces[-1][1] == n
    assert all(b - a <= max_len and b > a for a, b in pieces)
    assert all(p[1] == q[0] for p, q in zip(pieces, pieces[1:]))
    assert all(chars[a - 1] == "。" for a, _ in pieces[1:]) or max_len < 4


def test_raw_tokens_keep_offsets():
    chars, offs = raw_tokens(" 北京 大学\t")
    assert chars == list("北京大学") and offs == [1, 2, 4, 5]


def test_synth_corpus_holds_out_test_entities(tmp_path):
    write_corpus(tmp_path, chars=50, lexicon_size=200, train=60, dev=10, test=20, seed=3)
    corpus = load_corpus(tmp_path, "auto", 0.1, 0)
    lexicon = (tmp_path / "lexicon.txt").read_text(encoding="utf-8").split()
    assert len(lexicon) == 200 and (tmp_path / "words.vec").read_text().startswith("200 50")
    from mlkit.core.metrics import spans_from_tags

    def entities(split):
        return {"".join(c[a:b]) for c, t in corpus[split] for a, b, _ in spans_from_tags(t)}

    assert entities("train") and entities("test") and not entities("train") & entities("test")
    again = tmp_path / "again"
    write_corpus(again, chars=50, lexicon_size=200, train=60, dev=10, test=20, seed=3)
    assert (again / "test.char.bmes").read_bytes() == (tmp_path / "test.char.bmes").read_bytes()


# --- models ---
def _tiny_vocab(arch):
    sents = [list("中国人民银行在北京"), list("我爱北京"), list("人民")]
    tags = [
        ["B-ORG", "M-ORG", "M-ORG", "M-ORG", "M-ORG", "E-ORG", "O", "B-LOC", "E-LOC"],
        ["O", "O", "B-LOC", "E-LOC"],
        ["O", "O"],
    ]
    lexicon = ["中国", "人民", "银行", "人民银行", "北京", "中国人"]
    return sents, tags, build_vocab(arch, sents, tags, lexicon, None, None, None, True)


@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_trains_and_decodes(arch):
    torch.manual_seed(0)
    sents, tags, vocab = _tiny_vocab(arch)
    model = build_model(arch, vocab, MCFG)
    batch = collate(vocab.encode(sents, tags), arch)
    if arch in ("lattice", "softlexicon"):
        assert len(batch["ws"]) == 8  # 中国 中国人 人民 人民银行 银行 北京 | 北京 | 人民
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    first = None
    for _ in range(40):
        loss = model.loss(batch).sum()
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * first
    paths = model.decode(batch)
    assert [len(p) for p in paths] == [9, 4, 2]
    assert [[vocab.labels[t] for t in p] for p in paths] == tags


def test_lattice_batched_model_equals_per_sentence_model():
    torch.manual_seed(1)
    sents, tags, vocab = _tiny_vocab("lattice")
    model = build_model("lattice", vocab, {**MCFG, "dropout": 0.5, "lattice_dropout": 0.5}).eval()
    items = vocab.encode(sents, tags)
    e_batched = model.emissions(collate(items, "lattice"))
    model.per_sentence = True
    e_single = model.emissions(collate(items, "lattice", per_sentence=True))
    for i, s in enumerate(sents):
        assert (e_batched[i, : len(s)] - e_single[i, : len(s)]).abs().max().item() < 1e-5


def test_long_sentences_are_chunked_and_rejoined():
    sents, tags, vocab = _tiny_vocab("lattice")
    model = build_model("lattice", vocab, MCFG)
    long = list("中国人民银行在北京。" * 7)
    out = tag_sentences(model, vocab, [long, list("北京"), []], max_len=12, batch_size=4, device="cpu")
    assert [len(t) for t in out] == [70, 2, 0]
    whole = tag_sentences(model, vocab, [long[:10]], max_len=250, batch_size=4, device="cpu")[0]
    assert out[0][:10] == whole  # the first piece is cut after 。 and tagged on its own


# --- CLI ---
def test_cli_train_eval_predict_pipeline(runs_dir, tmp_path, capsys):
    assert main(["ner", "train", "--project", str(runs_dir), "--epochs", "1", *TINY_SET, "--quiet"]) == 0
    best = runs_dir / "ner" / "train" / "weights" / "best.pt"
    ck = checkpoint.load(best, "ner")
    assert (
        set(ck["extra"]) >= {"chars", "words", "labels", "lexicon"}
        and len(ck["extra"]["lexicon"]["sha256"]) == 64
    )
    capsys.readouterr()
    assert main(["ner", "eval", "--model", str(best), "--json", "--quiet"]) == 0
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    for key in ("test/f1", "test/precision", "test/recall", "test/token_accuracy", "test/PER/f1"):
        assert 0.0 <= metrics[key] <= 1.0
    lines = ["王小明在北京大学读书。", "", "  上海 东方明珠  ", "中" * 600]
    inp = tmp_path / "in.txt"
    inp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["ner", "predict", "--model", str(best), "--input", str(inp), "--quiet"]) == 0
    out = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [o["text"] for o in out] == lines
    assert out[1]["entities"] == []
    for o in out:
        for e in o["entities"]:
            assert o["text"][e["start"] : e["end"]] == e["text"] and e["text"].strip() == e["text"]
            assert e["type"] in ("PER", "LOC", "ORG")
    assert (
        main(
            [
                "ner",
                "predict",
                "--model",
                str(best),
                "--input",
                str(inp),
                "--output-format",
                "conll",
                "--quiet",
            ]
        )
        == 0
    )
    blocks = capsys.readouterr().out.split("\n\n")
    assert len(blocks[0].splitlines()) == 11 and blocks[0].splitlines()[0].startswith("王 ")
    bad = tmp_path / "bad.txt"
    bad.write_bytes("北京\n".encode() + b"\xff\xfe\n")
    assert main(["ner", "predict", "--model", str(best), "--input", str(bad), "--quiet"]) == 3
    other = tmp_path / "other.pt"
    checkpoint.save(checkpoint.make("toy", ck["config"], ck["state_dict"]), other)
    assert main(["ner", "predict", "--model", str(other), "--input", str(inp), "--quiet"]) == 3


def test_cli_user_corpus_bio_without_dev_char_arch(runs_dir, tmp_path, capsys):
    data = tmp_path / "corpus"
    data.mkdir()
    rows = [
        (list("张三去北京"), ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]),
        (list("李四在上海"), ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]),
    ]
    _write(data / "train.bio", rows * 10)
    _write(data / "test.bio", rows)
    code = main(
        [
            "ner",
            "train",
            "--data",
            str(data),
            "--arch",
            "char",
            "--project",
            str(runs_dir),
            "--epochs",
            "2",
            "--set",
            "model.hidden=16",
            "--quiet",
            "--json",
        ]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["test/f1"] >= 0.0


def test_checkpoint_is_self_contained(runs_dir, tmp_path, capsys):
    """Train the lattice with a user lexicon and word vectors, delete both, and predict still finds the words."""
    data = tmp_path / "corpus"
    data.mkdir()
    rows = [
        (list("张三去北京"), ["B-PER", "E-PER", "O", "B-LOC", "E-LOC"]),
        (list("李四在上海"), ["B-PER", "E-PER", "O", "B-LOC", "E-LOC"]),
    ]
    _write(data / "train.char.bmes", rows * 8)
    _write(data / "dev.char.bmes", rows)
    _write(data / "test.char.bmes", rows)
    lex, vec = tmp_path / "lex.txt", tmp_path / "w.vec"
    lex.write_text("张三 5 nr\n北京\n上海\n李四\n广州\n1号\n", encoding="utf-8")
    vec.write_text("2 3\n北京 1 0 0\n广州 0.9 0.1 0\n", encoding="utf-8")
    assert (
        main(
            [
                "ner",
                "train",
                "--data",
                str(data),
                "--lexicon",
                str(lex),
                "--word-vectors",
                str(vec),
                "--project",
                str(runs_dir),
                "--epochs",
                "2",
                "--set",
                "model.hidden=16",
                "--quiet",
            ]
        )
        == 0
    )
    best = runs_dir / "ner" / "train" / "weights" / "best.pt"
    extra = checkpoint.load(best, "ner")["extra"]
    assert extra["lexicon"]["source"] == str(lex)
    assert extra["lexicon"]["words"].split("\n") == ["张三", "北京", "上海", "李四", "广州", "0号"]
    assert "广州" in extra["words"]  # pretrained row although it never occurs in train
    lex.unlink()
    vec.unlink()
    inp = tmp_path / "in.txt"
    inp.write_text("王五去广州\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["ner", "predict", "--model", str(best), "--input", str(inp), "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["text"] == "王五去广州"


def test_vector_files(tmp_path):
    from mlkit.tasks.ner.data import embedding_matrix, read_vectors

    f = tmp_path / "v.txt"
    f.write_text("2 2\n北 3 4\n7 0 2\n", encoding="utf-8")
    vecs = read_vectors(str(f))
    assert set(vecs) == {"北", "0"}
    mat, hits = embedding_matrix(["<pad>", "<unk>", "北", "南"], 50, vecs, True, np.random.default_rng(0))
    assert mat.shape == (4, 2) and hits == 1 and np.allclose(mat[2], [0.6, 0.8]) and not mat[0].any()
    raw, _ = embedding_matrix(["<pad>", "北"], 50, vecs, False, np.random.default_rng(0))
    assert np.allclose(raw[1], [3, 4])
    lac = read_vectors("lac")
    north = lac["北"] / np.linalg.norm(lac["北"])
    sims = {c: float(north @ lac[c] / np.linalg.norm(lac[c])) for c in "南西东猫饭"}
    assert min(sims[c] for c in "南西东") > max(sims[c] for c in "猫饭")


def test_cli_errors_exit_3(runs_dir, tmp_path):
    assert main(["ner", "train", "--data", str(tmp_path), "--project", str(runs_dir), "--quiet"]) == 3
    assert (
        main(
            [
                "ner",
                "train",
                "--lexicon",
                str(tmp_path / "missing.txt"),
                "--project",
                str(runs_dir),
                "--epochs",
                "1",
                *TINY_SET,
                "--quiet",
            ]
        )
        == 3
    )


# --- acceptance (slow) ---
def _train(runs_dir, name, *args):
    assert main(["ner", "train", "--project", str(runs_dir), "--name", name, "--quiet", *args]) == 0
    return json.loads((runs_dir / "ner" / name / "metrics.json").read_text())


@pytest.mark.slow
def test_synthetic_lexicon_dependence_acceptance(runs_dir, tmp_path):
    """Spec §7A: unseen test entities are found through the lexicon: lattice F1 > 0.7 and >= char + 0.3."""
    data = write_corpus(tmp_path / "synth")  # what `mlkit ner synth --out DIR` writes
    common = ["--data", str(data), "--lexicon", str(data / "lexicon.txt"), "--word-vectors", str(data / "words.vec"),
              "--epochs", "5", "--batch-size", "16", "--set", "patience=0", "--set", "model.hidden=100",
              "--set", "threads=1"]  # fmt: skip
    char = _train(runs_dir, "char", "--arch", "char", *common)
    lattice = _train(runs_dir, "lattice", "--arch", "lattice", *common)
    assert char["test/f1"] < 0.3
    assert lattice["test/f1"] > 0.7
    assert lattice["test/f1"] >= char["test/f1"] + 0.3


@pytest.mark.slow
def test_resume_lattice_with_jieba_lexicon(runs_dir, shared_data):
    """Spec §7B / issue: lattice with jieba's dict.txt reaches test F1 >= 0.93 on Resume (paper: 94.46)."""
    resume = shared_data / "chinese_ner" / "resume"
    if not (resume / "train.char.bmes").exists():
        pytest.skip("Resume data absent")
    args = ["--data", str(resume), "--preset", "paper", "--epochs", "40", "--set", "patience=8"]  # hidden 200
    m = _train(runs_dir, "resume", *args, "--set", "threads=1")  # fmt: skip
    assert m["test/f1"] >= 0.93


def test_soft_lexicon_pooling_by_hand():
    """Char 0 of 中国人 begins 中国 and 中国人; its other sets are empty and take the <none> row (weight 1)."""
    vocab = build_vocab(
        "softlexicon", [list("中国人")], [["O"] * 3], ["中国", "中国人", "国人"], None, None, None, True
    )
    model = build_model("softlexicon", vocab, MCFG).eval()
    with torch.no_grad():
        model.word_freq.copy_(torch.arange(len(vocab.words), dtype=torch.float32) + 1)
    batch = collate(vocab.encode([list("中国人")]), "softlexicon")
    pooled = model._soft_lexicon(batch)[0].view(3, 4, -1)
    e = model.word_emb.weight.detach()
    z = model.word_freq
    a, b, c = (vocab.word_ix[w] for w in ("中国", "中国人", "国人"))
    total0 = z[a] + z[b] + 3  # B = {中国, 中国人}; M, E, S empty -> <none> with weight 1 each
    assert torch.allclose(pooled[0, 0], 4 * (z[a] * e[a] + z[b] * e[b]) / total0, atol=1e-6)
    assert torch.allclose(pooled[0, 1], 4 * e[2] / total0, atol=1e-6)
    total1 = z[c] + z[b] + z[a] + 1  # char 1: B {国人}, M {中国人}, E {中国}, S empty
    assert torch.allclose(pooled[1, 0], 4 * z[c] * e[c] / total1, atol=1e-6)
    assert torch.allclose(pooled[1, 1], 4 * z[b] * e[b] / total1, atol=1e-6)
    assert torch.allclose(pooled[1, 2], 4 * z[a] * e[a] / total1, atol=1e-6)
    assert torch.allclose(pooled[1, 3], 4 * e[2] / total1, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("arch", ["lattice", "softlexicon"])
def test_train_and_predict_on_cuda(runs_dir, tmp_path, capsys, arch):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA")
    args = ["--project", str(runs_dir), "--name", arch, "--arch", arch, "--device", "cuda", "--quiet"]
    assert main(["ner", "train", "--epochs", "1", *TINY_SET, *args]) == 0
    inp = tmp_path / "in.txt"
    inp.write_text("王小明在北京大学读书。\n\n", encoding="utf-8")
    best = runs_dir / "ner" / arch / "weights" / "best.pt"
    capsys.readouterr()
    assert (
        main(["ner", "predict", "--model", str(best), "--input", str(inp), "--device", "cuda", "--quiet"])
        == 0
    )
    assert len(capsys.readouterr().out.splitlines()) == 2
