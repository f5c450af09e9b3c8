"""kge: model units of spec §7 (Â, gate limit, frozen tensors, the paper's toy example) and CLI runs on fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mlkit.cli import main
from mlkit.tasks.kge import context as C
from mlkit.tasks.kge import data as D
from mlkit.tasks.kge import online
from mlkit.tasks.kge.model import DKGE, build

M = {"dim": 8, "context": 4, "norm": 2, "mask_pads": False}


def _toy() -> tuple[D.KG, D.KG]:
    """The paper's toy update (lienwc/DKGE issue #3): add (e7, r7, e6) and (e6, r5, e3)."""
    base = [("e1", "r1", "e2"), ("e2", "r2", "e3"), ("e3", "r3", "e4"), ("e4", "r4", "e5"), ("e5", "r1", "e6"),
            ("e1", "r5", "e4"), ("e2", "r3", "e5")]  # fmt: skip
    old = D.from_named({"train": base})
    new = D.from_named({"train": [*base, ("e7", "r7", "e6"), ("e6", "r5", "e3")]})
    return old, new


def test_adjacency_of_a_hand_made_graph():
    # edges 0-1, 1-2, 2-3, 1-3: N(1) = {0, 2, 3}, and 2-3 is the one neighbour-neighbour edge
    tr = np.array([[0, 0, 1], [1, 0, 2], [2, 0, 3], [1, 0, 3]])
    cx = C.build(tr, 4, 1, L=3)
    slots = cx.ent_ctx[1].tolist()  # neighbours of 1 by degree desc, ties by id: 2, 3 (deg 2), then 0 (deg 1)
    assert slots == [2, 3, 0]
    A = np.eye(4)
    A[0, 1:] = A[1:, 0] = 1
    A[1, 2] = A[2, 1] = 1  # 2-3 are neighbours
    np.testing.assert_allclose(cx.ent_adj[1], C.normalised_reference(A), rtol=1e-6)
    np.testing.assert_allclose(cx.ent_adj[1], cx.ent_adj[1].T, rtol=1e-6)
    pad = cx.ent_ctx[0].tolist()  # entity 0 has one neighbour: two PAD slots stay in A (the original)
    assert pad == [1, 4, 4]
    B = np.eye(4)
    B[0, 1:] = B[1:, 0] = 1
    np.testing.assert_allclose(cx.ent_adj[0], C.normalised_reference(B), rtol=1e-6)


def test_relation_paths():
    tr = np.array([[0, 0, 2], [0, 1, 1], [1, 2, 2], [0, 3, 2]])  # r0: h0->t2 has paths (r3), (r1, r2)
    P = C.relation_paths(tr, 3, 4, L=5)
    paths = {tuple(x) for x in P[0].tolist() if x[0] != 4}
    assert paths == {(3, 4), (1, 2)}


def test_gate_to_infinity_gives_the_knowledge_embedding():
    old, _ = _toy()
    model = DKGE(old.n_ent, old.n_rel, 8, L=4)
    model.set_contexts(C.build(old.train, old.n_ent, old.n_rel, 4))
    with torch.no_grad():
        model.g_E.fill_(1e4)
        model.g_R.fill_(1e4)
        torch.testing.assert_close(model.all_entities(), model.ent_k)
        torch.testing.assert_close(model.all_relations(), model.rel_k)
        model.g_E.fill_(0.0)
        assert not torch.allclose(model.all_entities(), model.ent_k)


def test_toy_example_under_both_policies():
    old, new = _toy()
    e = {n: i for i, n in enumerate(new.entities)}
    r = {n: i for i, n in enumerate(new.relations)}
    sub = online.affected(old, new, "subgraph", 30)
    assert sub.aff_e[e["e3"]] and sub.aff_e[e["e6"]] and sub.aff_r[r["r5"]]
    assert sub.new_e[e["e7"]] and sub.new_r[r["r7"]]
    code = online.affected(old, new, "code", 30)
    assert code.aff_e[e["e6"]] and not code.aff_e[e["e3"]] and not code.aff_r[r["r5"]]
    assert code.aff_e.sum() < sub.aff_e.sum()
    assert len(code.t_aff) <= len(sub.t_aff)


def test_online_update_keeps_frozen_tensors_bit_identical():
    old, new = _toy()
    cfg = {"arch": "dkge", "model": {**M, "margin": 1.0, "adj": "full"}, "online": {"affected": "code", "epochs": 3},
           "epochs": 3, "neg": "unif", "batch_size": 4, "lr": 0.1, "optimizer": "sgd"}  # fmt: skip
    torch.manual_seed(0)
    m_old = build("dkge", old.n_ent, old.n_rel, M)
    m_new = build("dkge", new.n_ent, new.n_rel, M)
    region, _ = online.update(m_old, m_new, old, new, cfg, "cpu")
    assert len(region.t_aff) > 0
    ei = {n: i for i, n in enumerate(old.entities)}
    ri = {n: i for i, n in enumerate(old.relations)}
    moved = 0
    for name in ("W_E", "W_R", "v_E", "v_R", "g_E", "g_R"):
        assert torch.equal(getattr(m_old, name), getattr(m_new, name)), name
    for j, n in enumerate(new.entities):
        if n in ei:
            assert torch.equal(m_new.ent_c[j], m_old.ent_c[ei[n]]), n  # c of existing elements never trains
            same = torch.equal(m_new.ent_k[j], m_old.ent_k[ei[n]])
            assert same == (not region.aff_e[j]), n
            moved += not same
    for j, n in enumerate(new.relations):
        if n in ri:
            assert torch.equal(m_new.rel_c[j], m_old.rel_c[ri[n]])
            assert torch.equal(m_new.rel_k[j], m_old.rel_k[ri[n]]) == (not region.aff_r[j])
    assert moved >= 1


def _fixture(root: Path, layout: str = "openke") -> Path:
    """A small dynamic KG, written in the real layout (OpenKE ids or TSV names) per snapshot."""
    D.write_dynamic(root / "dyn", 60, 4, 500, seed=3)
    if layout == "tsv":
        for s in ("snapshot1", "snapshot2"):
            D.write_tsv(D.load_kg(root / "dyn" / s), root / "tsv" / s)
        return root / "tsv"
    return root / "dyn"


def test_openke_and_tsv_give_identical_triples(tmp_path):
    kg = D.load_kg(_fixture(tmp_path), snapshot=1)
    D.write_tsv(kg, tmp_path / "t")
    tsv = D.load_kg(tmp_path / "t")
    for s in D.SPLITS:
        assert kg.named(s) == tsv.named(s) and len(getattr(kg, s)) == len(getattr(tsv, s))
    assert D.detect(tmp_path / "t") == "tsv" and D.detect(tmp_path / "dyn" / "snapshot1") == "openke"


def test_delta_files_apply_by_name(tmp_path):
    old, new = _toy()
    d = tmp_path / "delta"
    d.mkdir()
    (d / "added.txt").write_text("e7\tr7\te6\ne6\tr5\te3\n")
    (d / "deleted.txt").write_text("e1\tr1\te2\n")
    got = D.apply_delta(old, d)
    assert got.named("train") == (new.named("train") - {("e1", "r1", "e2")})


def _run(args, capsys):
    rc = main(args)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.mark.parametrize("layout", ["openke", "tsv"])
def test_train_eval_predict_update_export(tmp_path, runs_dir, capsys, layout):
    data = _fixture(tmp_path, layout)
    common = ["--project", str(runs_dir), "--device", "cpu", "--quiet"]
    fast = ["--set", "model.dim=16", "--set", "model.context=8", "--batch-size", "100"]
    rc, out, err = _run(
        ["kge", "train", *common, "--data", str(data), "--epochs", "2", "--json", *fast], capsys
    )
    assert rc == 0, err[-2000:]
    res = json.loads(out)
    assert 0 < res["metrics"]["test/mrr"] <= 1 and "test/raw_mrr" in res["metrics"]
    model = str(Path(res["run_dir"]) / "weights" / "best.pt")
    rc, out, err = _run(["kge", "eval", *common, "--model", model, "--json", "--ties", "optimistic"], capsys)
    assert rc == 0, err[-2000:]
    assert (
        json.loads(out)["metrics"]["test/mrr"] >= res["metrics"]["test/mrr"] - 1e-9
    )  # optimistic >= realistic
    kg = D.load_kg(data, snapshot=1)
    q = tmp_path / "q.txt"
    q.write_text(f"{kg.entities[0]}\t{kg.relations[0]}\t?\n?\t{kg.relations[1]}\t{kg.entities[2]}\n")
    rc, out, err = _run(
        ["kge", "predict", *common, "--model", model, "--input", str(q), "--top-k", "5"], capsys
    )
    assert rc == 0, err[-2000:]
    rows = [json.loads(x) for x in out.splitlines()]
    assert [r["direction"] for r in rows] == ["tail", "head"] and all(len(r["entities"]) == 5 for r in rows)
    assert all(r["distances"] == sorted(r["distances"]) for r in rows)
    rc, out, err = _run(["kge", "update", *common, "--model", model, "--to", str(data / "snapshot2"),
                         "--set", "online.epochs=1"], capsys)  # fmt: skip
    assert rc == 0, err[-2000:]
    up = json.loads(out)
    assert up["metrics"]["update/t_aff"] > 0 and up["metrics"]["update/new_entities"] >= 1
    rc, out, err = _run(["kge", "eval", *common, "--model", up["run_dir"], "--json"], capsys)
    assert rc == 0, err[-2000:]
    rc, out, err = _run(
        ["kge", "export", *common, "--model", up["run_dir"], "--out", str(tmp_path / "emb")], capsys
    )
    assert rc == 0, err[-2000:]
    E = np.load(tmp_path / "emb" / "entity_embeddings.npy")
    new = D.load_kg(data, snapshot=2)
    assert E.shape == (new.n_ent, 16) and np.isfinite(E).all()
    assert len((tmp_path / "emb" / "entity_embeddings.tsv").read_text().splitlines()) == new.n_ent


def test_update_from_delta_files_and_transe(tmp_path, runs_dir, capsys):
    data = _fixture(tmp_path)
    common = ["--project", str(runs_dir), "--device", "cpu", "--quiet"]
    rc, out, err = _run(["kge", "train", *common, "--data", str(data), "--arch", "transe", "--epochs", "2",
                         "--json", "--set", "model.dim=8"], capsys)  # fmt: skip
    assert rc == 0, err[-2000:]
    model = json.loads(out)["run_dir"]
    kg = D.load_kg(data, snapshot=1)
    delta = tmp_path / "delta"
    delta.mkdir()
    (delta / "added.txt").write_text(f"{kg.entities[0]}\tnewrel\tbrand_new\n")
    (delta / "deleted.txt").write_text("\t".join((kg.entities[kg.train[0, 0]], kg.relations[kg.train[0, 1]],
                                                  kg.entities[kg.train[0, 2]])) + "\n")  # fmt: skip
    rc, out, err = _run(
        ["kge", "update", *common, "--model", model, "--to", str(delta), "--affected", "code"], capsys
    )
    assert rc == 0, err[-2000:]
    m = json.loads(out)["metrics"]
    assert m["update/new_entities"] == 1 and m["update/new_relations"] == 1 and m["update/t_aff"] >= 1
    rc, out, err = _run(["kge", "eval", *common, "--model", json.loads(out)["run_dir"], "--json"], capsys)
    assert rc == 0, err[-2000:]
