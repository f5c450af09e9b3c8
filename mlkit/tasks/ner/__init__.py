"""Chinese NER with a Lattice LSTM (Zhang & Yang, ACL 2018) and char/bichar/softword/SoftLexicon baselines."""

from mlkit.core.registry import Flag, TaskSpec

SPEC = TaskSpec(
    name="ner",
    method="Lattice LSTM-CRF over a lexicon lattice (batched), with BiLSTM-CRF and SoftLexicon baselines",
    paper="Zhang & Yang, Chinese NER Using Lattice LSTM, ACL 2018 (arXiv 1805.02023)",
    metrics=("test/f1", "test/precision", "test/recall", "test/token_accuracy"),
    monitor="val/f1",
    monitor_mode="max",
    layout=(
        "<root>/{train,dev,test}.char.bmes (or {train,dev,test}.*.bmes, or train/dev/test *.bio|*.bioes|*.txt): "
        "one '<char> <tag>' per line (BMES, BIO or BIOES tags), a blank line between sentences; "
        "dev is optional (10% of train is carved off when missing); eval needs only the test file (a folder "
        "holding it, or the file itself); several files per split: pick them with --variant or --split-files"
    ),
    inputs="one raw sentence per line (UTF-8 text; whitespace is kept for offsets but never tagged)",
    flags=(
        Flag(
            "--lexicon",
            "lexicon.path",
            str,
            "Lexicon file: one word per line, jieba dict format ('word freq pos') or word2vec text; 'jieba' = "
            "jieba's dict.txt; default: the --word-vectors file's words if given, else jieba's dict.txt.",
            modes=("train",),
        ),
        Flag(
            "--char-vectors",
            "vectors.char",
            str,
            "Pretrained char vectors (word2vec text file), "
            "or 'lac' for the LAC char vectors shipped inside jieba.",
            modes=("train",),
        ),
        Flag(
            "--bichar-vectors",
            "vectors.bichar",
            str,
            "Pretrained bichar vectors (word2vec text file).",
            modes=("train",),
        ),
        Flag(
            "--word-vectors",
            "vectors.word",
            str,
            "Pretrained lexicon word vectors (word2vec text file); without --lexicon its words are the lexicon.",
            modes=("train",),
        ),
        Flag(
            "--scheme",
            "scheme",
            str,
            "Tag scheme of the data files: auto, bmes, bio or bioes.",
            modes=("train", "eval"),
        ),
        Flag(
            "--variant",
            "variant",
            str,
            "The file variant to use where a split has several files "
            "(--variant ne: {train,dev,test}.ne.bmes).",
            modes=("train", "eval"),
        ),
        Flag(
            "--split-files",
            "split_files",
            str,
            "Name the split files: train=FILE,dev=FILE,test=FILE (relative to --data).",
            modes=("train", "eval"),
        ),
        Flag(
            "--label-map",
            "label_map",
            str,
            "File of 'DATA_TYPE MODEL_TYPE' lines mapping the data's entity types (MODEL_TYPE O drops one).",
            modes=("train", "eval"),
        ),
        Flag(
            "--preset",
            "preset",
            str,
            "paper: the original protocol (batch 1, SGD 0.015, no clipping, 100 epochs, hidden 200, "
            "per-direction word tables; `mlkit ner config --preset paper`).",
            modes=("train",),
        ),
        Flag(
            "--output-format",
            "predict.format",
            str,
            "Predict output: json (JSON lines) or conll ('char tag' lines).",
            modes=("predict",),
        ),
    ),
    verbs={"synth": "mlkit.tasks.ner.cli:synth"},
    rows="spans",
)

# Config overrides that make `mlkit ner train` (embedded default data) finish in seconds on CPU.
TINY = {
    "epochs": 2,
    "batch_size": 32,
    "model.hidden": 32,
    "embedded.train": 120,
    "embedded.dev": 30,
    "embedded.test": 30,
}
