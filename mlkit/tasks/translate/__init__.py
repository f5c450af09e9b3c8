"""translate: DRIT, diverse unpaired image-to-image translation with disentangled content and attribute codes.

Light module: the CLI reads SPEC and TINY from here without importing torch.
"""

from __future__ import annotations

from mlkit.core.registry import Flag, TaskSpec

_ALL = ("train", "eval", "predict")

SPEC = TaskSpec(
    name="translate",
    method="DRIT: shared content encoders + a content discriminator, per-domain attribute encoders with a Gaussian "
    "prior, cross-cycle consistency, multi-scale domain discriminators; diverse outputs by sampling the attribute",
    paper="Lee, Tseng, Huang, Singh, Yang, Diverse Image-to-Image Translation via Disentangled Representations, "
    "ECCV 2018 (arXiv 1808.00948); DRIT++ (IJCV 2020, arXiv 1905.01270)",
    metrics=("test/diversity_l1", "test/diversity_feat", "test/fid", "test/kid", "test/cycle_l1"),
    monitor="val/iteration",
    monitor_mode="max",
    layout="<root>/{trainA,trainB,testA,testB}/*.png|jpg (DRIT, unpaired, any size; optional labels.csv "
    "'trainA/x.png,5'), or MNIST -> MNIST-M: <root>/[mnist/]{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] and "
    "<root>/mnist_m/{mnist_m_train,mnist_m_test}/*.png + mnist_m_{train,test}_labels.txt",
    inputs="an image path per line, optionally followed by a TAB and a reference image of the target domain "
    "(its attribute is used)",
    flags=(
        Flag("--preset", "preset", str, "paper: the paper's whole protocol", modes=_ALL),
        Flag("--arch", "arch", str, "drit (concat attribute) | drit-feature (feature-wise attribute)",
             modes=("train",)),  # fmt: skip
        Flag("--format", "format", str, "data layout: auto | drit | mnist-m", modes=_ALL),
        Flag("--mode-seeking", "model.mode_seeking", bool, "DRIT++ mode-seeking term", modes=("train",)),
        Flag("--spectral-norm", "model.spectral_norm", bool, "spectral norm in the domain D's", modes=("train",)),
        Flag("--zero-attr", "model.zero_attr", bool, "ablation: zero attributes (deterministic)", modes=("train",)),
        Flag("--d-iter", "d_iter", int, "every N-th iteration updates D and E/G, the others D^c only",
             modes=("train",)),  # fmt: skip
        Flag("--feature-net", "eval.feature_net", str, "TorchScript feature network for FID/KID", modes=_ALL),
        Flag("--lpips-backbone", "eval.lpips_backbone", str, "local AlexNet weights for LPIPS", modes=_ALL),
        Flag("--direction", "predict.direction", str, "a2b | b2a", modes=("predict",)),
        Flag("--num", "predict.num", int, "translations per input", modes=("predict",)),
        Flag("--z", "predict.z", str, ".npy of attribute codes (num x nz)", modes=("predict",)),
        Flag("--save", "predict.out", str, "folder for the translated PNGs", modes=("predict",)),
    ),
    verbs={"synth": "mlkit.tasks.translate.cli:synth"},
    rows="regression",
)

# `MLKIT_TINY=1` / the contract test: seconds on a CPU, >= 2 epochs.
TINY = {"epochs": 2, "iters_per_epoch": 3, "mnistm_lite.train": 60, "mnistm_lite.test": 24, "img_every": 1,
        "eval.inputs": 8, "eval.samples": 3, "eval.feat_epochs": 1, "eval.cls_epochs": 1, "eval.grid": 4}
