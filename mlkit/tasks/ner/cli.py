"""Extra verb of the ner task: `mlkit ner synth --out DIR` (light module: heavy imports stay inside)."""

from __future__ import annotations

from pathlib import Path

import typer


def synth(
    out: Path = typer.Option(..., "--out", help="Folder to write the corpus into (created)."),
    chars: int = typer.Option(300, "--chars", help="Distinct CJK characters."),
    lexicon_size: int = typer.Option(3000, "--lexicon-size", help="Lexicon words (length 2-4)."),
    train: int = typer.Option(2000, "--train", help="Training sentences."),
    dev: int = typer.Option(300, "--dev", help="Dev sentences."),
    test: int = typer.Option(500, "--test", help="Test sentences (entities unseen in train)."),
    seed: int = typer.Option(0, "--seed", help="Generator seed."),
) -> None:
    """Write the synthetic lexicon-dependence corpus (spec §7A): BMES splits, lexicon.txt, char/word vectors."""
    from mlkit.tasks.ner.synth import write_corpus

    write_corpus(out, chars=chars, lexicon_size=lexicon_size, train=train, dev=dev, test=test, seed=seed)
