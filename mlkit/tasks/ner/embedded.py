"""The embedded default corpus of `mlkit ner train`: real entity words from jieba's lexicon in sentence templates.

jieba's dict.txt ('word freq pos') tags person names `nr`, places `ns` and organisations `nt`. Filtered to
plausible entries (names: 2-3 characters starting with a common surname; places: frequent, or ending in a
place suffix; organisations: 3-12 characters) and mixed with names made of a surname and common given-name
characters (as 张三), they fill the PER/LOC/ORG slots of hand-written templates; frequent nouns and verbs fill
the O slots. Entity words are split 80/20: train sentences use the first part, dev and test the held-out
part, so dev/test F1 measures entities the model never saw. A seeded generator writes the real BMES layout
({train,dev,test}.char.bmes), through `mlkit.core.artifact.cached` (see data.data_root).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlkit.tasks.ner.synth import _tags  # BMES tags of one word, shared with the §7A generator

SETTINGS_VERSION = 2  # bump when the generator changes: the cached corpus is rebuilt
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔"
    "钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
GIVEN = (
    "三四五伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏飞建国志文斌海波宁晨欣怡子涵浩宇思雨佳琪"
)
PLACE_END = "省市县区州镇村乡岛山河湖江"
TEMPLATES = (
    "{P}在{O}读书。",
    "{P}去了{L}。",
    "{P}是{O}的工程师。",
    "{P}毕业于{O}，现在在{L}工作。",
    "{P}和{P}昨天在{L}见面。",
    "{O}位于{L}。",
    "{L}的{O}宣布了一项新计划。",
    "{P}出生在{L}，后来加入了{O}。",
    "据{O}消息，{P}将于明天抵达{L}。",
    "{P}说，{L}的{N}很好。",
    "{P}{V}了{N}。",
    "我们在{L}{V}{N}。",
    "{O}的{P}表示，{N}很重要。",
    "{P}担任{O}董事长。",
    "记者从{O}获悉，{L}将举办{N}展览。",
    "{P}在{L}的{O}实习。",
    "今天{P}带着孩子去{L}旅游。",
    "{P}向{P}介绍了{O}的情况。",
    "来自{L}的{P}获得了冠军。",
    "{O}与{O}签署了合作协议。",
    "{P}，男，汉族，{L}人。",
    "{P}教授在{O}做了报告。",
    "{L}和{L}之间的{N}很方便。",
    "这是{P}第一次来到{L}。",
    "他在{O}工作了三年。",
    "{N}是{N}的一部分。",
    "大家都很喜欢{N}。",
    "{P}认为{O}应该{V}{N}。",
    "{P}的父母住在{L}。",
    "我和{P}一起{V}{N}。",
    "{P}创办了{O}。",
    "{P}是{L}人，在{O}上班",
    "听说{P}下个月要去{L}出差",
    "{O}的专家来到了{L}。",
    "{P}和朋友在{L}散步。",
    "{P}的{N}在{L}。",
    "老师让{P}{V}{N}。",
    "{L}{N}很多",
    "{O}今年{V}了{N}。",
    "{P}明天从{L}出发去{L}。",
)


def _pools(dict_path: Path) -> dict[str, list[str]]:
    """Entity words by type and O fillers from jieba's dict.txt (sorted: the same on every machine)."""
    pools: dict[str, set[str]] = {"PER": set(), "LOC": set(), "ORG": set(), "N": set(), "V": set()}
    for line in dict_path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        w, freq, pos = parts[0], int(parts[1]), parts[2]
        if not all("\u4e00" <= c <= "\u9fff" for c in w):
            continue
        if pos == "nr" and len(w) in (2, 3) and w[0] in SURNAMES and freq >= 2:
            pools["PER"].add(w)
        elif pos == "ns" and 2 <= len(w) <= 6 and (freq >= 30 or (w[-1] in PLACE_END and freq >= 3)):
            pools["LOC"].add(w)
        elif pos == "nt" and 3 <= len(w) <= 12 and freq >= 3:
            pools["ORG"].add(w)
        elif pos in ("n", "v") and len(w) == 2 and freq >= 3000:
            pools[pos.upper()].add(w)
    return {k: sorted(v) for k, v in pools.items()}


def write_embedded(out: Path, *, train: int = 2000, dev: int = 200, test: int = 300, seed: int = 0,
                   dict_path: Path | None = None) -> Path:  # fmt: skip
    """Write {train,dev,test}.char.bmes into `out` (BMES, PER/LOC/ORG); return `out`."""
    from mlkit.tasks.ner.data import jieba_dict_path

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pools = _pools(dict_path or jieba_dict_path())
    split: dict[str, tuple[list[str], list[str]]] = {}
    for typ in ("PER", "LOC", "ORG"):
        words = [pools[typ][int(i)] for i in rng.permutation(len(pools[typ]))]
        cut = int(0.8 * len(words))
        split[typ] = (words[:cut], words[cut:])
    given = list(GIVEN)

    def entity(typ: str, held: bool) -> str:
        if typ == "PER" and rng.random() < 0.5:  # a made-up name: surname + 1-2 given-name characters
            k = int(rng.integers(1, 3))
            names = SURNAMES[int(rng.integers(len(SURNAMES)))] + "".join(rng.choice(given, size=k).tolist())
            return names
        pool = split[typ][int(held)]
        return pool[int(rng.integers(len(pool)))]

    def sentence(held: bool) -> tuple[str, list[str]]:
        template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
        if rng.random() < 0.3:  # typed text often has no final full stop
            template = template.removesuffix("。")
        text, tags = "", []
        parts = template.replace("{", "\x00{").replace("}", "}\x00").split("\x00")
        for part in parts:
            if part in ("{P}", "{L}", "{O}"):
                typ = {"{P}": "PER", "{L}": "LOC", "{O}": "ORG"}[part]
                w = entity(typ, held)
            elif part in ("{N}", "{V}"):
                typ, pool = "O", pools[part[1]]
                w = pool[int(rng.integers(len(pool)))]
            else:
                typ, w = "O", part
            text += w
            tags += _tags(w, typ)
        return text, tags

    for name, n, held in (("train", train, False), ("dev", dev, True), ("test", test, True)):
        with (out / f"{name}.char.bmes").open("w", encoding="utf-8") as f:
            for _ in range(n):
                text, tags = sentence(held)
                f.write("".join(f"{c} {t}\n" for c, t in zip(text, tags)) + "\n")
    return out
