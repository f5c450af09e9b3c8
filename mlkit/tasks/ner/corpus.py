"""Tagged corpora for ner (spec §3.1): strict readers, split discovery, BMES conversion and label maps.

Every reader validates what it reads and raises DataError (exit 3) naming the file and line: a UTF-8 BOM is
stripped and CRLF line ends are accepted; anything else that is not '<one character> <tag>' is refused (bad
UTF-8, control characters, a token of several characters, one or three columns, a tag outside B-/M-/E-/S-/I-
TYPE and O, a file with no sentence). Split files are found by name; several variants of one split
(train.all.bmes, train.ne.bmes, ...) are refused as ambiguous unless `variant` or `split_files` names them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlkit.core.errors import DataError, UsageError

Sentence = tuple[list[str], list[str]]  # chars, tags
SPLITS = ("train", "dev", "test")
TAGGED_EXTS = (".bmes", ".bioes", ".bio")
SCHEME_PREFIXES = {"bmes": "BMES", "bio": "BI", "bioes": "BIES"}
LAYOUT_HINT = (
    "Expected <root>/{train,dev,test}.char.bmes (or {train,dev,test}.*.bmes, or train/dev/test *.bio|*.bioes|*.txt) "
    "with one '<char> <tag>' per line and a blank line between sentences."
)
_BAD_CHAR = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\ufeff\u2028\u2029]"
)  # control chars (tab is a separator)
_TAG = re.compile(r"([BMESI])-(\S+)")


@dataclass
class TaggedFile:
    """One file's sentences and, per tag, the first line it occurs on (for error messages)."""

    path: Path
    sentences: list[Sentence]
    first: dict[str, int] = field(default_factory=dict)


def _decode(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError("file not found", str(path), LAYOUT_HINT) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"not valid UTF-8 (byte {exc.start})", f"{path} line {line}", "Convert the file to UTF-8."
        ) from None
    return text.removeprefix("\ufeff")


def read_file(path: Path) -> TaggedFile:
    """Read and validate '<char> <tag>' lines (space or tab between), a blank line between sentences."""
    path = Path(path)
    text = _decode(path)
    out = TaggedFile(path, [])
    chars: list[str] = []
    tags: list[str] = []
    for no, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        where = f"{path} line {no}"
        bad = _BAD_CHAR.search(line)
        if bad:
            raise DataError(f"control character U+{ord(bad.group()):04X} in the line", where,
                            "Remove it: each line is '<char> <tag>'.")  # fmt: skip
        fields = line.split()
        if not fields:
            if chars:
                out.sentences.append((chars, tags))
                chars, tags = [], []
            continue
        if len(fields) != 2:
            raise DataError(f"line has {len(fields)} columns, expected 2 ('<char> <tag>'): {line[:40]!r}", where,
                            LAYOUT_HINT)  # fmt: skip
        tok, tag = fields
        if len(tok) != 1:
            raise DataError(f"token {tok[:20]!r} has {len(tok)} characters; each line holds one character", where,
                            "Split it into one line per character (B-/M-/E- tags across a word).")  # fmt: skip
        if tag != "O" and not _TAG.fullmatch(tag):
            raise DataError(f"tag {tag[:30]!r} is not O or B-/M-/E-/S-/I-TYPE", where,
                            "Use BMES, BIO or BIOES tags, e.g. B-PER M-PER E-PER S-PER O.")  # fmt: skip
        chars.append(tok)
        tags.append(tag)
        out.first.setdefault(tag, no)
    if chars:
        out.sentences.append((chars, tags))
    if not out.sentences:
        what = "the file is empty" if not text.strip() else "the file holds no sentence (only blank lines)"
        raise DataError(what, str(path), LAYOUT_HINT)
    return out


def read_tagged(path: Path) -> list[Sentence]:
    """The sentences of a tagged file (validated as `read_file` does)."""
    return read_file(path).sentences


def resolve_scheme(files: Sequence[TaggedFile], scheme: str) -> str:
    """The tag scheme of the files (auto: from the prefixes used); a tag outside it is exit 3 at its line."""
    if scheme not in ("auto", *SCHEME_PREFIXES):
        raise UsageError(f"unknown tag scheme '{scheme}'", "--scheme", "Use auto, bmes, bio or bioes.")
    seen: dict[str, tuple[str, str]] = {}  # prefix -> (tag, where) of its first use
    for f in files:
        for tag, no in sorted(f.first.items(), key=lambda kv: kv[1]):
            if tag != "O":
                seen.setdefault(tag[0], (tag, f"{f.path} line {no}"))
    sch = scheme
    if sch == "auto":
        if "M" in seen and "I" in seen:
            tag, where = seen["I"]
            raise DataError(f"tag '{tag}' mixes BIO/BIOES with BMES (an M- tag is at {seen['M'][1]})", where,
                            "Use one scheme per dataset, or name it with --scheme.")  # fmt: skip
        sch = (
            "bmes"
            if "M" in seen
            else ("bioes" if seen.keys() & {"E", "S"} else "bio")
            if "I" in seen
            else "bmes"
        )
    for prefix, (tag, where) in seen.items():
        if prefix not in SCHEME_PREFIXES[sch]:
            raise DataError(
                f"tag '{tag}' is outside the {sch.upper()} scheme",
                where,
                f"{sch.upper()} tags are O and {'/'.join(SCHEME_PREFIXES[sch])}-TYPE; set --scheme.",
            )
    return sch


def to_bmes(tags: Sequence[str], scheme: str) -> list[str]:
    """Convert BIO or BIOES tags to BMES (I -> M; BIO spans get E/S ends)."""
    if scheme == "bmes":
        return list(tags)
    split = [(t.split("-", 1)[0].upper(), t.split("-", 1)[1]) if "-" in t else ("O", "") for t in tags]
    if scheme == "bioes":
        return [
            f"M-{typ}" if p == "I" else (tags[i] if p != "O" else "O") for i, (p, typ) in enumerate(split)
        ]
    out = []
    for i, (p, typ) in enumerate(split):
        if p == "O":
            out.append("O")
            continue
        nxt = split[i + 1] if i + 1 < len(split) else ("O", "")
        cont = nxt[0] == "I" and nxt[1] == typ
        prev = split[i - 1] if i else ("O", "")
        opened = p == "I" and prev[0] in ("B", "I") and prev[1] == typ
        if not opened:
            out.append(f"B-{typ}" if cont else f"S-{typ}")
        else:
            out.append(f"M-{typ}" if cont else f"E-{typ}")
    return out


# --- where the splits are ---
def _variant(name: str, split: str) -> str:
    """'train.ne.bmes' -> 'ne', 'train.char.bmes' -> 'char', 'train.bio' -> ''."""
    return Path(name[len(split) :]).stem.strip("._-") if "." in name[len(split) :] else ""


def _candidates(root: Path, split: str) -> list[Path]:
    files = sorted(p for p in root.iterdir() if p.is_file() and p.name.startswith(split))
    tagged = [p for p in files if p.suffix in TAGGED_EXTS]
    return tagged or [p for p in files if p.suffix == ".txt"]  # .txt only when no tagged file is there


def parse_split_files(value: Any) -> dict[str, str]:
    """--split-files 'train=a.bmes,dev=b.bmes,test=c.bmes' (or a mapping in a config file)."""
    if isinstance(value, Mapping):
        items = [(str(k), str(v)) for k, v in value.items()]
    else:
        items = []
        for part in str(value).split(","):
            if "=" not in part:
                raise UsageError(
                    f"bad --split-files item '{part}'",
                    "--split-files",
                    "Write split=file pairs: --split-files train=train.ne.bmes,test=test.ne.bmes.",
                )
            k, v = part.split("=", 1)
            items.append((k.strip(), v.strip()))
    out = dict(items)
    if set(out) - set(SPLITS) or not out:
        raise UsageError(f"--split-files names splits {', '.join(out) or 'none'}", "--split-files",
                         "Use train, dev and test.")  # fmt: skip
    return out


def find_splits(data: Path, need: Sequence[str], split_files: Any = None, variant: str | None = None,
                first_required: bool = True) -> dict[str, Path]:  # fmt: skip
    """The files of the splits in `need` (the first required unless first_required is False).

    `data` is a folder, or one file (then it is the first needed split). `split_files` names files per
    split (relative to the folder); `variant` picks '<split>.<variant>.*' where a split has several files.
    """
    data = Path(data)
    if split_files:
        base = data if data.is_dir() else data.parent
        named = parse_split_files(split_files)
        out = {s: (base / named[s]) for s in need if s in named}
        for s, p in out.items():
            if not p.is_file():
                raise DataError(f"the {s} file named by --split-files does not exist", str(p), LAYOUT_HINT)
    elif data.is_file():
        out = {need[0]: data}
    elif not data.is_dir():
        raise DataError("data path is not a folder or file", str(data), LAYOUT_HINT)
    else:
        out = {}
        for s in need:
            hits = _candidates(data, s)
            if variant:
                picked = [p for p in hits if _variant(p.name, s) == variant]
                if hits and len(picked) != 1:
                    raise DataError(f"no single {s} file of variant '{variant}'", str(data),
                                    f"The {s} files here: {', '.join(p.name for p in hits)}.")  # fmt: skip
                hits = picked
            if len(hits) > 1:
                raise DataError(f"several {s} files: {', '.join(p.name for p in hits)}", str(data),
                                "Pick one set with --variant NAME (e.g. --variant "
                                f"{_variant(hits[0].name, s) or 'char'}) or --split-files "
                                "train=FILE,dev=FILE,test=FILE.")  # fmt: skip
            if hits:
                out[s] = hits[0]
    if first_required and need[0] not in out:
        held = ", ".join(sorted(p.name for p in data.iterdir())) if data.is_dir() else "nothing"
        what = "no training file found" if need[0] == "train" else f"no {need[0]} split found"
        raise DataError(
            what,
            str(data),
            f"The folder holds: {held or 'nothing'}. {LAYOUT_HINT} "
            f"Or pass the {need[0]} file itself to --data, or --split-files {need[0]}=FILE.",
        )
    return out


def read_splits(files: Mapping[str, Path], scheme: str, log: Callable[[str], Any] | None = None
                ) -> tuple[dict[str, list[Sentence]], dict[str, TaggedFile]]:  # fmt: skip
    """Read the files (logging each one), resolve the scheme over all of them, convert to BMES."""
    read = {s: read_file(p) for s, p in files.items()}
    sch = resolve_scheme(list(read.values()), scheme)
    for s, f in read.items():
        if log:
            n_chars = sum(len(c) for c, _ in f.sentences)
            log(f"read {s} {f.path}: {len(f.sentences)} sentences, {n_chars} chars, {sch.upper()} tags")
    return {s: [(c, to_bmes(t, sch)) for c, t in f.sentences] for s, f in read.items()}, read


def load_corpus(root: Path, scheme: str, dev_fraction: float, seed: int, warn=None, log=None,
                split_files: Any = None, variant: str | None = None) -> dict[str, list[Sentence]]:  # fmt: skip
    """Train-time corpus: read train (+ dev, test), carve dev from train when it is missing."""
    files = find_splits(Path(root), SPLITS, split_files, variant)
    out, _ = read_splits(files, scheme, log)
    if "dev" not in out:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(out["train"]))
        n_dev = max(1, int(round(dev_fraction * len(order))))
        if n_dev >= len(order):
            raise DataError(f"the training file holds {len(order)} sentence(s): too few to carve a dev split",
                            str(files["train"]), "Add a dev file, or more training sentences.")  # fmt: skip
        out["dev"] = [out["train"][i] for i in sorted(order[:n_dev])]
        out["train"] = [out["train"][i] for i in sorted(order[n_dev:])]
        if warn:
            warn(f"no dev file in {root}: carved {n_dev} sentences ({dev_fraction:.0%}) off train")
    if "test" not in out:
        out["test"] = out["dev"]
        if warn:
            warn(f"no test file in {root}: test metrics are computed on dev")
    return out


# --- label maps ---
def read_label_map(path: str | Path, log: Callable[[str], Any] | None = None) -> dict[str, str]:
    """'DATA_TYPE MODEL_TYPE' per line ('#' comments, blank lines ignored); MODEL_TYPE O drops the type."""
    p = Path(path)
    if not p.is_file():
        raise DataError(
            "label map not found", str(p), "Pass a file of 'DATA_TYPE MODEL_TYPE' lines to --label-map."
        )
    out: dict[str, str] = {}
    for no, line in enumerate(_decode(p).split("\n"), 1):
        line = line.split("#", 1)[0].removesuffix("\r")
        where = f"{p} line {no}"
        if _BAD_CHAR.search(line):
            raise DataError("control character in the line", where, "Remove it.")
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or "-" in fields[0] and _TAG.fullmatch(fields[0]):
            raise DataError(
                f"expected 'DATA_TYPE MODEL_TYPE', got {line.strip()[:40]!r}",
                where,
                "Write entity types without B-/M-/E-/S- prefixes, e.g. 'NAME PER' or 'RACE O'.",
            )
        if fields[0] in out:
            raise DataError(f"type '{fields[0]}' is mapped twice", where, "Keep one line per data type.")
        out[fields[0]] = fields[1]
    if log:
        log(f"read label map {p}: {len(out)} types")
    return out


def map_types(data: list[Sentence], mapping: Mapping[str, str]) -> list[Sentence]:
    """Rename entity types by `mapping` (a type mapped to O becomes O tags)."""
    if not mapping:
        return data

    def one(tag: str) -> str:
        if tag == "O" or tag[2:] not in mapping:
            return tag
        new = mapping[tag[2:]]
        return "O" if new == "O" else f"{tag[:2]}{new}"

    return [(c, [one(t) for t in tags]) for c, tags in data]


def entity_types(tags: Sequence[Sequence[str]] | Sequence[str]) -> set[str]:
    """The entity types of tag lists (or of a flat list of labels)."""
    flat = [t for x in tags for t in ([x] if isinstance(x, str) else x)]
    return {t[2:] for t in flat if t != "O"}


def eval_split(cfg: dict, root: Path, labels: list[str], trained: dict, log: Any) -> list:
    """The test sentences eval scores: only the test file is read; --label-map applied; entity types the model
    does not know refused (exit 3). A run's own --variant/--split-files apply to another folder only if they fit."""
    picks = {k: cfg[k] for k in ("split_files", "variant")}
    try:
        files = find_splits(root, ("test",), picks["split_files"], picks["variant"])
    except DataError:
        # another dataset than the run's: the run's own file picks (kept in its config) may not apply there
        inherited = [k for k, v in picks.items() if v and v == trained.get(k)]
        if not inherited or str(cfg["data"]) == str(trained.get("data")):
            raise
        files = find_splits(root, ("test",), *(None if k in inherited else picks[k] for k in picks))
    splits, read = read_splits(files, cfg["scheme"], log)
    test = splits["test"]
    if cfg["label_map"]:
        mapping = read_label_map(cfg["label_map"], log)
        known = entity_types(labels) | {"O"}
        wrong = sorted({m for m in mapping.values() if m not in known})
        if wrong:
            raise DataError(f"the label map names types the model does not know: {' '.join(wrong)}",
                            str(cfg["label_map"]), f"The model's types: {' '.join(sorted(known))}.")  # fmt: skip
        test = map_types(test, mapping)
    unknown = sorted(entity_types([t for _, t in test]) - entity_types(labels))
    if unknown:
        raise DataError(f"the test data has entity types the model does not know: {' '.join(unknown)}",
                        str(read["test"].path), f"The model knows {' '.join(sorted(entity_types(labels)))}; "
                        "map the others with --label-map FILE ('DATA_TYPE MODEL_TYPE' per line; "
                        "MODEL_TYPE O drops a type).")  # fmt: skip
    return test
