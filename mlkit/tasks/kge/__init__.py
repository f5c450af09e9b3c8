"""kge: DKGE, context-aware dynamic knowledge-graph embedding with online updates, evaluated like PyKEEN.

Light module: the CLI reads SPEC and TINY from here without importing torch.
"""

from __future__ import annotations

from mlkit.core.registry import Flag, TaskSpec

_ALL = ("train", "eval", "predict")
_UPD = ("update",)

SPEC = TaskSpec(
    name="kge",
    method="DKGE: joint knowledge + contextual-subgraph embeddings (attentive GCN, gate), TransE scoring, online "
    "update of the affected region; filtered rank-based MRR / Hits@k",
    paper="Wu, Khan, Yong, Qi, Wang, Efficiently Embedding Dynamic Knowledge Graphs, Knowledge-Based Systems 2022 "
    "(arXiv 1910.06708)",
    metrics=("test/mrr", "test/mr", "test/hits@1", "test/hits@3", "test/hits@10"),
    monitor="val/mrr",
    monitor_mode="max",
    layout=(
        "OpenKE: <root>/entity2id.txt, relation2id.txt (count line, then 'name<TAB>id'), train2id.txt, "
        "valid2id.txt, test2id.txt (count line, then 'h t r'); or TSV: <root>/train.txt, valid.txt, test.txt "
        "('head<TAB>relation<TAB>tail'); or <root>/snapshot1/ .. snapshotN/ each holding one of these"
    ),
    inputs="a query 'head relation ?' or '? relation tail' (names, tab- or space-separated)",
    flags=(
        Flag("--format", "format", str, "data layout: auto | openke | tsv", modes=(*_ALL, *_UPD)),
        Flag(
            "--snapshot",
            "snapshot",
            str,
            "snapshot of a dynamic folder to train/evaluate on (N or snapshotN)",
            modes=_ALL,
        ),  # fmt: skip
        Flag("--preset", "preset", str, "paper: the original protocol (see config.yaml)", modes=("train",)),
        Flag("--dim", "model.dim", int, "embedding dimension d", modes=("train",)),
        Flag("--norm", "model.norm", int, "distance norm p (1 or 2)", modes=("train",)),
        Flag("--neg", "neg", str, "negatives: bern-global | bern | unif", modes=("train", "update")),
        Flag(
            "--ties",
            "eval.ties",
            str,
            "rank tie policy: optimistic | realistic | pessimistic",
            modes=(*_ALL, *_UPD),
        ),  # fmt: skip
        Flag("--filter", "eval.filter", str, "filtered ranks: all | train | none", modes=(*_ALL, *_UPD)),
        Flag("--top-k", "predict.k", int, "answers per query", modes=("predict",)),
        Flag("--affected", "online.affected", str, "affected region: subgraph | code", modes=_UPD),
        Flag(
            "--model",
            "",
            str,
            "checkpoint trained on the --from snapshot (.pt or run dir)",
            modes=("update", "export"),
        ),  # fmt: skip
        Flag(
            "--from", "", str, "the snapshot the model was trained on (default: the model's data)", modes=_UPD
        ),
        Flag(
            "--to",
            "",
            str,
            "the new snapshot folder, or a folder with added.txt / deleted.txt (h r t TSV)",
            modes=_UPD,
        ),  # fmt: skip
        Flag("--name", "", str, "run name of the updated model (default: update)", modes=_UPD),
        Flag("--out", "", str, "folder for the .npy and .tsv embedding files", modes=("export",)),
    ),
    verbs={"synth": "mlkit.tasks.kge.cli:synth"},
    config_verbs={"update": "mlkit.tasks.kge.cli:update", "export": "mlkit.tasks.kge.cli:export"},
    rows="classification",
)

# `MLKIT_TINY=1` / the contract test: seconds on a CPU, >= 2 epochs.
TINY = {"epochs": 2, "model.dim": 16, "synth.entities": 80, "synth.triples": 600, "synth.relations": 6}
