"""Plausible, unique place names (zh + pinyin) built from two syllables.

Names come from a first and a second syllable list, in the style of the towns along the
lower Yangtze (澄江 Chengjiang, 南闸 Nanzha, 云亭 Yunting…). Every name, Chinese and
English, is unique across the whole demo city, whatever its level.

>>> import numpy as np
>>> place_names(np.random.default_rng(1), 2)[0][1][0].isupper()
True
"""

from __future__ import annotations

import numpy as np

__all__ = ["place_names"]

_FIRST = (
    ("澄", "cheng"), ("南", "nan"), ("云", "yun"), ("申", "shen"), ("夏", "xia"), ("利", "li"),
    ("璜", "huang"), ("月", "yue"), ("青", "qing"), ("华", "hua"), ("周", "zhou"), ("新", "xin"),
    ("长", "chang"), ("顾", "gu"), ("祝", "zhu"), ("徐", "xu"), ("金", "jin"), ("龙", "long"),
    ("凤", "feng"), ("兴", "xing"), ("文", "wen"), ("泰", "tai"), ("康", "kang"), ("宁", "ning"),
    ("永", "yong"), ("瑞", "rui"), ("秀", "xiu"), ("锦", "jin"), ("松", "song"), ("梅", "mei"),
    ("桃", "tao"), ("柳", "liu"), ("枫", "feng"), ("荷", "he"), ("东", "dong"), ("西", "xi"),
    ("北", "bei"), ("香", "xiang"), ("白", "bai"), ("石", "shi"), ("黄", "huang"), ("杨", "yang"),
    ("马", "ma"), ("陆", "lu"), ("沙", "sha"), ("芙", "fu"), ("蓉", "rong"), ("春", "chun"),
)
_SECOND = (
    ("江", "jiang"), ("闸", "zha"), ("亭", "ting"), ("港", "gang"), ("城", "cheng"),
    ("阳", "yang"), ("塘", "tang"), ("泾", "jing"), ("山", "shan"), ("桥", "qiao"), ("湾", "wan"),
    ("园", "yuan"), ("庄", "zhuang"), ("浦", "pu"), ("林", "lin"), ("溪", "xi"), ("河", "he"),
    ("门", "men"), ("坊", "fang"), ("里", "li"), ("口", "kou"), ("岸", "an"), ("湖", "hu"),
    ("泉", "quan"), ("洲", "zhou"), ("墩", "dun"), ("渡", "du"), ("滨", "bin"), ("丰", "feng"),
    ("安", "an"), ("盛", "sheng"), ("和", "he"), ("苑", "yuan"), ("圩", "wei"), ("埭", "dai"),
    ("巷", "xiang"), ("堰", "yan"), ("峰", "feng"), ("桂", "gui"), ("荡", "dang"),
)

_DIRECTIONS = (("东", "East"), ("西", "West"), ("南", "South"), ("北", "North"))


def _pinyin(first: str, second: str) -> str:
    # an apostrophe keeps syllables apart when the second starts with a vowel (Xi'an)
    glue = "'" if second[0] in "aeo" else ""
    return (first + glue + second).capitalize()


def place_names(rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
    """``n`` distinct (zh, pinyin) names in a seeded random order."""
    combos = [
        (f1 + s1, _pinyin(f2, s2))
        for f1, f2 in _FIRST
        for s1, s2 in _SECOND
        if f1 != s1
    ]
    shuffled = [combos[i] for i in rng.permutation(len(combos))]
    # 文安 and 文岸 are both Wen'an: keep one so that English names stay unique too
    seen: set[str] = set()
    combos = [c for c in shuffled if not (c[1] in seen or seen.add(c[1]))]
    # big cities run out of two-syllable names: then 云亭东 (Yunting East) and so on
    combos += [(zh + dzh, f"{en} {den}") for dzh, den in _DIRECTIONS for zh, en in combos]
    if n > len(combos):
        raise ValueError(f"at most {len(combos)} distinct demo names; asked for {n}")
    return combos[:n]
