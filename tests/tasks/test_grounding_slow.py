"""grounding §7 validation (slow, < 10 min on 2 cores): the default synthetic set (800/100/200 images, R = 20),
NCE and NCE+Distill for 10 epochs each (B = 32, Adam 1e-3), evaluated on test against the baselines.

    python -m pytest -m slow tests/tasks/test_grounding_slow.py -s
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mlkit.cli import main

COMMON = ["--device", "cpu", "--quiet", "--json", "--epochs", "10", "--batch-size", "32", "--lr", "0.001",
          "--set", "viz=0"]  # fmt: skip


def _train(runs: Path, name: str, extra: list[str], capsys: pytest.CaptureFixture) -> tuple[dict, Path]:
    rc = main(["grounding", "train", "--project", str(runs), "--name", name, *COMMON, *extra])
    cap = capsys.readouterr()
    assert rc == 0, cap.err[-2000:]
    body = json.loads(cap.out)
    return body["metrics"], Path(body["run_dir"])


@pytest.mark.slow
def test_section7_nce_distill_beats_baselines(runs_dir: Path, capsys: pytest.CaptureFixture) -> None:
    from mlkit.tasks.grounding import features as FT
    from mlkit.tasks.grounding.data import build_phrase_map
    from mlkit.tasks.grounding.synth import SHAPES, SYNONYMS

    nce, _ = _train(runs_dir, "nce", ["--no-distill"], capsys)
    dis, run = _train(runs_dir, "distill", [], capsys)
    b = "test/baseline/"
    with capsys.disabled():
        print("\n| method | R@1 | R@5 | pointing |\n|---|---|---|---|")
        for name, pre, m in (("random", b + "random/", dis), ("centre", b + "centre/", dis),
                             ("largest", b + "largest/", dis), ("detector-direct", b + "detector/", dis),
                             ("NCE", "test/", nce), ("NCE+Distill", "test/", dis)):  # fmt: skip
            print(f"| {name} | {m[pre + 'r1']:.4f} | {m[pre + 'r5']:.4f} | {m[pre + 'pointing']:.4f} |")
        print(f"upper bound {dis['test/upper_bound']:.4f}")
    r1 = dis["test/r1"]
    assert r1 >= dis[b + "centre/r1"] + 0.2 and r1 >= dis[b + "random/r1"] + 0.3
    assert r1 >= nce["test/r1"]
    assert dis["test/pointing"] >= r1
    # the distillation loss falls once lambda > 0.001 (global step >= 500)
    rows = list(csv.DictReader(open(run / "results.csv", encoding="utf-8")))
    on = [float(r["train/distill"]) for r in rows if float(r["train/lambda"]) >= 1.0]
    assert len(on) >= 2 and on[-1] < on[0], on
    # the phrase->class map covers >= 90 % of the shape phrases and maps no colour word
    pmap = json.loads((run / "phrase_to_label.json").read_text(encoding="utf-8"))
    from mlkit.core.artifact import cache_root

    root = next(cache_root().glob("grounding-synth-*"))
    phrases = set()
    for p in (root / "Sentences").glob("*.txt"):
        from mlkit.tasks.grounding.flickr import normalize, read_sentences

        phrases |= {normalize(ph.text) for s in read_sentences(p) for ph in s.phrases if "other" in ph.types}
    want = {p: next(s for s in SHAPES if p.split()[-1] in SYNONYMS[s]) for p in phrases}
    cover = sum(pmap.get(p) == c for p, c in want.items()) / len(want)
    assert cover >= 0.9, cover
    words, vecs = FT.read_glove(
        root / "glove_synth.txt", set(FT.PALETTE) | {w for s in SHAPES for w in SYNONYMS[s]}
    )
    hard, _ = build_phrase_map(set(FT.PALETTE), dict(zip(words, vecs)), list(SHAPES), 0.55)
    assert not hard, hard
