"""grounding data: the Flickr30K Entities parser on the real bracket syntax and XML (several <name>s, <nobndbox>,
scene), union boxes, the synthetic set's round trip through the same parser, the word-vector phrase->class map,
the feature adapters (npz / bottom-up-attention TSV / HDF5), and malformed files (exit 3, one line naming the
file and line)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from mlkit.core.errors import DataError
from mlkit.tasks.grounding import features as FT
from mlkit.tasks.grounding.data import build_phrase_map, load
from mlkit.tasks.grounding.flickr import (  # fmt: skip
    parse_sentence,
    read_annotation,
    read_sentences,
    tokenize,
    union_box,
)
from mlkit.tasks.grounding.synth import SHAPES, SYNONYMS, write_synth

FLICKR_LINE = ("[/EN#18/people A man] with [/EN#19/clothing pierced ears] is wearing [/EN#20/clothing glasses] and "
               "[/EN#21/clothing an orange hat] .")  # fmt: skip

XML = """<annotation>
  <filename>1000092795.jpg</filename>
  <size><width>500</width><height>375</height><depth>3</depth></size>
  <object><name>18</name><name>23</name><bndbox><xmin>10</xmin><ymin>20</ymin><xmax>100</xmax><ymax>200</ymax></bndbox></object>
  <object><name>18</name><bndbox><xmin>150</xmin><ymin>30</ymin><xmax>250</xmax><ymax>300</ymax></bndbox></object>
  <object><name>19</name><nobndbox>1</nobndbox></object>
  <object><name>24</name><nobndbox>1</nobndbox><scene>1</scene></object>
</annotation>
"""


def test_sentence_parser_real_syntax() -> None:
    s = parse_sentence(FLICKR_LINE, "x")
    assert [p.text for p in s.phrases] == ["A man", "pierced ears", "glasses", "an orange hat"]
    assert [p.entity for p in s.phrases] == ["18", "19", "20", "21"]
    assert [p.first_word for p in s.phrases] == [0, 3, 7, 9]
    assert s.words[:4] == ["A", "man", "with", "pierced"] and s.words[-1] == "."
    multi = parse_sentence('[/EN#7/people/other A "clown" , (in red)] waves [/EN#0/notvisual ...] !', "x")
    assert multi.phrases[0].types == ("people", "other") and multi.phrases[0].text == 'A "clown" , (in red)'
    assert multi.phrases[1].types == ("notvisual",) and multi.phrases[1].first_word == 6
    assert tokenize('A man\'s "red" hat,') == ["a", "man", "'s", '"', "red", '"', "hat", ","]


@pytest.mark.parametrize("line", ["[/EN#1/people a man is here .", "a man] is here", "[/EN#1/people a [/EN#2/other b]]",
                                  "[/EN#x/people a man]", "[/EN#1/people ] x", "[a man]"])  # fmt: skip
def test_malformed_bracket_lines(line: str) -> None:
    with pytest.raises(DataError) as e:
        parse_sentence(line, "Sentences/1.txt line 3")
    assert "Sentences/1.txt line 3" in e.value.line() and "\n" not in e.value.line()


def test_xml_several_names_nobox_scene_and_union(tmp_path: Path) -> None:
    p = tmp_path / "a.xml"
    p.write_text(XML, encoding="utf-8")
    a = read_annotation(p)
    assert (a.width, a.height) == (500, 375)
    assert a.boxes["18"] == [(10, 20, 100, 200), (150, 30, 250, 300)] and a.boxes["23"] == [
        (10, 20, 100, 200)
    ]
    assert a.nobox == {"19", "24"} and a.scene == {"24"}
    assert union_box(a.boxes["18"]) == (10, 20, 250, 300)


@pytest.mark.parametrize("bad, where", [("<xmax>100</xmax>", "<xmax>900</xmax>"), ("</annotation>", "")])
def test_xml_errors_name_file_and_line(tmp_path: Path, bad: str, where: str) -> None:
    p = tmp_path / "b.xml"
    p.write_text(XML.replace(bad, where, 1), encoding="utf-8")
    with pytest.raises(DataError) as e:
        read_annotation(p)
    msg = e.value.line()
    assert str(p) in msg and " line " in msg and "\n" not in msg
    if bad.startswith("<xmax>"):
        assert "outside" in msg and "line 4" in msg


def tiny_flickr(root: Path, fmt: str = "npz", seed: int = 0) -> Path:
    """A tiny dataset in the real layout: Flickr-style captions, XML with several names, features, GloVe."""
    rng = np.random.default_rng(seed)
    for d in ("Sentences", "Annotations", "features", "flickr30k-images"):
        (root / d).mkdir(parents=True, exist_ok=True)
    classes = ["man", "hat", "dog"]
    (root / "features" / "classes.txt").write_text("\n".join(["Man", "Hat", "Dog"]) + "\n", encoding="utf-8")
    ids = [str(1000 + i) for i in range(12)]
    rows = []
    for k, i in enumerate(ids):
        lines = [f"[/EN#{k}1/people A man] with [/EN#{k}2/clothing an orange hat] walks [/EN#{k}3/animals/other a dog] .",
                 f"[/EN#{k}1/people Two men] and [/EN#{k}3/animals dogs] on [/EN#{k}4/scene the street] .",
                 f"[/EN#0/notvisual Somebody] sees [/EN#{k}2/clothing the hat] ."]  # fmt: skip
        (root / "Sentences" / f"{i}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        xml = (f"<annotation><size><width>200</width><height>100</height><depth>3</depth></size>"
               f"<object><name>{k}1</name><name>{k}3</name><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>60</xmax>"
               f"<ymax>90</ymax></bndbox></object><object><name>{k}1</name><bndbox><xmin>70</xmin><ymin>10</ymin>"
               f"<xmax>120</xmax><ymax>95</ymax></bndbox></object><object><name>{k}2</name><bndbox><xmin>20</xmin>"
               f"<ymin>5</ymin><xmax>40</xmax><ymax>25</ymax></bndbox></object><object><name>{k}4</name>"
               f"<nobndbox>1</nobndbox><scene>1</scene></object></annotation>")  # fmt: skip
        (root / "Annotations" / f"{i}.xml").write_text(xml, encoding="utf-8")
        r = 6 + k % 3
        boxes = np.c_[rng.uniform(0, 90, (r, 2)), rng.uniform(100, 200, (r, 1)), rng.uniform(50, 100, (r, 1))]
        boxes[0] = (5, 5, 60, 90)
        feats = rng.normal(size=(r, 16)).astype(np.float32)
        det = rng.normal(size=(r, len(classes) + 1)).astype(np.float32)
        if fmt == "npz":
            np.savez(
                root / "features" / f"{i}.npz", boxes=boxes.astype(np.float32), feats=feats, det_logits=det
            )
        else:
            b64 = lambda a: base64.b64encode(np.ascontiguousarray(a, np.float32).tobytes()).decode()  # noqa: E731
            rows.append(f"{i}\t200\t100\t{r}\t{b64(boxes)}\t{b64(feats)}")
    if rows:
        (root / "features" / "butd.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    for name, part in (("train", ids[:8]), ("val", ids[8:10]), ("test", ids[10:])):
        (root / f"{name}.txt").write_text("\n".join(part) + "\n", encoding="utf-8")
    words = ["a", "man", "men", "with", "an", "orange", "hat", "walks", "dog", "dogs", "two", "and", "on", "the",
             "street", "somebody", "sees", "."]  # fmt: skip
    vec = rng.normal(size=(len(words), 8))
    (root / "glove.test.8d.txt").write_text("".join(w + " " + " ".join(f"{x:.4f}" for x in v) + "\n"
                                                    for w, v in zip(words, vec)), encoding="utf-8")  # fmt: skip
    return root


def _cfg(**kw) -> dict:
    from mlkit.core.config import load_defaults

    cfg = load_defaults("mlkit.tasks.grounding")
    cfg.update(kw)
    return cfg


def test_real_layout_fixture_loads(tmp_path: Path) -> None:
    d = load(tiny_flickr(tmp_path / "f"), _cfg())
    assert d.classes == ["man", "hat", "dog"] and d.store.feats.shape == (12, 8, 16)
    assert d.store.rmask.sum(1).tolist() == [6 + k % 3 for k in range(12)]
    ev = d.evals[
        "test"
    ]  # per caption: man, hat, dog (line 1), men, dogs (line 2), hat (line 3); scene/notvisual out
    assert len(ev.img) == 2 * 6
    assert ev.gt[0].tolist() == [5, 5, 120, 95] and ev.boxes[0] == [(5, 5, 60, 90), (70, 10, 120, 95)]
    assert ev.types[2] == ("animals", "other")
    assert d.phrase_map["a man"] == "man" and d.phrase_map["dogs"] == "dog"  # plural-stripped head word
    assert len(d.pairs["img"]) == 8 * 3


def test_tsv_adapter_matches_npz(tmp_path: Path) -> None:
    a = load(tiny_flickr(tmp_path / "a"), _cfg())
    b = load(tiny_flickr(tmp_path / "b", "tsv"), _cfg())
    assert b.store.det is None
    np.testing.assert_array_equal(np.asarray(a.store.boxes), np.asarray(b.store.boxes))
    np.testing.assert_array_equal(np.asarray(a.store.feats), np.asarray(b.store.feats))


def test_h5_adapter(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    root = tiny_flickr(tmp_path / "h")
    with h5py.File(root / "features" / "feats.h5", "w") as f:
        for p in sorted((root / "features").glob("*.npz")):
            z = np.load(p)
            f[p.stem] = np.c_[z["feats"], z["det_logits"], z["boxes"]]
            p.unlink()
    a = load(root, _cfg())
    assert a.store.feats.shape == (12, 8, 16) and a.store.det is not None


def test_synth_round_trips_through_the_flickr_parser(tmp_path: Path) -> None:
    root = write_synth(tmp_path / "s", 6, 2, 2, 20, 128, 3)
    for p in sorted((root / "Sentences").glob("*.txt")):
        sents = read_sentences(p)
        a = read_annotation(root / "Annotations" / f"{p.stem}.xml")
        assert len(sents) == 5
        for s in sents:
            for ph in s.phrases:
                assert ph.entity in a.boxes or ph.entity in a.nobox or "notvisual" in ph.types
        z = np.load(root / "features" / f"{p.stem}.npz")
        assert (
            z["boxes"].shape == (20, 4)
            and z["feats"].shape == (20, FT.FEATURE_DIM)
            and z["det_logits"].shape == (20, 5)
        )
        from mlkit.kernels.grounding_distill import box_iou_np

        gts = np.array([b for bs in a.boxes.values() for b in bs])
        assert (box_iou_np(gts, z["boxes"]).max(1) >= 0.5).all()  # every GT has a proposal at IoU >= 0.5
    d = load(root, _cfg())
    assert len(d.pairs["img"]) == 30 and d.store.det is not None


def test_phrase_map_covers_shape_synonyms_and_no_colour(tmp_path: Path) -> None:
    root = write_synth(tmp_path / "s", 2, 1, 1, 20, 128, 0)
    words, vecs = FT.read_glove(root / "glove_synth.txt", set(open(root / "glove_synth.txt").read().split()))
    wv = dict(zip(words, vecs))
    phrases = {f"a {c} {w}" for c in FT.PALETTE for s in SHAPES for w in SYNONYMS[s]} | set(FT.PALETTE)
    hard, _ = build_phrase_map(phrases, wv, list(SHAPES), 0.55)
    shape_ph = [p for p in phrases if p not in FT.PALETTE]
    cover = sum(hard.get(p) == next(s for s in SHAPES if p.split()[-1] in SYNONYMS[s]) for p in shape_ph)
    assert cover / len(shape_ph) >= 0.9
    assert not any(c in hard for c in FT.PALETTE)


def test_fuzz_truncated_and_garbled_files_are_data_errors(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    base = tiny_flickr(tmp_path / "base")
    files = [base / "Sentences" / "1003.txt", base / "Annotations" / "1003.xml", base / "features" / "1003.npz",
             base / "glove.test.8d.txt", base / "train.txt"]  # fmt: skip
    for trial in range(10):
        root = tiny_flickr(tmp_path / f"t{trial}")
        target = root / files[trial % len(files)].relative_to(base)
        raw = target.read_bytes()
        if trial % 2:
            raw = raw[: int(len(raw) * rng.uniform(0.2, 0.8))]
        else:
            pos = rng.integers(0, len(raw), 6)
            raw = bytearray(raw)
            for p in pos:
                raw[p] = int(rng.choice([ord("["), ord("]"), ord("<"), 0xFF, ord(" ")]))
            raw = bytes(raw)
        target.write_bytes(raw)
        try:
            load(root, _cfg())
        except DataError as e:
            assert "\n" not in e.line() and e.line().startswith("error: ")
            assert target.name in e.line() or str(root) in e.line() or "image" in e.line()


def test_phrase_map_json_is_validated(tmp_path: Path) -> None:
    root = tiny_flickr(tmp_path / "m")
    (root / "phrase_to_label.json").write_text(json.dumps({"A man": "Man", "a dog": "cat"}), encoding="utf-8")
    with pytest.raises(DataError, match="unknown classes"):
        load(root, _cfg())
    (root / "phrase_to_label.json").write_text(json.dumps({"A man": "Man"}), encoding="utf-8")
    assert load(root, _cfg()).phrase_map == {"a man": "man"}


def test_referit_grouping_one_pseudo_sentence_per_image(tmp_path: Path) -> None:
    d = load(tiny_flickr(tmp_path / "r"), _cfg(referit=True))
    assert len(d.pairs["img"]) == 8  # one pair per train image
    assert int((d.pairs["tok"] > 0).any(-1).sum(1).max()) == 8  # its distinct phrases of all captions


def test_batches_sample_phrases_over_the_cap_and_trim_padding(tmp_path: Path) -> None:
    import torch

    from mlkit.tasks.grounding.steps import make_batch

    d = load(tiny_flickr(tmp_path / "c"), _cfg(referit=True))
    b = make_batch(d, np.arange(4), torch.Generator().manual_seed(0), "cpu", 3)
    assert b["tok"].shape[1:] == (3, 10) and bool(b["pmask"].all())
    assert b["feats"].shape == (4, 8, 16) and (b["img"].numpy() == d.pairs["img"][:4]).all()
    np.testing.assert_array_equal(b["feats"].numpy(), np.asarray(d.store.feats[d.pairs["img"][:4]]))
    d2 = load(tiny_flickr(tmp_path / "c2"), _cfg())
    b2 = make_batch(d2, np.array([5, 0, 7]), torch.Generator().manual_seed(0), "cpu", 16)
    assert b2["tok"].shape[1] == 3  # the widest caption's phrase count, padding trimmed


def test_scalar_feature_stats_match_numpy(tmp_path: Path) -> None:
    from mlkit.tasks.grounding.data import scalar_stats

    d = load(tiny_flickr(tmp_path / "s"), _cfg())
    tr = d.split["train"]
    x = np.asarray(d.store.feats[tr], np.float64)[np.asarray(d.store.rmask[tr])]
    mu, sd = scalar_stats(d.store, tr, chunk=3)
    assert mu == pytest.approx(x.mean()) and sd == pytest.approx(x.std()) and (d.mu, d.sigma) == (mu, sd)
