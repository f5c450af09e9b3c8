"""longtail: LiVT - masked generative pretraining (MAE) and Balanced BCE for ViTs trained on long-tailed data only.

Light module: the CLI reads SPEC and TINY from here without importing torch.
"""

from __future__ import annotations

from mlkit.core.registry import Flag, TaskSpec

_ALL = ("train", "eval", "predict")
_DATA = ("train", "eval", "pretrain")

SPEC = TaskSpec(
    name="longtail",
    method="LiVT: MAE pretraining (encoder on the visible 25% of tokens) on the long-tailed images, then balanced "
    "fine-tuning of a timm ViT with Bal-BCE (sigmoid BCE with log prior-odds offsets in training only)",
    paper="Xu, Liu, Yang, Chai, Yuan, Learning Imbalanced Data with Vision Transformers, CVPR 2023 (arXiv 2212.02015)",
    metrics=("test/acc", "test/balanced_acc", "test/ece"),
    monitor="val/balanced_acc",
    monitor_mode="max",
    layout=(
        "cifar10: <root>/{data_batch_1..5,test_batch,batches.meta} (or <root>/cifar-10-batches-py/); cifar100: "
        "<root>/{train,test,meta}; split files: --split-file LIST [--test-split-file LIST] [--root IMAGES] with "
        "'relative/path.jpg label' lines; ImageFolder: <root>/train/<class>/*.jpg, <root>/val|test/<class>/*.jpg"
    ),
    inputs="an image path (PNG/JPEG) per line",
    flags=(
        Flag(
            "--format", "format", str, "data layout: auto | cifar10 | cifar100 | split | folder", modes=_DATA
        ),
        Flag(
            "--split-file",
            "split_file",
            str,
            "OLTR-style train list ('relative/path.jpg label' lines)",
            modes=_DATA,
        ),
        Flag(
            "--test-split-file",
            "test_split_file",
            str,
            "test list (default: the train list's _test sibling)",
            modes=_DATA,
        ),  # fmt: skip
        Flag("--root", "root", str, "folder the split files' image paths are relative to", modes=_DATA),
        Flag("--rho", "lt.rho", float, "imbalance factor of the CIFAR LT construction", modes=_DATA),
        Flag(
            "--init",
            "init",
            str,
            "mgp (inline MGP, default) | random | an MGP run dir / checkpoint",
            modes=("train",),
        ),
        Flag("--loss", "loss", str, "bal_bce | bce | ce | bal_ce | cb_ce | cb_bce | ldam", modes=("train",)),
        Flag("--tau", "tau", float, "prior-offset scale of bal_bce / bal_ce", modes=("train",)),
        Flag("--input-size", "input_size", int, "model input side", modes=("train", "pretrain")),
        Flag(
            "--mgp-epochs",
            "mgp.epochs",
            int,
            "MGP epochs (inline, or of `pretrain`)",
            modes=("train", "pretrain"),
        ),
        Flag("--mask-ratio", "mgp.mask_ratio", float, "MGP mask ratio (0.75)", modes=("pretrain",)),
        Flag(
            "--posthoc-tau", "eval.posthoc_tau", float, "post-hoc logit adjustment z - tau log pi", modes=_ALL
        ),
        Flag(
            "--preset",
            "preset",
            str,
            "paper: the paper's whole protocol; keys you set win",
            modes=("train", "pretrain"),
        ),  # fmt: skip
    ),
    train_verbs={
        "pretrain": (
            "Stage 1 (MGP): MAE pretraining on the long-tailed train images, no labels; the run's best.pt feeds "
            "`mlkit longtail train --init <run dir>`.",
            {"stage": "pretrain"},
        )
    },
    rows="classification",
)

# `mlkit longtail train` with MLKIT_TINY=1 / the contract test: seconds on a CPU, >= 2 epochs.
TINY = {"epochs": 2, "mgp.epochs": 1, "batch_size": 32, "lt.rho": 10.0, "default.test_per_class": 20}
