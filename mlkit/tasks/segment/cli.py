"""Extra verb of `mlkit segment`: `synth` writes the seeded `shapes` set in the generic layout."""

from __future__ import annotations

from pathlib import Path

import typer


def synth(
    out: Path = typer.Option(
        ..., "--out", help="Folder to write images/, masks/, labels.csv, split.csv into."
    ),
    train: int = typer.Option(600, "--train", help="Train images."),
    val: int = typer.Option(200, "--val", help="Validation images."),
    size: int = typer.Option(32, "--size", help="Image side in pixels."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    classes: int = typer.Option(3, "--classes", help="Foreground classes: 3, or 4 with the horse silhouette."),
) -> None:
    """Write the synthetic `shapes` segmentation set (disc / square / triangle on photo textures); prints the folder."""
    from mlkit.tasks.segment.data import shape_classes, write_shapes

    shape_classes(classes, "--classes")
    write_shapes(out, train, val, size, seed, classes=classes)
    print(out)


def pretrain(
    out: Path = typer.Option(..., "--out", help="Encoder state_dict file to write (use it with --encoder-weights)."),
    images: int = typer.Option(20000, "--images", help="Seeded shapes images (a tenth, at most 1000, held out)."),
    epochs: int = typer.Option(12, "--epochs", help="Classification epochs."),
    encoder: str = typer.Option("tiny", "--encoder", help="tiny | resnet18 | resnet50 | vgg16 | vgg16_bn"),
    width: int = typer.Option(16, "--width", help="Tiny encoder: stem channels."),
    size: int = typer.Option(32, "--size", help="Image side in pixels."),
    seed: int = typer.Option(1, "--seed", help="Seed of the images, the init and the batch order."),
    lr: float = typer.Option(1e-3, "--lr", help="AdamW learning rate."),
    batch_size: int = typer.Option(16, "--batch-size", help="Images per step."),
    classes: int = typer.Option(3, "--classes", help="Foreground classes: 3, or 4 with the horse silhouette."),
) -> None:
    """Pretrain an encoder on many seeded shapes images with image labels only: the toy's stand-in for ImageNet
    weights (see the README's segment section); prints one JSON line with the file and its val label accuracy."""
    import sys

    from mlkit.core.console import emit
    from mlkit.core.errors import UsageError
    from mlkit.tasks.segment.data import shape_classes
    from mlkit.tasks.segment.model import ENCODERS
    from mlkit.tasks.segment.stand_in import pretrain_encoder, save_encoder

    if encoder not in ENCODERS:
        raise UsageError(f"unknown encoder '{encoder}'", "--encoder", f"Use one of {', '.join(ENCODERS)}.")
    shape_classes(classes, "--classes")
    if images < 2 * batch_size or epochs < 1:
        raise UsageError("too few images or epochs", "--images", f"Use --images >= {2 * batch_size}, --epochs >= 1.")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    enc, acc = pretrain_encoder(encoder, width, images, epochs, size, seed, lr, batch_size, log, classes)
    save_encoder(enc, out)
    emit({"schema_version": 1, "task": "segment", "mode": "pretrain", "encoder_weights": str(out),
          "encoder": encoder, "metrics": {"val/label_acc": acc}})  # fmt: skip
