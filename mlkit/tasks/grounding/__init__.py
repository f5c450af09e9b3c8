"""grounding: weakly supervised phrase grounding by contrastive learning and detector distillation (NCE+Distill).

Light module: the CLI reads SPEC and TINY from here without importing torch.
"""

from __future__ import annotations

from mlkit.core.registry import Flag, TaskSpec

_ALL = ("train", "eval", "predict")

SPEC = TaskSpec(
    name="grounding",
    method="weakly supervised phrase grounding: a region-phrase score trained from image-caption pairs by "
    "sentence->image InfoNCE, distilled towards a detector's class scores (NCE+Distill); baselines random, centre, "
    "largest box, detector-direct",
    paper="Wang, Huang, Li, Xu, Yang, Yu, Improving Weakly Supervised Visual Grounding by Contrastive Knowledge "
    "Distillation, CVPR 2021 (arXiv 2007.01951)",
    metrics=("test/r1", "test/r5", "test/r10", "test/pointing", "test/upper_bound"),
    monitor="val/r1",
    monitor_mode="max",
    layout=(
        "Flickr30K Entities: <root>/Sentences/<id>.txt ('[/EN#18/people A man] ...'), <root>/Annotations/<id>.xml, "
        "<root>/{train,val,test}.txt, <root>/flickr30k-images/<id>.jpg, region features <root>/features/<id>.npz "
        "(boxes [R,4], feats [R,D], optional det_logits [R,C+1]) or the original's .h5 / bottom-up-attention .tsv, "
        "features/classes.txt, a GloVe text file (glove*.txt in <root> or --glove)"
    ),
    inputs='a JSON object {"image": <image path or id>, "phrase": <text>} (images without features get '
    "fallback proposals with handcrafted descriptors: fine for the synthetic shapes, poor on photographs)",
    flags=(
        Flag("--format", "features", str, "region features: auto | npz | h5 | tsv", modes=_ALL),
        Flag(
            "--glove",
            "glove",
            str,
            "GloVe text file (default: the one glove*.txt in the dataset folder)",
            modes=("train", "eval"),
        ),  # fmt: skip
        Flag(
            "--phrase-map",
            "phrase_map",
            str,
            "phrase_to_label.json to use instead of the word-vector map",
            modes=("train", "eval"),
        ),  # fmt: skip
        Flag(
            "--distill",
            "distill",
            str,
            "hard (K IoU-neighbours, the code) | soft (paper reading) | none",
            modes=("train",),
        ),  # fmt: skip
        Flag("--no-distill", "no_distill", bool, "NCE only (same as --distill none)", modes=("train",)),
        Flag(
            "--gt-mode",
            "gt_mode",
            str,
            "union (union box per entity) | any (a hit on any single box)",
            modes=("train", "eval"),
        ),  # fmt: skip
        Flag(
            "--preset",
            "preset",
            str,
            "paper: the reference protocol (lr 1e-4, 6 epochs, no same-image masking)",
            modes=("train",),
        ),  # fmt: skip
        Flag(
            "--referit",
            "referit",
            bool,
            "group all phrases of an image into one pseudo-sentence (ReferIt)",
            modes=("train",),
        ),  # fmt: skip
        Flag(
            "--save",
            "predict.save",
            str,
            "folder for PNGs: boxes with the phrase, and a score heat map",
            modes=("predict",),
        ),  # fmt: skip
    ),
    verbs={"synth": "mlkit.tasks.grounding.cli:synth"},
    rows="regression",
)

# `mlkit grounding train` with MLKIT_TINY=1 / the contract test: seconds on a CPU, >= 2 epochs.
TINY = {"epochs": 2, "synth.train": 64, "synth.val": 16, "synth.test": 16, "mlp_hidden": 128, "dim": 64,
        "lstm_hidden": 64, "viz": 1}  # fmt: skip
