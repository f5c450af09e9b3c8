"""attack: AdvGAN (a generator of bounded adversarial perturbations) beside FGSM / PGD / CW-L2 baselines.

Light module: the CLI reads SPEC and TINY from here without importing torch.
"""

from __future__ import annotations

from mlkit.core.registry import Flag, TaskSpec

_ALL = ("train", "eval", "predict")
_RUN = ("train", "eval", "predict", "target")

SPEC = TaskSpec(
    name="attack",
    method="AdvGAN: a generator G maps x to a perturbation, x' = clip(x + clip(G(x), eps)); trained with C&W on the "
    "target's logits + LSGAN + hinge on ||x' - x||_2; semi-whitebox, targeted, black-box static/dynamic distillation; "
    "FGSM, PGD (L-inf, L2) and CW-L2 baselines",
    paper="Xiao, Li, Zhu, He, Liu, Song, Generating Adversarial Examples with Adversarial Networks, IJCAI 2018 "
    "(arXiv 1801.02610)",
    metrics=("test/clean_accuracy", "test/success", "test/success_correct", "test/robust_accuracy", "test/linf",
             "test/l2", "test/images_per_s"),  # fmt: skip
    monitor="val/success",
    monitor_mode="max",
    layout="<root>/train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte "
    "(MNIST idx, each optionally .gz); <root>/data_batch_1..5, test_batch, batches.meta (CIFAR-10 python pickles); "
    "<root>/train/<class>/*.png + <root>/test|val/<class>/*.png, or <root>/<class>/*.png (seeded split)",
    inputs="an image path (PNG/JPEG, converted to the checkpoint's channels and resized to its size) with an "
    "optional ',label' per line, or 'test:N' for test image N",
    flags=(
        Flag("--preset", "preset", str, "paper | port | cifar: the paper's §7 protocol, the port's losses, or the paper's CIFAR-10 "
             "bound (eps 8/255, ResNet-32)", modes=_RUN),
        Flag("--setting", "setting", str, "semi-whitebox | blackbox-static | blackbox-dynamic", modes=("train",)),
        Flag("--target", "target", str, "target model file (mlkit target file, state dict, TorchScript)",
             modes=("train", "target")),  # fmt: skip
        Flag("--target-arch", "target_arch", str, "auto | a | b | c | resnet8 | resnet20 | resnet32 (built-in "
             "targets, state dicts)",
             modes=("train", "target")),  # fmt: skip
        Flag("--targeted", "targeted", bool, "targeted attack (t = --target-class or (y + 1) mod k)", modes=_ALL),
        Flag("--target-class", "target_class", int, "targeted: fixed class t (-1: (y + 1) mod k)", modes=_ALL),
        Flag("--eps", "eps", float, "L-inf bound in [0, 1] pixel units", modes=_ALL),
        Flag("--method", "predict.method", str, "advgan | fgsm | pgd | pgd-l2 | cw", modes=("predict",)),
        Flag("--methods", "eval.methods", str, "methods eval runs (repeat)", modes=("eval",), multiple=True),
        Flag("--save", "predict.out", str, "folder for adversarial .npz files and PNG grids", modes=("predict",)),
        Flag("--out", "", str, "target: the target model file to write", modes=("target",)),
    ),
    config_verbs={"target": "mlkit.tasks.attack.cli:target"},
    rows="classification",
)

# `MLKIT_TINY=1` / the contract test: seconds on a CPU, >= 2 epochs.
TINY = {"epochs": 2, "target_epochs": 1, "digits.train": 600, "digits.test": 200, "val": 100,
        "eval.limit": 50, "eval.pgd_steps": 5, "eval.cw_steps": 10, "eval.curve_eps": [0.1, 0.3]}
