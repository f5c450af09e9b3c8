"""M3DM multimodal (RGB + point cloud) industrial anomaly detection on MVTec 3D-AD (light: no torch here).

M3DM is one-shot (`fit` builds the memory banks, UFF and fusion in one pass), so the runner uses no monitor: `monitor`
is "" and best.pt == last.pt. Train still scores the test split, as the paper reports.
"""

from __future__ import annotations

from mlkit.core.registry import Flag, TaskSpec

_T = ("train",)
SPEC = TaskSpec(
    name="anomaly",
    method="M3DM (Multi-3D-Memory): three memory banks, UFF fusion and decision-layer fusion",
    paper="Wang et al., Multimodal Industrial Anomaly Detection via Hybrid Fusion, CVPR 2023 (arXiv 2303.00601)",
    metrics=("test/i_auroc", "test/p_auroc", "test/aupro"),
    monitor="",  # one-shot: no epochs to pick from
    monitor_mode="max",
    layout=(
        "<root>/<category>/train/good/{rgb/NNN.png,xyz/NNN.tiff} <root>/<category>/validation/good/{rgb,xyz}/ "
        "<root>/<category>/test/<defect|good>/{rgb,xyz,gt}/ (MVTec 3D-AD; xyz = float32 HxWx3 TIFF in metres)"
    ),
    inputs="an RGB .png and its xyz .tiff separated by a tab or space, or one rgb/xyz path whose pair sits in ../rgb|../xyz",
    flags=(
        Flag("--category", "category", str, "category: one name, a comma list, or all", ("train", "eval")),
        Flag("--modalities", "modalities", str, "rgb | pt | fusion | double | triple", _T),
        Flag("--rgb-backbone", "rgb_backbone", str, "handcrafted | timm:<arch>[@weights.pth]", _T),
        Flag("--point-backbone", "point_backbone", str, "fpfh | pointmae[@ckpt.pth]", _T),
        Flag("--max-train", "max_train", int, "cap on train images per category", _T),
        Flag("--coreset-mode", "memory.coreset_mode", str, "uniform | reference", _T),
        Flag("--norm", "memory.norm", str, "reference | per-bank scalar standardisation", _T),
        Flag("--score-norm", "fusion.score_norm", str, "train | lambda (paper weights 1, 0.1, 1)", _T),
        Flag("--fusion-fit", "fusion.fit", str, "train | validation: images the OCSVMs are fitted on", _T),
        Flag("--uff-pairs", "uff.pairs", str, "aligned | reference (the original's misaligned pairs)", _T),
        Flag("--uff-steps", "uff.steps", int, "UFF optimiser steps (0 = use epochs)", _T),
        Flag("--uff", "uff.path", str, "reuse a trained UFF: an mlkit anomaly checkpoint or a UFF state_dict", _T),
        Flag("--save-maps", "save_maps", bool, "write heatmap | ground-truth PNG panels", ("train", "eval")),
        Flag("--threshold", "threshold.mode", str, "max | quantile over validation/good image scores", _T),
        Flag("--preset", "preset", str, "paper: the paper's banks, UFF recipe and fusion (`config --preset paper`)", _T),
    ),
    verbs={"synth": "mlkit.tasks.anomaly.cli:synth", "preprocess": "mlkit.tasks.anomaly.cli:preprocess"},
    rows="score",
)

# The embedded default's preset: `mlkit anomaly train` without --data trains on the cached synthetic `blob` with these
# lighter settings (a run of about a minute on 2 CPU cores), each only where the user did not set the key. With --data
# the config.yaml defaults hold. The spec §7 study (tests/tasks/test_anomaly_validation.py) passes --data.
EMBEDDED = {
    "uff.steps": 80,
    "uff.pairs_per_step": 1024,
    "fpfh.feature_k": 50,
}

# Config overrides that make `mlkit anomaly train` (no --data) finish in seconds on a CPU.
TINY = {
    "synth.size": 96,
    "synth.train": 3,
    "synth.validation": 1,
    "synth.test_good": 1,
    "synth.test_dent": 1,
    "synth.test_stain": 1,
    "synth.test_combined": 0,
    "uff.steps": 2,
    "uff.pairs_per_step": 256,
    "memory.coreset_max": 300,
    "fusion.pixel_samples": 20000,
    "fpfh.feature_k": 40,
}
