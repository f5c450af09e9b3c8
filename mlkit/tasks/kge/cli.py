"""Extra verbs of `mlkit kge`: `synth` (write the generated dynamic KG), `update` (DKGE's online step, spec §2.5)
and `export` (embeddings as .npy and TSV). `update` and `export` are config verbs (merged, finalized config).

Light module: numpy, torch and the model are imported inside the command bodies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def synth(
    out: Path = typer.Option(
        ..., "--out", help="Folder to write snapshot1/ .. snapshotN/ into (OpenKE layout)."
    ),
    entities: int = typer.Option(300, "--entities", help="Entities of snapshot 1."),
    relations: int = typer.Option(12, "--relations", help="Relations of snapshot 1."),
    triples: int = typer.Option(3000, "--triples", help="Training triples of snapshot 1."),
    snapshots: int = typer.Option(2, "--snapshots", help="Snapshots."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
) -> None:
    """Write a seeded dynamic KG (cumulative snapshots, ids re-assigned per snapshot); prints the folder."""
    import sys

    from mlkit.core.errors import UsageError
    from mlkit.tasks.kge.data import write_dynamic

    if entities < 10 or relations < 1 or triples < 20 or snapshots < 1:
        raise UsageError("need --entities >= 10, --relations >= 1, --triples >= 20, --snapshots >= 1")
    write_dynamic(out, entities, relations, triples, seed, snapshots)
    sys.stdout.write(f"{out}\n")


def _model(kw: dict[str, Any], ctx: Any) -> tuple[Path, dict]:
    from mlkit.core.checkpoint import load
    from mlkit.core.rundir import resolve_model

    path = resolve_model(kw.get("t_model"), Path(kw.get("project") or "runs"), "kge", ctx.log)
    return path, load(path, "kge")


def _restore_model(ck: dict, kg: Any, device: str) -> Any:
    from mlkit.tasks.kge.model import build
    from mlkit.tasks.kge.task import contexts

    cfg = ck["config"]
    model = build(cfg["arch"], len(ck["extra"]["entities"]), len(ck["extra"]["relations"]), cfg["model"])
    model.load_state_dict(ck["state_dict"])
    cx = contexts(cfg, kg) if kg is not None else None
    if cx is not None:
        model.set_contexts(cx)
    return model.to(device)


def _kg(path: str | None, fmt: str, base: Any = None) -> Any:
    from mlkit.core.errors import DataError
    from mlkit.tasks.kge import data as D

    p = Path(path)
    if base is not None and p.is_dir() and ((p / "added.txt").is_file() or (p / "deleted.txt").is_file()) \
            and not any((p / f).is_file() for f in ("train2id.txt", "train.txt")):  # fmt: skip
        return D.apply_delta(base, p)
    if not p.exists():
        raise DataError(f"snapshot folder not found: {p}", None, f"Expected {D.LAYOUT}.")
    return D.load_kg(p, fmt)


def update(cfg: dict[str, Any], ctx: Any, kw: dict[str, Any]) -> None:
    """Online update (DKGE §2.5): align by name, train only the affected region; writes a run, prints one JSON line."""
    import numpy as np

    from mlkit.core import checkpoint
    from mlkit.core.console import emit
    from mlkit.core.errors import DataError, UsageError
    from mlkit.core.rundir import create_run_dir, write_config, write_metrics
    from mlkit.tasks.kge import data as D
    from mlkit.tasks.kge import engine as G
    from mlkit.tasks.kge import online
    from mlkit.tasks.kge.model import build
    from mlkit.tasks.kge.task import data_root

    if not kw.get("t_to"):
        raise UsageError(
            "update needs --to (the new snapshot folder, or a folder with added.txt/deleted.txt)"
        )
    path, ck = _model(kw, ctx)
    mcfg = ck["config"]
    src = kw.get("t_from") or str(D.snapshot_dir(data_root(mcfg), mcfg.get("snapshot")))
    old = _kg(src, mcfg["format"])
    if old.entities != ck["extra"]["entities"] or old.relations != ck["extra"]["relations"]:
        raise DataError(
            "--from is not the snapshot the model was trained on", src, "Pass the model's snapshot."
        )
    to = kw["t_to"]
    if not Path(to).exists() and cfg.get("data"):
        to = str(D.snapshot_dir(Path(cfg["data"]), to))
    elif not Path(to).exists() and not kw.get("t_from"):
        to = str(D.snapshot_dir(data_root(mcfg), to))
    new = _kg(to, cfg["format"], base=old)
    run_cfg = {
        **mcfg,
        "online": cfg["online"],
        "neg": cfg["neg"],
        "eval": cfg["eval"],
        "device": cfg["device"],
    }
    run_dir = create_run_dir(Path(kw.get("project") or "runs"), "kge", kw.get("t_name") or "update", False)
    if not (Path(to) / "train2id.txt").is_file() and not (Path(to) / "train.txt").is_file():
        to = str(D.write_openke(new, run_dir / "snapshot"))  # a delta: the applied snapshot lives in the run
    run_cfg.update({"data": str(Path(to).resolve()), "snapshot": None, "format": "auto"})
    old_model = _restore_model(ck, None, "cpu")
    new_model = build(mcfg["arch"], new.n_ent, new.n_rel, mcfg["model"]).to(ctx.device)
    region, secs = online.update(
        old_model, new_model, old, new, run_cfg, ctx.device, int(cfg["seed"]), ctx.log
    )
    touched = region.aff_e | region.new_e
    test = new.test
    in_region = touched[test[:, 0]] | touched[test[:, 2]] | region.new_r[test[:, 1]]
    e = run_cfg["eval"]
    metrics = G.evaluate(new_model, new, test, "test", e["ties"], e["filter"], int(e["chunk"]), region=in_region) \
        if len(test) else {}  # fmt: skip
    metrics.update({f"update/{k}": float(v) for k, v in {**region.summary(), **secs}.items()})
    metrics["update/t_aff_fraction"] = len(region.t_aff) / max(1, len(new.train))
    ckpt = checkpoint.make("kge", run_cfg, new_model.state_dict(), epoch=int(run_cfg["epochs"]) - 1, metrics=metrics,
                           extra={"entities": list(new.entities), "relations": list(new.relations),
                                  "updated_from": str(path)})  # fmt: skip
    checkpoint.save(ckpt, run_dir / "weights" / "best.pt")
    checkpoint.save(ckpt, run_dir / "weights" / "last.pt")
    write_config(run_dir, run_cfg, "kge")
    write_metrics(run_dir, metrics)
    np.save(run_dir / "t_aff.npy", region.t_aff)
    ctx.log(f"kge update: {region.summary()} in {secs['seconds']:.2f} s -> {run_dir}")
    emit({"schema_version": 1, "task": "kge", "mode": "update", "run_dir": str(run_dir), "metrics": metrics})


def export(cfg: dict[str, Any], ctx: Any, kw: dict[str, Any]) -> None:
    """Write joint embeddings o (and knowledge embeddings k) as .npy plus names + vectors as TSV; prints JSON."""
    import numpy as np

    from mlkit.core.console import emit
    from mlkit.core.errors import UsageError
    from mlkit.tasks.kge import engine as G
    from mlkit.tasks.kge.task import load

    if not kw.get("t_out"):
        raise UsageError("export needs --out FOLDER")
    path, ck = _model(kw, ctx)
    mcfg = ck["config"]
    kg = load(mcfg) if mcfg["arch"] == "dkge" else None
    model = _restore_model(ck, kg, ctx.device)
    E, R = G.embeddings(model)
    out = Path(kw["t_out"])
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for kind, names, o, k in (("entity", ck["extra"]["entities"], E, model.ent_k),
                              ("relation", ck["extra"]["relations"], R, model.rel_k)):  # fmt: skip
        o = o.detach().cpu().numpy().astype(np.float32)
        np.save(out / f"{kind}_embeddings.npy", o)
        np.save(out / f"{kind}_knowledge.npy", k.detach().cpu().numpy().astype(np.float32))
        with open(out / f"{kind}_embeddings.tsv", "w", encoding="utf-8") as f:
            for n, v in zip(names, o):
                f.write(n + "\t" + "\t".join(f"{x:.6g}" for x in v) + "\n")
        files[kind] = str(out / f"{kind}_embeddings.npy")
    emit({"schema_version": 1, "task": "kge", "mode": "export", "model": str(path), "files": files})
