"""The synthetic shapes set (spec §3.4), written as real Flickr30K Entities files plus feature npz.

128x128 images, 2-4 shapes {circle, square, triangle, cross} x {red, green, blue, yellow, purple}, 5 template
captions with bracketed mentions, XML boxes per entity, R=20 proposals per image (2 jitters + 1 half box per
object, a pair's union box, random boxes), the handcrafted 77-d features of the decoded JPEG, an oracle detector
that knows shape but never colour, and a 50-d `glove_synth.txt` in which shape synonyms lie near their concept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mlkit.tasks.grounding.features import BACKGROUND, PALETTE, describe
from mlkit.tasks.grounding.flickr import mention, write_annotation

SHAPES = ("circle", "square", "triangle", "cross")
SYNONYMS = {"circle": ("circle", "ball", "disc"), "square": ("square", "box", "block"),
            "triangle": ("triangle", "wedge"), "cross": ("cross", "plus")}  # fmt: skip
RELATIONS = ("left of", "right of", "above", "below", "near")
OTHER_WORDS = ("a", "the", "one", "small", "big", "there", "is", "and", "are", ".", ",", "picture", "shows", "on",
               "grey", "background", "left", "right", "of", "above", "below", "near", "next", "to")  # fmt: skip


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter + 1e-9)


def _draw(d: ImageDraw.ImageDraw, shape: str, box: tuple[float, ...], col: tuple[int, int, int]) -> None:
    x1, y1, x2, y2 = box
    if shape == "circle":
        d.ellipse(box, fill=col)
    elif shape == "square":
        d.rectangle(box, fill=col)
    elif shape == "triangle":
        d.polygon([((x1 + x2) / 2, y1), (x2, y2), (x1, y2)], fill=col)
    else:
        t = (x2 - x1) / 3
        d.rectangle((x1 + t, y1, x2 - t, y2), fill=col)
        d.rectangle((x1, y1 + t, x2, y2 - t), fill=col)


def _layout(rng: np.random.Generator, size: int) -> list[tuple[str, str, np.ndarray]]:
    n = int(rng.integers(2, 5))
    if rng.random() < 0.3:  # two objects share a shape, differ in colour: shape alone cannot ground them
        s = list(rng.choice(SHAPES, n - 1, replace=False))
        shapes = [*s, s[0]]
    else:
        shapes = list(rng.choice(SHAPES, n, replace=False))
    colours = list(rng.choice(list(PALETTE), n, replace=False))
    objs: list[tuple[str, str, np.ndarray]] = []
    for shape, col in zip(shapes, colours):
        for _ in range(200):
            s = float(rng.uniform(18, 40))
            x, y = rng.uniform(2, size - s - 2, 2)
            box = np.array([x, y, x + s, y + s])
            ok = True
            for _, _, o in objs:
                iw = max(0.0, min(box[2], o[2]) - max(box[0], o[0]))
                ih = max(0.0, min(box[3], o[3]) - max(box[1], o[1]))
                ok &= iw * ih <= 0.2 * min(s * s, (o[2] - o[0]) * (o[3] - o[1]))
            if ok:
                objs.append((str(shape), str(col), np.round(box)))
                break
    return objs


def _proposals(rng: np.random.Generator, gts: list[np.ndarray], size: int, r: int) -> np.ndarray:
    def clip(b: np.ndarray) -> np.ndarray:
        b = np.clip(b, 0, size)
        b[2], b[3] = max(b[2], b[0] + 2), max(b[3], b[1] + 2)
        return np.clip(b, 0, size)

    out: list[np.ndarray] = []
    for g in gts:
        s, got = g[2] - g[0], 0
        for _ in range(500):
            b = clip(g + rng.normal(0, 0.12 * s, 4))
            if 0.55 <= iou(b, g) <= 0.95:
                out.append(b)
                got += 1
                if got == 2:
                    break
        if got == 0:  # the guarantee: at least one proposal with IoU >= 0.5 per ground truth
            out.append(g.copy())
        side = int(rng.integers(4))
        half = g.copy()
        cut = 0.4 * s
        half[[2, 0, 3, 1][side]] = g[[0, 2, 1, 3][side]] + (cut if side in (0, 2) else -cut)
        out.append(clip(half))
    if len(gts) >= 2:
        i, j = rng.choice(len(gts), 2, replace=False)
        out.append(np.r_[np.minimum(gts[i][:2], gts[j][:2]), np.maximum(gts[i][2:], gts[j][2:])])
    while len(out) < r:
        w, h = rng.uniform(12, 64, 2)
        x, y = rng.uniform(0, size - w), rng.uniform(0, size - h)
        out.append(np.array([x, y, x + w, y + h]))
    boxes = np.stack(out[:r]).astype(np.float32)
    return boxes[rng.permutation(len(boxes))]


def _np(rng: np.random.Generator, shape: str, col: str, box: np.ndarray) -> str:
    s = box[2] - box[0]
    size = "small " if s < 25 and rng.random() < 0.5 else "big " if s > 33 and rng.random() < 0.5 else ""
    return f"{rng.choice(('a', 'the', 'one'))} {size}{col} {rng.choice(SYNONYMS[shape])}"


def _relation(rng: np.random.Generator, a: np.ndarray, b: np.ndarray) -> str:
    ca, cb = (a[:2] + a[2:]) / 2, (b[:2] + b[2:]) / 2
    dx, dy = cb - ca
    if np.hypot(dx, dy) < 40 and rng.random() < 0.3:
        return "near"
    if abs(dx) >= abs(dy):
        return "left of" if dx > 0 else "right of"
    return "above" if dy > 0 else "below"


def _captions(rng: np.random.Generator, objs: list, ents: list[str], scene: str) -> list[str]:
    out = []
    for _ in range(5):
        n = len(objs)
        k = int(rng.integers(5))
        order = rng.permutation(n)
        m = [mention(ents[i], ("other",), _np(rng, objs[i][0], objs[i][1], objs[i][2])) for i in order]
        a, b = objs[order[0]][2], objs[order[1]][2]
        if k == 0:
            out.append(f"{m[0]} is {_relation(rng, a, b)} {m[1]} .")
        elif k == 1:
            out.append(f"there is {m[0]} .")
        elif k == 2:
            pic = mention("0", ("notvisual",), "the picture")
            out.append(f"{pic} shows {m[0]} {_relation(rng, a, b)} {m[1]} .")
        elif k == 3:
            out.append(f"{m[0]} is on {mention(scene, ('scene',), 'a grey background')} .")
        else:
            out.append(f"{' , '.join(m[:-1])} and {m[-1]} .")
    return out


def write_glove(path: Path, rng: np.random.Generator, dim: int = 50) -> None:
    """One random unit vector per concept; each shape word = concept + 0.3 * noise, re-normalised; others random."""

    def unit(v: np.ndarray) -> np.ndarray:
        return v / np.linalg.norm(v)

    lines = []
    for shape in SHAPES:
        c = unit(rng.normal(size=dim))
        for w in SYNONYMS[shape]:
            lines.append((w, unit(c + 0.3 * unit(rng.normal(size=dim)))))
    for w in (*PALETTE, *OTHER_WORDS):
        lines.append((w, unit(rng.normal(size=dim))))
    path.write_text(
        "".join(f"{w} " + " ".join(f"{x:.5f}" for x in v) + "\n" for w, v in lines), encoding="utf-8"
    )


def write_synth(out: Path, train: int = 800, val: int = 100, test: int = 200, proposals: int = 20, size: int = 128,
                seed: int = 0) -> Path:  # fmt: skip
    """Write the whole set under `out` (real Flickr30K Entities layout + features/*.npz + glove_synth.txt)."""
    rng = np.random.default_rng(seed)
    for d in ("flickr30k-images", "Sentences", "Annotations", "features"):
        (out / d).mkdir(parents=True, exist_ok=True)
    (out / "features" / "classes.txt").write_text("".join(s + "\n" for s in SHAPES), encoding="utf-8")
    n = train + val + test
    ids = [str(100000 + i) for i in range(n)]
    for k, image_id in enumerate(ids):
        objs = _layout(rng, size)
        noise = rng.normal(0, 6, (size, size, 3))
        img = Image.fromarray(np.clip(np.array(BACKGROUND) + noise, 0, 255).astype(np.uint8))
        d = ImageDraw.Draw(img)
        for shape, col, box in objs:
            _draw(d, shape, tuple(box.tolist()), PALETTE[col])
        path = out / "flickr30k-images" / f"{image_id}.jpg"
        img.save(path, quality=95)
        arr = np.asarray(Image.open(path).convert("RGB"))  # features of the decoded file, as predict sees it
        ents = [str(10 * (k + 1) + j) for j in range(len(objs))]
        scene = str(10 * (k + 1) + 9)
        (out / "Sentences" / f"{image_id}.txt").write_text("\n".join(_captions(rng, objs, ents, scene)) + "\n",
                                                            encoding="utf-8")  # fmt: skip
        write_annotation(
            out / "Annotations" / f"{image_id}.xml",
            image_id,
            size,
            size,
            [([e], tuple(o[2].tolist()), False) for e, o in zip(ents, objs)] + [([scene], None, True)],
        )
        gts = [o[2] for o in objs]
        boxes = _proposals(rng, gts, size, proposals)
        det = np.zeros((len(boxes), len(SHAPES) + 1), np.float32)
        best = np.zeros(len(boxes))
        for r, b in enumerate(boxes):
            for c, shape in enumerate(SHAPES):
                v = max([iou(b, o[2]) for o in objs if o[0] == shape], default=0.0)
                det[r, c + 1] = 4 * v + rng.normal(0, 0.7)
                best[r] = max(best[r], v)
        det[:, 0] = 4 * (1 - best)
        np.savez(
            out / "features" / f"{image_id}.npz", boxes=boxes, feats=describe(arr, boxes), det_logits=det
        )
    for name, part in (
        ("train", ids[:train]),
        ("val", ids[train : train + val]),
        ("test", ids[train + val :]),
    ):
        (out / f"{name}.txt").write_text("".join(i + "\n" for i in part), encoding="utf-8")
    write_glove(out / "glove_synth.txt", rng)
    return out
