"""segment: explanations as segmentations, the tied-weight unrolled-LRP decoder (TW-autoencoder), U-Net baselines.

Light module: the CLI reads SPEC and TINY from here without importing torch.
"""

from __future__ import annotations

from mlkit.core.registry import Flag, TaskSpec

_ALL = ("train", "eval", "predict")

SPEC = TaskSpec(
    name="segment",
    method="TW-autoencoder: a classifier's unrolled LRP-eps backward pass, tied to the encoder, as a segmentation "
    "decoder (heatmaps = segmentation logits), trained with image labels + few pixel labels; std-/mt-U-Net baselines",
    paper="Yu, Franzen, Samek, Hoehne, Kainmueller, Model Guidance via Explanations Turns Image Classifiers into "
    "Segmentation Models, xAI 2024 (arXiv 2407.03009)",
    metrics=("test/miou", "test/miou_orig", "test/pixel_acc", "test/cls_f1"),
    monitor="val/miou",
    monitor_mode="max",
    layout=(
        "generic: <root>/images/*.png|jpg, masks/*.png (same stem, uint8 class indices, 255 = ignore), optional "
        "labels.csv ('stem,1;3' image labels), split.csv ('stem,train|val|test'), classes.txt; or Pascal VOC 2012: "
        "<root>/JPEGImages, Annotations/*.xml, SegmentationClass/*.png (or SegmentationClassAug), "
        "ImageSets/Segmentation/{train,val}.txt"
    ),
    inputs="an image path (PNG/JPEG) per line",
    flags=(
        Flag("--arch", "arch", str, "tw | std-unet | mt-unet", modes=("train",)),
        Flag("--format", "format", str, "data layout: auto | generic | voc", modes=_ALL),
        Flag("--encoder", "encoder", str, "tiny | resnet18 | resnet50 | vgg16 | vgg16_bn", modes=("train",)),
        Flag(
            "--encoder-weights",
            "encoder_weights",
            str,
            "local encoder state_dict file (else random init)",
            modes=("train",),
        ),  # fmt: skip
        Flag(
            "--pretrain-epochs",
            "pretrain_epochs",
            int,
            "classification pretraining epochs before training",
            modes=("train",),
        ),  # fmt: skip
        Flag("--preset", "preset", str, "paper: the original's protocol (`config --preset paper`); set keys win",
             modes=("train",)),
        Flag("--lrp-rule", "lrp_rule", str, "tw decoder rule: epsilon | alpha-beta", modes=("train",)),
        Flag("--budget", "budget", str, "pixel-labelled train images: N or P% (e.g. 5%)", modes=("train",)),
        Flag(
            "--grad-mode",
            "grad_mode",
            str,
            "oneshot | iterative (same gradients, less memory)",
            modes=("train",),
        ),  # fmt: skip
        Flag(
            "--masks",
            "voc.masks",
            str,
            "VOC mask folder: SegmentationClass | SegmentationClassAug",
            modes=_ALL,
        ),
        Flag(
            "--train-list",
            "voc.train_list",
            str,
            "VOC list of masked train ids (e.g. train_aug.txt)",
            modes=("train",),
        ),  # fmt: skip
        Flag(
            "--save",
            "predict.out",
            str,
            "folder for predicted palette masks and heatmap overlays",
            modes=("predict",),
        ),  # fmt: skip
    ),
    verbs={"synth": "mlkit.tasks.segment.cli:synth", "pretrain": "mlkit.tasks.segment.cli:pretrain"},
    rows="classification",
)

# `mlkit segment train` with MLKIT_TINY=1 / the contract test: seconds on a CPU, >= 2 epochs.
TINY = {"epochs": 2, "pretrain_epochs": 1, "shapes.train": 96, "shapes.val": 32, "viz": 2}
