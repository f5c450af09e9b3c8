"""kge data (spec §3): OpenKE id files (h t r), labelled TSV (h r t), snapshot folders, delta files, the generator.

A `KG` holds names and int64 triples in (h, r, t) order for train/valid/test. Snapshots are aligned by name.
Every malformed record is a DataError (exit 3) naming the file and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlkit.core.errors import DataError

SPLITS = ("train", "valid", "test")
OPENKE_HINT = ("OpenKE layout: entity2id.txt, relation2id.txt ('count' line, then 'name<TAB>id'), "
               "train2id.txt/valid2id.txt/test2id.txt ('count' line, then 'h t r' ids)")  # fmt: skip
TSV_HINT = "TSV layout: train.txt, valid.txt, test.txt with one 'head<TAB>relation<TAB>tail' per line"
LAYOUT = (f"a static KG folder ({OPENKE_HINT}; or {TSV_HINT}), or a folder of snapshot1/ .. snapshotN/ each "
          "holding one static KG (cumulative states, aligned by name)")  # fmt: skip


@dataclass
class KG:
    """A static knowledge graph: names and (h, r, t) int64 triples per split."""

    entities: list[str]
    relations: list[str]
    train: np.ndarray
    valid: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))
    test: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))
    source: str = ""

    @property
    def n_ent(self) -> int:
        return len(self.entities)

    @property
    def n_rel(self) -> int:
        return len(self.relations)

    def all_triples(self) -> np.ndarray:
        return np.concatenate([self.train, self.valid, self.test]).astype(np.int64).reshape(-1, 3)

    def named(self, split: str) -> set[tuple[str, str, str]]:
        arr = getattr(self, split)
        e, r = self.entities, self.relations
        return {(e[h], r[q], e[t]) for h, q, t in arr.tolist()}


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"not valid UTF-8 at byte {exc.start}", str(path), "Convert the file to UTF-8."
        ) from None
    return text.removeprefix("\ufeff").splitlines()


def _count(lines: list[str], path: Path) -> int:
    if not lines or not lines[0].strip().isdigit():
        raise DataError("the first line must be the record count", f"{path} line 1", OPENKE_HINT)
    n = int(lines[0].strip())
    body = [ln for ln in lines[1:] if ln.strip()]
    if len(body) != n:
        raise DataError(f"the count line says {n} records, the file has {len(body)}", f"{path} line 1",
                        "Fix the count on the first line or restore the missing records.")  # fmt: skip
    return n


def read_id_map(path: Path) -> list[str]:
    """entity2id.txt / relation2id.txt: count line, then 'name<TAB>id'; ids must be exactly 0..count-1."""
    if not path.is_file():
        raise DataError(f"{path.name} not found", str(path.parent), f"Expected {OPENKE_HINT}.")
    lines = _lines(path)
    n = _count(lines, path)
    names: list[str | None] = [None] * n
    for no, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        parts = line.rstrip("\n\r").split("\t") if "\t" in line else line.split()
        if len(parts) != 2 or not parts[1].strip().lstrip("-").isdigit():
            raise DataError(
                f"expected 'name<TAB>id', got {len(parts)} column(s)", f"{path} line {no}", OPENKE_HINT
            )
        i = int(parts[1])
        if not 0 <= i < n:
            raise DataError(
                f"id {i} is beyond the count {n}", f"{path} line {no}", "Ids run from 0 to count-1."
            )
        if names[i] is not None:
            raise DataError(f"id {i} is given twice", f"{path} line {no}", "Each id appears once.")
        names[i] = parts[0].strip()
    return [str(x) for x in names]


def read_id_triples(path: Path, n_ent: int, n_rel: int, rel_file: str) -> np.ndarray:
    """train2id.txt etc.: count line, then 'h t r' ids (OpenKE order) -> int64 [n, 3] in (h, r, t) order."""
    lines = _lines(path)
    n = _count(lines, path)
    out = np.zeros((n, 3), np.int64)
    k = 0
    for no, line in enumerate(lines[1:], 2):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise DataError(f"expected 3 integer columns 'h t r', got {len(parts)} column(s)",
                            f"{path} line {no}", OPENKE_HINT)  # fmt: skip
        h, t, r = (int(p) for p in parts)
        if h >= n_ent or t >= n_ent:
            raise DataError(f"entity id {max(h, t)} is beyond the count {n_ent} of entity2id.txt",
                            f"{path} line {no}", "Every id must be listed in entity2id.txt.")  # fmt: skip
        if r >= n_rel:
            raise DataError(f"relation id {r} is missing from {rel_file} (count {n_rel})", f"{path} line {no}",
                            "Every relation id must be listed in relation2id.txt.")  # fmt: skip
        out[k] = (h, r, t)
        k += 1
    return out


def load_openke(root: Path) -> KG:
    ents = read_id_map(root / "entity2id.txt")
    rels = read_id_map(root / "relation2id.txt")
    splits = {}
    for s in SPLITS:
        p = root / f"{s}2id.txt"
        if s == "train" or p.is_file():
            if not p.is_file():
                raise DataError("train2id.txt not found", str(root), f"Expected {OPENKE_HINT}.")
            splits[s] = read_id_triples(p, len(ents), len(rels), str(root / "relation2id.txt"))
    return KG(ents, rels, source=str(root), **splits)


def read_tsv(path: Path) -> list[tuple[str, str, str]]:
    """One 'head<TAB>relation<TAB>tail' per line (whitespace when a line has no tab)."""
    out = []
    for no, line in enumerate(_lines(path), 1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split("\t")] if "\t" in line else line.split()
        if len(parts) != 3 or not all(parts):
            raise DataError(f"expected 3 columns 'head<TAB>relation<TAB>tail', got {len(parts)}",
                            f"{path} line {no}", TSV_HINT)  # fmt: skip
        out.append((parts[0], parts[1], parts[2]))
    return out


def from_named(
    splits: dict[str, list[tuple[str, str, str]]],
    source: str = "",
    entities: list[str] | None = None,
    relations: list[str] | None = None,
) -> KG:
    """Ids in order of first appearance over train, valid, test (after any given name lists)."""
    ents = {n: i for i, n in enumerate(entities or [])}
    rels = {n: i for i, n in enumerate(relations or [])}
    arrays = {}
    for s in SPLITS:
        rows = []
        for h, r, t in splits.get(s, []):
            rows.append(
                (ents.setdefault(h, len(ents)), rels.setdefault(r, len(rels)), ents.setdefault(t, len(ents)))
            )
        arrays[s] = np.asarray(rows, np.int64).reshape(-1, 3)
    return KG(list(ents), list(rels), source=source, **arrays)


def load_tsv(root: Path) -> KG:
    if not (root / "train.txt").is_file():
        raise DataError("train.txt not found", str(root), f"Expected {TSV_HINT}.")
    splits = {s: read_tsv(root / f"{s}.txt") for s in SPLITS if (root / f"{s}.txt").is_file()}
    return from_named(splits, str(root))


def detect(root: Path) -> str:
    if (root / "train2id.txt").is_file() or (root / "entity2id.txt").is_file():
        return "openke"
    if (root / "train.txt").is_file():
        return "tsv"
    raise DataError("no knowledge graph found", str(root), f"Expected {LAYOUT}.")


def snapshots(root: Path) -> list[Path]:
    """snapshot1/ .. snapshotN/ in numeric order ([] for a static KG folder)."""
    found = [
        (int(m.group(1)), p)
        for p in root.iterdir()
        if p.is_dir() and (m := re.fullmatch(r"snapshot(\d+)", p.name))
    ]
    return [p for _, p in sorted(found)]


def snapshot_dir(root: Path, snapshot: str | int | None) -> Path:
    """The static KG folder: root itself, or one snapshot of a dynamic folder (default: the first)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError("dataset folder not found", str(root), f"Expected {LAYOUT}.")
    snaps = snapshots(root)
    if snapshot in (None, ""):
        return snaps[0] if snaps else root
    s = str(snapshot)
    p = Path(s)
    if p.is_dir():
        return p
    name = s if s.startswith("snapshot") else f"snapshot{s}"
    if (root / name).is_dir():
        return root / name
    raise DataError(f"snapshot '{s}' not found", str(root),
                    f"This folder holds: {', '.join(x.name for x in snaps) or 'no snapshotN/ folders'}.")  # fmt: skip


def load_kg(root: str | Path, fmt: str = "auto", snapshot: str | int | None = None) -> KG:
    """Read one static KG (a snapshot of a dynamic folder when `snapshot` is given or the folder has snapshots)."""
    d = snapshot_dir(Path(root), snapshot)
    kind = detect(d) if fmt == "auto" else fmt
    kg = load_openke(d) if kind == "openke" else load_tsv(d)
    if len(kg.train) == 0:
        raise DataError("no training triples", str(d), "The train split must hold at least one triple.")
    return kg


def apply_delta(base: KG, folder: Path) -> KG:
    """Apply added.txt / deleted.txt (h r t TSV) to the base's train split, by name; new names get new ids."""
    e, r = base.entities, base.relations
    rows = [(e[h], r[q], e[t]) for h, q, t in base.train.tolist()]
    deleted = set(read_tsv(folder / "deleted.txt")) if (folder / "deleted.txt").is_file() else set()
    added = read_tsv(folder / "added.txt") if (folder / "added.txt").is_file() else []
    have = set(rows)
    rows = [x for x in rows if x not in deleted] + [x for x in added if x not in have]
    splits = {"train": rows, "valid": [(e[h], r[q], e[t]) for h, q, t in base.valid.tolist()],
              "test": [(e[h], r[q], e[t]) for h, q, t in base.test.tolist()]}  # fmt: skip
    used = {x for s in splits.values() for h, _, t in s for x in (h, t)}
    ents = [n for n in e if n in used]
    rels_used = {q for s in splits.values() for _, q, _ in s}
    return from_named(splits, str(folder), ents, [n for n in r if n in rels_used])


# ---------------------------------------------------------------- writers and the generator
def write_openke(kg: KG, root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for fname, names in (("entity2id.txt", kg.entities), ("relation2id.txt", kg.relations)):
        body = "".join(f"{n}\t{i}\n" for i, n in enumerate(names))
        (root / fname).write_text(f"{len(names)}\n{body}", encoding="utf-8")
    for s in SPLITS:
        arr = getattr(kg, s)
        body = "".join(f"{h} {t} {r}\n" for h, r, t in arr.tolist())
        (root / f"{s}2id.txt").write_text(f"{len(arr)}\n{body}", encoding="utf-8")
    return root


def write_tsv(kg: KG, root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for s in SPLITS:
        rows = [(kg.entities[h], kg.relations[r], kg.entities[t]) for h, r, t in getattr(kg, s).tolist()]
        (root / f"{s}.txt").write_text("".join(f"{h}\t{r}\t{t}\n" for h, r, t in rows), encoding="utf-8")
    return root


def generate(
    n_ent: int, n_rel: int, n_triples: int, seed: int, groups: int = 8
) -> list[tuple[int, int, int]]:
    """A seeded typed KG: entities fall in groups, relation r maps group g to group perm_r(g) (learnable); heads
    and tails are drawn by Zipf hub weights, as in real KGs. Vectorised: rounds of draws, duplicates dropped."""
    rng = np.random.default_rng(seed)
    grp = rng.integers(0, groups, n_ent)
    perms = np.stack([rng.permutation(groups) for _ in range(n_rel)])
    hub = rng.zipf(1.6, n_ent).astype(float)
    order = np.argsort(grp, kind="stable")  # members of each group, contiguous
    starts = np.searchsorted(grp[order], np.arange(groups + 1))
    cum = np.cumsum(hub[order])
    head_cdf = np.cumsum(hub) / hub.sum()
    seen: set[tuple[int, int, int]] = set()
    out: list[tuple[int, int, int]] = []
    while len(out) < n_triples:
        m = 2 * (n_triples - len(out)) + 16
        h = np.minimum(np.searchsorted(head_cdf, rng.random(m)), n_ent - 1)
        r = rng.integers(0, n_rel, m)
        g = perms[r, grp[h]]
        a, b = starts[g], starts[g + 1]
        ok = b > a
        lo = np.where(a > 0, cum[np.maximum(a - 1, 0)], 0.0)
        hi = cum[np.maximum(b - 1, 0)]
        pos = np.searchsorted(cum, lo + rng.random(m) * (hi - lo), side="right")
        t = order[np.clip(pos, a, np.maximum(b - 1, a))]
        for x in zip(h[ok].tolist(), r[ok].tolist(), t[ok].tolist()):
            if x[0] != x[2] and x not in seen:
                seen.add(x)
                out.append(x)
                if len(out) == n_triples:
                    break
    return out


def write_dynamic(
    root: Path,
    n_ent: int,
    n_rel: int,
    n_triples: int,
    seed: int,
    n_snap: int = 2,
    add: float = 0.05,
    delete: float = 0.01,
) -> Path:
    """The embedded default: snapshot1..N in the OpenKE layout, cumulative, with a fixed test set (by name).

    Each step adds `add`*|train| triples (some on new entities and, once, a new relation) and deletes
    `delete`*|train| train triples; ids are re-assigned per snapshot (align by name)."""
    rng = np.random.default_rng(seed + 1)
    n_total_ent = int(n_ent * (1 + 0.05 * (n_snap - 1)))
    triples = generate(n_total_ent, n_rel + 1, int(n_triples * (1 + add * n_snap) * 1.25), seed)
    name_e = [f"e{i}" for i in range(n_total_ent)]
    name_r = [f"r{i}" for i in range(n_rel + 1)]
    first = [x for x in triples if x[0] < n_ent and x[2] < n_ent and x[1] < n_rel]
    order = rng.permutation(len(first))
    n_test = max(1, int(0.08 * n_triples))
    test = [first[i] for i in order[:n_test]]
    valid = [first[i] for i in order[n_test : 2 * n_test]]
    train = [first[i] for i in order[2 * n_test : 2 * n_test + n_triples]]
    pool = [x for x in triples if x not in set(first)] + [first[i] for i in order[2 * n_test + n_triples :]]
    pool = [pool[i] for i in rng.permutation(len(pool))]
    for k in range(1, n_snap + 1):
        if k > 1:
            n_add, n_del = int(add * len(train)), int(delete * len(train))
            dropped = set(rng.choice(len(train), n_del, replace=False).tolist())
            train = [x for i, x in enumerate(train) if i not in dropped] + pool[:n_add]
            pool = pool[n_add:]
        named = {"train": [(name_e[h], name_r[r], name_e[t]) for h, r, t in train],
                 "valid": [(name_e[h], name_r[r], name_e[t]) for h, r, t in valid],
                 "test": [(name_e[h], name_r[r], name_e[t]) for h, r, t in test]}  # fmt: skip
        kg = from_named(named)
        kg = _permute(kg, rng.permutation(kg.n_ent))  # ids differ between snapshots, as in YAGO-3SP
        write_openke(kg, root / f"snapshot{k}")
    return root


def _permute(kg: KG, perm_e: np.ndarray) -> KG:
    """Relabel entity i as perm_e[i]."""
    names = [""] * kg.n_ent
    for i, n in enumerate(kg.entities):
        names[int(perm_e[i])] = n
    arrs = {}
    for s in SPLITS:
        a = getattr(kg, s).copy()
        a[:, 0], a[:, 2] = perm_e[a[:, 0]], perm_e[a[:, 2]]
        arrs[s] = a
    return KG(names, kg.relations, **arrs)
