"""Folders that hold several datasets (gbp `<name>.txt` sets, Planetoid `ind.<name>.*` sets, TU `<NAME>_A.txt`
sets): which names a folder holds, and the one rule (mlkit.core.data.pick_dataset) that picks one: case-insensitive `--dataset`, the only one
when there is no --dataset, otherwise exit 3 listing what the folder holds."""

from __future__ import annotations

import re
from pathlib import Path

from mlkit.core.errors import DataError

_PLANETOID_FILE = re.compile(r"ind\.([^.]+)\.(?:x|y|allx|ally|tx|ty|graph|test\.index)$")
NAMED = {  # layouts that may hold several datasets in one folder, and what marks one
    "gbp": "<name>.txt with <name>_labels.npz",
    "planetoid": "ind.<name>.{x,y,allx,ally,tx,ty,graph,test.index}",
    "tu": "<NAME>_A.txt, <NAME>_graph_indicator.txt, <NAME>_graph_labels.txt (or <NAME>_graph_attributes.txt)",
}
_TU_FILES = ("_A.txt", "_graph_indicator.txt")


def dataset_names(path: str | Path, layout: str) -> list[str]:
    """Names of the datasets a multi-dataset layout holds in a folder (gbp: `<name>.txt` + `<name>_labels.npz`;
    planetoid: any `ind.<name>.*` file; tu: `<NAME>_A.txt` or `<NAME>_graph_indicator.txt`). An incomplete
    Planetoid or TU set is named, so that loading it lists its missing files."""
    p = Path(path)
    files = {f.name for f in p.iterdir()} if p.is_dir() else set()
    if layout == "gbp":
        stems = (f[: -len("_labels.npz")] for f in files if f.endswith("_labels.npz"))
        return sorted(s for s in stems if f"{s}.txt" in files)
    if layout == "planetoid":
        return sorted({m.group(1) for f in files if (m := _PLANETOID_FILE.match(f))})
    if layout == "tu":
        return sorted({f[: -len(end)] for f in files for end in _TU_FILES if f.endswith(end) and len(f) > len(end)})
    return []


def pick_name(path: str | Path, layout: str, requested: str | None) -> str:
    """The dataset of a gbp/planetoid/tu folder to load: `requested` (case-insensitive) among the names the folder
    holds, or its only one; a miss or an ambiguous folder is a DataError (exit 3) listing the names."""
    from mlkit.core.data import pick_dataset

    names = dataset_names(path, layout)
    if not names:
        raise DataError(f"no {layout} dataset here", str(path), f"Expected layout: {NAMED[layout]}.")
    return pick_dataset(names, requested, path)


def files_read(path: str | Path, layout: str, name: str | None) -> list[str]:
    """The files of a folder that loading `layout` (dataset `name`) reads, in the loader's order of preference."""
    p = Path(path)
    have = {f.name for f in p.iterdir()} if p.is_dir() else set()
    if layout == "generic":
        adjacency = next((group for group in (("indptr.npy", "indices.npy"), ("adj.npz",), ("edges.npy",),
                                              ("edges.txt",)) if all(f in have for f in group)), ())  # fmt: skip
        feats = next((f for f in ("feats.npy", "feats.npz", "features.npy") if f in have), None)
        extra = [f for f in ("labels.npy", "split.npz", "meta.json") if f in have]
        return [*adjacency, *([feats] if feats else []), *extra]
    if layout == "gbp":
        return [f for f in (f"{name}.txt", f"{name}_feat.npy", f"{name}_labels.npz") if f in have]
    if layout == "planetoid":
        parts = ("x", "y", "allx", "ally", "tx", "ty", "graph", "test.index")
        return [f"ind.{name}.{s}" for s in parts if f"ind.{name}.{s}" in have]
    if layout == "saint":
        return [f for f in ("adj_full.npz", "feats.npy", "class_map.json", "role.json") if f in have]
    return sorted(f for f in have if f.startswith("friendster") and f.endswith((".npy", ".npz")))
