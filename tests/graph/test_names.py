"""Folders holding several datasets (Planetoid ind.<name>.*, gbp <name>.txt, TU <NAME>_A.txt): one rule for all
(mlkit.core.data.pick_dataset): case-insensitive names, a list of what the folder holds on a miss, exit 3 for an
ambiguous folder without a name, and the only dataset of a folder taken without one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from graph_fixtures import planetoid_set

from mlkit.core.errors import DataError
from mlkit.graph.io import detect_layout, load_graph
from mlkit.graph.names import dataset_names
from mlkit.graph.tu import load_tu, write_tu


def gbp_set(root: Path, name: str, classes: int, n: int = 40) -> None:
    """A small dataset in the original GBP layout (<name>.txt, <name>_feat.npy, <name>_labels.npz)."""
    root.mkdir(parents=True, exist_ok=True)
    ring = [(i, (i + 1) % n) for i in range(n)]
    (root / f"{name}.txt").write_text(f"{n}\n" + "".join(f"{u} {v}\n{v} {u}\n" for u, v in ring))
    labels = np.arange(n) % classes
    np.save(root / f"{name}_feat.npy", np.eye(classes, dtype=np.float32)[labels])
    np.savez(root / f"{name}_labels.npz", labels=labels, idx_train=np.arange(0, 20), idx_val=np.arange(20, 30),
             idx_test=np.arange(30, n))  # fmt: skip


def tu_set(root: Path, name: str, graphs: int) -> None:
    from mlkit.tasks.framelet import synth as S

    gs, ys = S.two_class_graphs(count=graphs, min_nodes=6, max_nodes=9, seed=graphs)
    write_tu(root, name, gs, ys)


@pytest.mark.parametrize("layout", ["planetoid", "gbp"])
def test_two_datasets_in_one_folder(tmp_path, layout):
    if layout == "planetoid":
        planetoid_set(tmp_path, "cora", classes=3)
        planetoid_set(tmp_path, "citeseer", classes=4, seed=1)
    else:
        gbp_set(tmp_path, "cora", classes=3)
        gbp_set(tmp_path, "citeseer", classes=4)
    assert dataset_names(tmp_path, layout) == ["citeseer", "cora"]
    assert detect_layout(tmp_path) == (layout, None)  # several: no silent first pick
    assert load_graph(tmp_path, "auto", "CiteSeer").num_classes == 4  # case-insensitive
    assert load_graph(tmp_path, layout, "cora").num_classes == 3
    with pytest.raises(DataError) as info:
        load_graph(tmp_path)
    assert "2 datasets: citeseer, cora" in info.value.line() and "--dataset" in info.value.line()
    with pytest.raises(DataError) as info:
        load_graph(tmp_path, "auto", "pubmed")
    line = info.value.line()
    assert "no dataset 'pubmed'" in line and "holds: citeseer, cora" in line and "ind." not in line


def test_single_dataset_folder_needs_no_name_and_an_incomplete_set_lists_its_missing_files(tmp_path):
    planetoid_set(tmp_path, "cora", classes=3)
    assert detect_layout(tmp_path) == ("planetoid", "cora")
    assert load_graph(tmp_path).num_nodes == 60
    (tmp_path / "ind.cora.ty").unlink()
    with pytest.raises(DataError, match=r"missing for 'cora': ind\.cora\.ty"):
        load_graph(tmp_path)
    with pytest.raises(DataError, match="no planetoid dataset here"):
        load_graph(tmp_path / "..", "planetoid")


def test_tu_folder_with_two_sets(tmp_path):
    tu_set(tmp_path, "MUTAG", 6)
    tu_set(tmp_path, "PROTEINS", 8)
    assert dataset_names(tmp_path, "tu") == ["MUTAG", "PROTEINS"]
    assert len(load_tu(tmp_path, "proteins").graphs) == 8
    with pytest.raises(DataError) as info:
        load_tu(tmp_path)
    assert "2 datasets: MUTAG, PROTEINS" in info.value.line() and "--dataset" in info.value.line()
    with pytest.raises(DataError) as info:
        load_tu(tmp_path, "enzymes")
    assert "holds: MUTAG, PROTEINS" in info.value.line()


def test_loaded_graphs_say_which_files_were_read(tmp_path):
    from mlkit.graph.io import save_generic

    planetoid_set(tmp_path / "pl", "cora", classes=3)
    g = load_graph(tmp_path / "pl")
    assert g.source.startswith("planetoid layout: ind.cora.x, ind.cora.y") and "ind.cora.test.index" in g.source
    edges = np.stack([np.arange(9), np.arange(1, 10)], 1)
    save_generic(tmp_path / "gen", edges, 10, np.ones((10, 2), np.float32), np.zeros(10, np.int64))
    src = load_graph(tmp_path / "gen").source
    assert "indptr.npy, indices.npy, feats.npy, labels.npy, meta.json" in src and "edges.npy" not in src
