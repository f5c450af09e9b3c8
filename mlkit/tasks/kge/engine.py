"""Training and evaluation loops shared by train, update, the benchmark and the slow test (spec §2.4, §2.6)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from mlkit.kernels.kge_rank import FilterIndex, filtered_ranks, metrics
from mlkit.tasks.kge.data import KG
from mlkit.tasks.kge.model import margin_loss


def head_prob(train: np.ndarray, n_rel: int, policy: str) -> np.ndarray:
    """P(corrupt the head) per relation: bern-global (the original: global tph/hpt), bern (per relation), unif."""
    if policy == "unif":
        return np.full(n_rel, 0.5)
    if policy == "bern-global":
        tph = len(train) / max(1, len(np.unique(train[:, 0])))
        hpt = len(train) / max(1, len(np.unique(train[:, 2])))
        return np.full(n_rel, tph / (tph + hpt))
    out = np.full(n_rel, 0.5)
    for r in range(n_rel):
        tr = train[train[:, 1] == r]
        if len(tr):
            tph = len(tr) / len(np.unique(tr[:, 0]))
            hpt = len(tr) / len(np.unique(tr[:, 2]))
            out[r] = tph / (tph + hpt)
    return out


class Negatives:
    """One corrupted triple per positive; resampled while the corruption is a training triple."""

    def __init__(self, train: np.ndarray, n_ent: int, n_rel: int, policy: str) -> None:
        self.n_ent, self.n_rel = n_ent, n_rel
        self.keys = np.unique(self._key(train))
        self.p_head = head_prob(train, n_rel, policy)

    def _key(self, t: np.ndarray) -> np.ndarray:
        return (t[:, 0] * self.n_rel + t[:, 1]) * self.n_ent + t[:, 2]

    def sample(self, pos: np.ndarray, rng: np.random.Generator, rounds: int = 20) -> np.ndarray:
        neg = pos.copy()
        head = rng.random(len(pos)) < self.p_head[pos[:, 1]]
        todo = np.arange(len(pos))
        for _ in range(rounds):
            e = rng.integers(0, self.n_ent, len(todo))
            neg[todo] = pos[todo]
            neg[todo, 0] = np.where(head[todo], e, pos[todo, 0])
            neg[todo, 2] = np.where(head[todo], pos[todo, 2], e)
            k = self._key(neg[todo])
            i = np.searchsorted(self.keys, k)
            bad = (i < len(self.keys)) & (self.keys[np.minimum(i, len(self.keys) - 1)] == k)
            todo = todo[bad]
            if len(todo) == 0:
                break
        return neg


def train_pass(model: nn.Module, opt: torch.optim.Optimizer, pos: np.ndarray, negs: Negatives, rng: np.random.Generator,
               batch: int, margin: float, device: str, grad_hook: Callable[[], None] | None = None,
               tick: Callable[[], bool] | None = None, net: nn.Module | None = None,
               shard: tuple[int, int] = (0, 1)) -> float:  # fmt: skip
    """One epoch over `pos` in shuffled batches; returns the summed loss per positive (of this rank's share).

    Under torchrun (`net` the DDP wrapper, `shard` = (rank, world)) every rank draws the same order and
    negatives and takes rows rank::world of each batch; the loss is scaled by world so that DDP's gradient mean
    equals the summed loss of the whole batch (the single-process update)."""
    net = model if net is None else net
    rank, world = shard
    model.train()
    order = rng.permutation(len(pos))
    neg_all = negs.sample(pos, rng)
    total = 0.0
    for a in range(0, len(pos), batch):
        idx = order[a : a + batch][rank::world]
        p = torch.as_tensor(pos[idx], device=device)
        n = torch.as_tensor(neg_all[idx], device=device)
        opt.zero_grad(set_to_none=False)
        loss = margin_loss(net, p, n, margin)
        (loss * world if world > 1 else loss).backward()
        if grad_hook is not None:
            grad_hook()
        opt.step()
        total += float(loss.detach())
        if tick is not None and tick():
            break
    if not np.isfinite(total):
        from mlkit.core.errors import RunFailure

        raise RunFailure("the loss is not finite", None, "Lower --lr or use --set optimizer=adam.")
    return total * world / max(1, len(pos))


@torch.no_grad()
def embeddings(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint embeddings o of every entity and relation, recomputed from the final parameters (one batched pass)."""
    model.eval()
    return model.all_entities(), model.all_relations()


def filter_index(kg: KG, which: str) -> FilterIndex | None:
    if which == "none":
        return None
    tr = kg.train if which == "train" else kg.all_triples()
    return FilterIndex(tr, kg.n_ent, kg.n_rel)


@torch.no_grad()
def side_ranks(E: torch.Tensor, R: torch.Tensor, triples: np.ndarray, index: FilterIndex | None, p: int,
               chunk: int = 256) -> dict[str, dict[str, np.ndarray]]:  # fmt: skip
    """Ranks for tail queries (h, r, ?) and head queries (?, r, t), all three tie policies."""
    tr = np.asarray(triples, np.int64).reshape(-1, 3)
    h, r, t = (torch.as_tensor(tr[:, i], device=E.device) for i in range(3))
    out = {}
    out["tail"] = filtered_ranks(E[h] + R[r], E, tr[:, 2], tr[:, 0], tr[:, 1], "tail", index, p, chunk)
    out["head"] = filtered_ranks(E[t] - R[r], E, tr[:, 0], tr[:, 2], tr[:, 1], "head", index, p, chunk)
    return out


def evaluate(model: nn.Module, kg: KG, triples: np.ndarray, split: str, ties: str = "realistic",
             filt: str = "all", chunk: int = 256, raw: bool = True, region: np.ndarray | None = None
             ) -> dict[str, float]:  # fmt: skip
    """Filtered (and raw) MRR, MR, Hits@1/3/10, both directions averaged; `region` (bool per triple) adds the
    `changed_` metrics over that subset."""
    t0 = time.perf_counter()
    E, R = embeddings(model)
    out: dict[str, float] = {}
    for name, which in (("", filt), ("raw_", "none")) if raw and filt != "none" else (("", filt),):
        rk = side_ranks(E, R, triples, filter_index(kg, which), model.norm, chunk)
        both = np.concatenate([rk["head"][ties], rk["tail"][ties]])
        out.update({f"{split}/{name}{k}": v for k, v in metrics(both).items()})
        if name == "":
            out[f"{split}/head_mrr"] = metrics(rk["head"][ties])["mrr"]
            out[f"{split}/tail_mrr"] = metrics(rk["tail"][ties])["mrr"]
            if region is not None:
                sub = np.concatenate([rk["head"][ties][region], rk["tail"][ties][region]])
                out.update(
                    {f"{split}/changed_{k}": v for k, v in metrics(sub).items() if k in ("mrr", "hits@10")}
                )
                out[f"{split}/changed_triples"] = float(region.sum())
    n = 2 * len(triples)
    out[f"{split}/queries_per_s"] = n / max(1e-9, time.perf_counter() - t0)
    return out
