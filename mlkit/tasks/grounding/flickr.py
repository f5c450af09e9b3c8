"""Flickr30K Entities (spec §3.1): the Sentences bracket syntax, the Annotations XML, splits; and their writers.

    <root>/flickr30k-images/<id>.jpg   <root>/Sentences/<id>.txt   <root>/Annotations/<id>.xml
    <root>/{train,val,test}.txt

Every reader raises DataError (exit 3) naming the file and line. The synthetic set (synth.py) is written with the
writers here and read back by the same readers.
"""

from __future__ import annotations

import re
import xml.parsers.expat
from dataclasses import dataclass, field
from pathlib import Path

from mlkit.core.errors import DataError

TYPES = (
    "people",
    "clothing",
    "bodyparts",
    "animals",
    "vehicles",
    "instruments",
    "scene",
    "other",
    "notvisual",
)
EVAL_TYPES = TYPES[:-1]
SPLITS = ("train", "val", "test")
LAYOUT = ("<root>/Sentences/<id>.txt (5 captions, '[/EN#<id>/<type> words]' mentions), <root>/Annotations/<id>.xml "
          "(<object><name>entity id</name>...<bndbox>|<nobndbox>), <root>/{train,val,test}.txt (image ids), "
          "<root>/flickr30k-images/<id>.jpg, <root>/features/<id>.npz (boxes, feats, optional det_logits) + "
          "features/classes.txt, a GloVe text file")  # fmt: skip
_HEAD = re.compile(r"^\[/EN#(\d+)((?:/[A-Za-z_]+)+)$")
_TOKEN = re.compile(r"\w+|'\w+|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Lower-case, split on whitespace, punctuation as separate tokens (the same rule for building and querying)."""
    return _TOKEN.findall(text.lower())


def normalize(text: str) -> str:
    """The phrase string the phrase->class map is keyed by."""
    return " ".join(tokenize(text))


@dataclass
class Phrase:
    text: str  # the phrase words as written
    first_word: int  # index of its first word in the sentence (words without the entity tags)
    entity: str  # entity id (a string, as in the XML <name>)
    types: tuple[str, ...]


@dataclass
class Sentence:
    words: list[str]
    phrases: list[Phrase]

    @property
    def text(self) -> str:
        return " ".join(self.words)


@dataclass
class Boxes:
    width: int
    height: int
    boxes: dict[str, list[tuple[float, float, float, float]]] = field(default_factory=dict)  # entity -> boxes
    nobox: set[str] = field(default_factory=set)  # entities marked <nobndbox>
    scene: set[str] = field(default_factory=set)  # entities marked <scene>1</scene>


def parse_sentence(line: str, where: str) -> Sentence:
    """One Sentences line: plain words with `[/EN#<id>/<type>[/<type2>...] words]` mentions."""
    words: list[str] = []
    phrases: list[Phrase] = []
    cur: tuple[str, tuple[str, ...], int] | None = None
    cur_words: list[str] = []
    fix = "Mentions look like '[/EN#18/people A man]'; brackets must be balanced and not nested."
    for tok in line.split():
        if tok.startswith("[/EN#") or (tok.startswith("[") and len(tok) > 1):
            if cur is not None:
                raise DataError(f"nested mention '{tok}'", where, fix)
            m = _HEAD.match(tok)
            if not m:
                raise DataError(f"bad mention tag '{tok}'", where, fix)
            types = tuple(t.lower() for t in m.group(2).split("/") if t)
            cur, cur_words = (m.group(1), types, len(words)), []
            continue
        if tok.startswith("["):
            raise DataError("a '[' that opens no mention", where, fix)
        close = tok.endswith("]")
        body = tok[:-1] if close else tok
        if "[" in body or "]" in body:
            raise DataError(f"stray bracket in '{tok}'", where, fix)
        if close and cur is None:
            raise DataError(f"a ']' that closes no mention ('{tok}')", where, fix)
        if body:
            words.append(body)
            if cur is not None:
                cur_words.append(body)
        if close:
            assert cur is not None
            if not cur_words:
                raise DataError("an empty mention", where, fix)
            phrases.append(Phrase(" ".join(cur_words), cur[2], cur[0], cur[1]))
            cur = None
    if cur is not None:
        raise DataError(f"mention EN#{cur[0]} is not closed", where, fix)
    if not words:
        raise DataError("an empty caption line", where, "Write one caption per line, no blank lines.")
    return Sentence(words, phrases)


def read_sentences(path: Path) -> list[Sentence]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError("not UTF-8 text", str(path), "Save the Sentences file as UTF-8.") from None
    except OSError as e:
        raise DataError(
            f"cannot read sentences ({e.strerror})", str(path), "Check the Sentences folder."
        ) from None
    out = [
        parse_sentence(line, f"{path} line {n}")
        for n, line in enumerate(text.splitlines(), 1)
        if line.strip()
    ]
    if not out:
        raise DataError("no caption in the file", str(path), "Write one caption per line.")
    return out


class _Node:
    __slots__ = ("tag", "line", "children", "text")

    def __init__(self, tag: str, line: int) -> None:
        self.tag, self.line, self.children, self.text = tag, line, [], ""

    def find(self, tag: str) -> _Node | None:
        return next((c for c in self.children if c.tag == tag), None)

    def findall(self, tag: str) -> list[_Node]:
        return [c for c in self.children if c.tag == tag]


def _parse_xml(data: bytes, where: str) -> _Node:
    """A tiny element tree with line numbers (expat)."""
    p = xml.parsers.expat.ParserCreate()
    stack: list[_Node] = [_Node("#doc", 0)]

    def start(tag: str, attrs: dict) -> None:
        node = _Node(tag, p.CurrentLineNumber)
        stack[-1].children.append(node)
        stack.append(node)

    def end(tag: str) -> None:
        stack.pop()

    def chars(s: str) -> None:
        stack[-1].text += s

    p.StartElementHandler, p.EndElementHandler, p.CharacterDataHandler = start, end, chars
    try:
        p.Parse(data, True)
    except xml.parsers.expat.ExpatError as e:
        raise DataError(f"malformed XML ({xml.parsers.expat.ErrorString(e.code)})", f"{where} line {e.lineno}",
                        "Fix or re-export the annotation file.") from None  # fmt: skip
    root = stack[0].find("annotation")
    if root is None:
        raise DataError("no <annotation> root element", where, "Use the Flickr30K Entities Annotations XML.")
    return root


def _num(node: _Node | None, tag: str, where: str, parent: _Node) -> float:
    if node is None:
        raise DataError(
            f"missing <{tag}>", f"{where} line {parent.line}", "Every box needs xmin/ymin/xmax/ymax."
        )
    try:
        return float(node.text.strip())
    except ValueError:
        raise DataError(f"<{tag}> is not a number: '{node.text.strip()}'", f"{where} line {node.line}",
                        "Write plain numbers.") from None  # fmt: skip


def read_annotation(path: Path) -> Boxes:
    """One Annotations XML: size, then objects with one or more <name> plus <bndbox> or <nobndbox>."""
    where = str(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(
            f"cannot read annotation ({e.strerror})", where, "Check the Annotations folder."
        ) from None
    root = _parse_xml(data, where)
    size = root.find("size")
    if size is None:
        raise DataError("missing <size>", f"{where} line {root.line}", "Add <size><width/><height/></size>.")
    w, h = _num(size.find("width"), "width", where, size), _num(size.find("height"), "height", where, size)
    if w <= 0 or h <= 0:
        raise DataError(f"image size {w:g}x{h:g} is not positive", f"{where} line {size.line}", "Fix <size>.")
    out = Boxes(int(w), int(h))
    for obj in root.findall("object"):
        names = [n.text.strip() for n in obj.findall("name")]
        if not names or not all(names):
            raise DataError("<object> without a <name>", f"{where} line {obj.line}", "Name the entity id(s).")
        bb, nob, sc = obj.find("bndbox"), obj.find("nobndbox"), obj.find("scene")
        if sc is not None and sc.text.strip() == "1":
            out.scene.update(names)
        if bb is not None:
            x1, y1, x2, y2 = (_num(bb.find(t), t, where, bb) for t in ("xmin", "ymin", "xmax", "ymax"))
            if not (
                0 <= x1 <= x2 <= w + 1 and 0 <= y1 <= y2 <= h + 1
            ):  # 1-based pixel boxes may end at w + 1
                raise DataError(f"box ({x1:g},{y1:g},{x2:g},{y2:g}) lies outside the {w:g}x{h:g} image",
                                f"{where} line {bb.line}", "Fix the box or the <size>.")  # fmt: skip
            x2, y2 = min(x2, w), min(y2, h)
            for n in names:
                out.boxes.setdefault(n, []).append((x1, y1, x2, y2))
        elif nob is not None and nob.text.strip() == "1":
            out.nobox.update(names)
        elif sc is None:
            raise DataError("<object> with neither <bndbox> nor <nobndbox>", f"{where} line {obj.line}",
                            "Give a box or mark it <nobndbox>1</nobndbox>.")  # fmt: skip
    return out


def union_box(boxes: list[tuple[float, float, float, float]]) -> tuple[float, float, float, float]:
    """The ground truth of a phrase whose entity owns several boxes (the weakly supervised protocol)."""
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def read_split(root: Path, split: str) -> list[str]:
    path = root / f"{split}.txt"
    if not path.is_file():
        raise DataError(f"missing split file {split}.txt", str(root), f"Expected layout: {LAYOUT}.")
    ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for n, i in enumerate(ids, 1):
        if "/" in i or " " in i:
            raise DataError(f"bad image id '{i}'", f"{path} line {n}", "One image id (file stem) per line.")
    return ids


# ---------------------------------------------------------------- writers (the synthetic set uses these)
def mention(entity: str, types: tuple[str, ...], words: str) -> str:
    return f"[/EN#{entity}/{'/'.join(types)} {words}]"


def write_annotation(path: Path, image_id: str, width: int, height: int,
                     objects: list[tuple[list[str], tuple[float, float, float, float] | None, bool]]) -> None:  # fmt: skip
    """objects: (entity ids, box or None for <nobndbox>, scene flag)."""
    lines = ["<annotation>", f"  <filename>{image_id}.jpg</filename>",
             f"  <size>\n    <width>{width}</width>\n    <height>{height}</height>\n    <depth>3</depth>\n  </size>"]  # fmt: skip
    for names, box, scene in objects:
        lines.append("  <object>")
        lines += [f"    <name>{n}</name>" for n in names]
        if box is None:
            lines.append("    <nobndbox>1</nobndbox>")
        else:
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            lines.append(f"    <bndbox>\n      <xmin>{x1}</xmin>\n      <ymin>{y1}</ymin>\n      <xmax>{x2}</xmax>\n"
                         f"      <ymax>{y2}</ymax>\n    </bndbox>")  # fmt: skip
        lines.append(f"    <scene>{int(scene)}</scene>")
        lines.append("  </object>")
    lines.append("</annotation>")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
