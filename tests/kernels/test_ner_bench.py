"""Tiny runs of the ner benchmarks (opt-in: -m bench): both paths agree and the fast path is faster."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


@pytest.mark.bench
def test_throughput_benchmark_runs_and_batching_pays():
    import ner_throughput

    out = ner_throughput.main(["--sentences", "32", "--hidden", "32"])
    assert out["train_cpu_ratio"] > 1.0 and out["predict_cpu_ratio"] > 1.0


@pytest.mark.bench
def test_match_benchmark_trie_beats_naive_scan(tmp_path):
    import ner_match

    from mlkit.tasks.ner.synth import write_corpus

    write_corpus(tmp_path, train=100, dev=10, test=10)
    out = ner_match.main(
        ["--data", str(tmp_path), "--lexicon", str(tmp_path / "lexicon.txt"), "--sentences", "100"]
    )
    assert out["ratio"] > 1.0
