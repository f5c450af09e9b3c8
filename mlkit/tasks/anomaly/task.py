"""M3DM hooks: one-shot fit (banks, UFF, fusion, thresholds, then the test pass); eval and predict from a checkpoint."""

from __future__ import annotations

import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from mlkit.core.errors import DataError, UsageError
from mlkit.core.runtime import Ctx
from mlkit.core.task import FitResult, Task
from mlkit.tasks.anomaly import data as D
from mlkit.tasks.anomaly.checks import check_categories
from mlkit.tasks.anomaly.features import Extractor
from mlkit.tasks.anomaly.m3dm import category_of, fit_categories, test_categories
from mlkit.tasks.anomaly.memory import MODALITIES
from mlkit.tasks.anomaly.pipeline import combine, from_state_dict, score_sample, to_state_dict
from mlkit.tasks.anomaly.report import save_prediction

_PAPER_KEYS = ("fusion.score_norm", "memory.coreset_mode", "memory.coreset_max", "memory.presample",
               "memory.projection_dim", "memory.fs_background")  # fmt: skip


def _in_preset(cfg: dict, key: str) -> bool:
    node = (cfg.get("presets") or {}).get(cfg["preset"]) or {}
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def paper_backbones(cfg: dict) -> bool:
    return str(cfg["rgb_backbone"]).startswith("timm:") and str(cfg["point_backbone"]).startswith("pointmae")


def paper_protocol(cfg: dict, explicit: frozenset[str]) -> dict:
    """--preset paper; and with the paper's extractors named (timm: + pointmae), the paper's fusion weights and
    bank settings in every key the user did not set (the defaults' score_norm train is for other extractors)."""
    from mlkit.core.config import apply_preset

    if not cfg.get("preset") and paper_backbones(cfg):
        paper = cfg.get("presets", {}).get("paper", {})
        for key in _PAPER_KEYS:
            if key not in explicit:
                head, tail = key.split(".")
                cfg[head][tail] = paper[head][tail]
        return cfg
    return apply_preset(cfg, explicit)


def stand_in_warnings(cfg: dict) -> list[str]:
    """Paper-only settings combined with stand-ins: said once, before any work."""
    out = []
    if cfg["fusion"]["score_norm"] == "lambda" and not paper_backbones(cfg):
        out.append("lambda fusion (1, 0.1, 1) was tuned for DINO ViT-B/8 + Point-MAE scores; with "
                   f"{cfg['rgb_backbone']} + {cfg['point_backbone']} use --score-norm train")  # fmt: skip
    if cfg.get("preset") == "paper" and not paper_backbones(cfg):
        out.append("--preset paper with stand-in extractors: give --rgb-backbone timm:vit_base_patch8_224@dino.pth "
                   "and --point-backbone pointmae@pointmae_pretrain.pth for the paper's numbers")  # fmt: skip
    for name in ("rgb_backbone", "point_backbone"):
        if str(cfg[name]).split(":")[0] in ("timm", "pointmae") and "@" not in str(cfg[name]):
            out.append(f"{name} {cfg[name]} has no weights file (random init: for code paths, not results)")
    return out


def _dir(path: Any) -> Path | None:
    return Path(path) if path and Path(path).is_dir() else None


class AnomalyTask(Task):
    one_shot = True
    resumable = False
    not_resumable_why = ("M3DM builds its memory banks in one pass, so there is no partial state to continue "
                         "(pass-A features are cached: with --set cache_dir=DIR a new run reuses them)")  # fmt: skip

    def finalize(self, cfg: dict, explicit: frozenset[str], mode: str) -> dict:
        if mode == "train":
            cfg = paper_protocol(cfg, explicit)
        if mode == "train" and not cfg.get("data"):  # the embedded default's lighter preset, never over a set key
            from mlkit.tasks.anomaly import EMBEDDED

            for key, value in EMBEDDED.items():
                if key not in explicit and not (cfg.get("preset") and _in_preset(cfg, key)):
                    head, tail = key.split(".")
                    cfg[head][tail] = value
        if str(cfg["modalities"]) not in MODALITIES:
            raise UsageError(f"unknown modalities '{cfg['modalities']}'", "modalities",
                             f"Use one of {', '.join(MODALITIES)}.")  # fmt: skip
        if cfg["memory"]["fs_background"] not in ("drop", "reference"):
            raise UsageError(f"unknown fs_background '{cfg['memory']['fs_background']}'", "memory.fs_background",
                             "Use drop or reference.")  # fmt: skip
        if cfg["threshold"]["mode"] not in ("max", "quantile"):
            raise UsageError(f"unknown threshold mode '{cfg['threshold']['mode']}'", "threshold.mode",
                             "Use max or quantile.")  # fmt: skip
        return cfg

    def _root(self, cfg: dict, ctx: Ctx, extra: dict | None = None) -> Path:
        """--data, else the checkpoint's data root (older runs kept it in <run>/data), else the cached `blob`."""
        from mlkit.tasks.anomaly.synth import embedded_root

        if cfg.get("data"):
            return Path(cfg["data"])
        return _dir((extra or {}).get("data_root")) or embedded_root(cfg, ctx.track, ctx.log)

    def load_data(self, cfg: dict, ctx: Ctx) -> tuple[Path, list[str]]:
        """The root and its categories, every file of every split checked (header, shape) before extraction."""
        for line in stand_in_warnings(cfg):
            ctx.warn(line)
        uff = cfg["uff"]["path"]
        if uff and cfg["modalities"] in ("fusion", "triple") and not Path(uff).expanduser().is_file():
            raise DataError("UFF file not found", str(uff), "Give best.pt of an mlkit anomaly fusion/triple run.")
        root = self._root(cfg, ctx)
        cats = D.pick_categories(str(cfg["category"]), D.categories(root))
        check_categories(root, cats, ("train", "validation", "test"), int(cfg["max_train"]), ctx.log)
        return root, cats

    def fit(self, cfg: dict, ctx: Ctx, data: tuple[Path, list[str]]) -> FitResult:
        t_start = time.perf_counter()
        (root, cats), mode = data, str(cfg["modalities"])
        ext = Extractor(cfg, ctx.device)
        states, uff, (extract_s, extract_cpu) = fit_categories(cfg, ctx, root, cats, ext)
        extra = {"categories": cats, "modalities": mode, "dims": [int(d) for d in ext.dims], "uff": uff is not None,
                 "data_root": str(root), "run_dir": str(ctx.run_dir)}  # fmt: skip
        sd = to_state_dict(states, uff)
        states, _ = from_state_dict(sd, extra, cfg)  # test the float16 banks the checkpoint holds (eval == train)
        metrics = test_categories(cfg, ctx, states, uff, root, cats, mode, ext, ctx.run_dir, ctx.run_dir)
        metrics["train/extract_s_per_sample"] = extract_s
        metrics["train/extract_cpu_s_per_sample"] = extract_cpu
        metrics["train/seconds"] = time.perf_counter() - t_start
        return FitResult(sd, extra, metrics)

    # ---------------------------------------------------------------- eval / predict
    def restore(self, cfg: dict, ctx: Ctx, ckpt: dict) -> dict[str, Any]:
        extra = ckpt["extra"]
        states, uff = from_state_dict(ckpt["state_dict"], extra, cfg)
        root = self._root(cfg, ctx, extra) if ctx.mode == "eval" else None
        ext = Extractor(cfg, ctx.device)
        run_dir = ctx.run_dir or _dir(extra.get("run_dir"))
        uff = uff.to(ctx.device) if uff is not None else None
        return {"extra": extra, "states": states, "uff": uff, "ext": ext, "root": root, "run_dir": run_dir}  # fmt: skip

    def evaluate(self, cfg: dict, ctx: Ctx, r: dict[str, Any]) -> dict[str, float]:
        cats = D.pick_categories(str(cfg["category"]), list(r["extra"]["categories"]))
        out = r["run_dir"] / "eval" if r["run_dir"] else None
        check_categories(r["root"], [c for c in cats if c in r["states"]], ("test",), log=ctx.log)
        return test_categories(cfg, ctx, r["states"], r["uff"], r["root"], cats, r["extra"]["modalities"], r["ext"],
                               out, r["run_dir"])  # fmt: skip

    def parse_record(self, cfg: dict, r: dict[str, Any], line: str, n: int) -> tuple[int, Any]:
        if not line.strip():
            raise DataError(
                "empty record", f"input line {n}", "Give 'rgb.png<TAB>xyz.tiff' or one rgb/xyz path."
            )
        try:
            rgb_p, xyz_p = D.pair_from_line(line)
            cat = category_of(rgb_p, list(r["states"]))
            if cat is None:
                raise DataError(f"cannot tell the category of {rgb_p}", None,
                                f"Put it under a folder named one of {list(r['states'])}.")  # fmt: skip
            x = D.load(D.Sample(rgb_p, xyz_p, None, "predict", 0), r["ext"].size)
        except DataError as exc:
            what = f"{exc.what} ({exc.where})" if exc.where else exc.what
            raise DataError(what, f"input line {n}", exc.fix) from None
        return n, (rgb_p, xyz_p, cat, x)

    def predict_batch_size(self, cfg: dict) -> int:
        return 8

    def predict_batch(self, cfg: dict, ctx: Ctx, r: dict[str, Any], records: list) -> list[dict]:
        mode, rows = r["extra"]["modalities"], []
        for n, rec in records:
            rgb_p, xyz_p, cat, x = rec
            st = r["states"][cat]
            score, amap = combine(st, score_sample(st, *r["ext"](x), mode, r["uff"], cfg, ctx.device), mode)
            heat, mask = save_prediction((r["run_dir"] or Path(".")) / "predictions",
                                         f"{n - 1:05d}_{rgb_p.parent.parent.name}_{rgb_p.stem}", x["rgb"], amap,
                                         st.pix_thr)  # fmt: skip
            rows.append({"id": str(rgb_p), "label": int(score > st.thr), "score": score, "threshold": st.thr,
                         "rgb": str(rgb_p), "xyz": str(xyz_p), "category": cat, "heatmap": str(heat),
                         "mask": str(mask)})  # fmt: skip
        return rows

    def expand_input(self, folder: Path) -> Iterator[str]:
        return D.pairs_under(folder)

    def sample_inputs(self, run_dir: Path) -> list[str]:
        """A few test pairs of the data the run used (its checkpoint's data_root)."""
        from mlkit.core import checkpoint

        root = Path(checkpoint.load(Path(run_dir) / "weights" / "best.pt", "anomaly")["extra"]["data_root"])
        return list(islice(D.pairs_under(root, "*/test/*/rgb/*.png"), 3))


TASK = AnomalyTask()
