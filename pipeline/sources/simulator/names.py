"""Company names, their pinyin initials and English names, areas and controllers.

A name is two characters from `_HEADS` and a two-character business word from
`_TAILS`; `name_parts(k)` maps each integer to a distinct name, and the universe gives
every stock (and every rename) its own integer, so names never collide.
"""

from __future__ import annotations

_HEADS = (
    ("华", "hua"),
    ("信", "xin"),
    ("中", "zhong"),
    ("长", "chang"),
    ("金", "jin"),
    ("天", "tian"),
    ("新", "xin"),
    ("海", "hai"),
    ("东", "dong"),
    ("南", "nan"),
    ("北", "bei"),
    ("西", "xi"),
    ("恒", "heng"),
    ("永", "yong"),
    ("宏", "hong"),
    ("达", "da"),
    ("瑞", "rui"),
    ("安", "an"),
    ("泰", "tai"),
    ("盛", "sheng"),
    ("鑫", "xin"),
    ("嘉", "jia"),
    ("凯", "kai"),
    ("博", "bo"),
    ("明", "ming"),
    ("光", "guang"),
    ("远", "yuan"),
    ("通", "tong"),
    ("科", "ke"),
    ("力", "li"),
    ("锦", "jin"),
    ("鸿", "hong"),
    ("润", "run"),
    ("汇", "hui"),
    ("联", "lian"),
    ("合", "he"),
    ("兴", "xing"),
    ("隆", "long"),
    ("振", "zhen"),
    ("德", "de"),
)
_TAILS = (
    ("科技", "KJ", "Technology"),
    ("股份", "GF", "Holdings"),
    ("电子", "DZ", "Electronics"),
    ("医药", "YY", "Pharmaceutical"),
    ("能源", "NY", "Energy"),
    ("材料", "CL", "Materials"),
    ("智能", "ZN", "Intelligent"),
    ("环境", "HJ", "Environment"),
    ("实业", "SY", "Industrial"),
    ("控股", "KG", "Holding"),
    ("传媒", "CM", "Media"),
    ("装备", "ZB", "Equipment"),
    ("精工", "JG", "Precision"),
    ("化工", "HG", "Chemical"),
    ("食品", "SP", "Foods"),
    ("电气", "DQ", "Electric"),
    ("生物", "SW", "Biotech"),
    ("新材", "XC", "New Materials"),
    ("物流", "WL", "Logistics"),
    ("建设", "JS", "Construction"),
    ("通信", "TX", "Communication"),
    ("软件", "RJ", "Software"),
    ("机械", "JX", "Machinery"),
    ("汽车", "QC", "Automotive"),
    ("光电", "GD", "Optoelectronics"),
    ("重工", "ZG", "Heavy Industry"),
    ("农业", "NY", "Agriculture"),
    ("矿业", "KY", "Mining"),
    ("药业", "YY", "Pharma"),
    ("动力", "DL", "Power"),
    ("微电", "WD", "Microelectronics"),
    ("网络", "WL", "Network"),
    ("置业", "ZY", "Properties"),
    ("文化", "WH", "Culture"),
    ("家居", "JJ", "Home"),
    ("纺织", "FZ", "Textile"),
    ("环保", "HB", "Environmental"),
    ("航空", "HK", "Aviation"),
    ("港口", "GK", "Port"),
    ("电力", "DL", "Power Supply"),
)
FINANCIAL_TAILS = {
    2: ("银行", "YH", "Bank"),
    3: ("保险", "BX", "Insurance"),
    4: ("证券", "ZQ", "Securities"),
}

HEAD_PAIRS = len(_HEADS) * (len(_HEADS) - 1)
CAPACITY = HEAD_PAIRS * len(_TAILS)  # distinct general names

AREAS = (
    "北京",
    "上海",
    "广东",
    "深圳",
    "浙江",
    "江苏",
    "山东",
    "福建",
    "四川",
    "湖北",
    "湖南",
    "河南",
    "安徽",
    "河北",
    "辽宁",
    "天津",
    "重庆",
    "江西",
    "陕西",
    "吉林",
    "黑龙江",
    "云南",
    "广西",
    "山西",
    "贵州",
    "新疆",
    "内蒙",
    "甘肃",
    "海南",
    "宁夏",
    "青海",
    "西藏",
)
AREA_WEIGHTS = (
    8,
    8,
    9,
    9,
    12,
    12,
    5,
    3,
    3,
    3,
    3,
    2,
    3,
    2,
    2,
    2,
    2,
    1.5,
    1.5,
    1,
    1,
    1,
    1,
    1,
    0.8,
    1,
    0.6,
    0.6,
    0.6,
    0.3,
    0.3,
    0.2,
)
CONTROLLER_TYPES = ("民营企业", "地方国企", "中央国企", "外资企业", "集体企业", "无")
CONTROLLER_WEIGHTS = (55, 22, 10, 3, 1, 9)
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰涛明超秀霞平刚"


def _heads(pair: int) -> tuple[tuple[str, str], tuple[str, str]]:
    """The pair-th ordered pair of two different head characters."""
    first, second = divmod(pair % HEAD_PAIRS, len(_HEADS) - 1)
    return _HEADS[first], _HEADS[second + (second >= first)]


def name_parts(k: int, comp_type: int = 1) -> tuple[str, str, str]:
    """The k-th name: (Chinese short name, pinyin initials, English name).

    General companies: distinct k in [0, CAPACITY) give distinct names. Banks,
    insurers and brokers carry their trade in the name; distinct k in
    [0, HEAD_PAIRS) give distinct names within a trade.
    """
    if comp_type in FINANCIAL_TAILS:
        tail, pair = FINANCIAL_TAILS[comp_type], k
    else:
        pair, t = divmod(k % CAPACITY, len(_TAILS))
        tail = _TAILS[t]
    (c1, p1), (c2, p2) = _heads(pair)
    short = f"{c1}{c2}{tail[0]}"
    spell = f"{p1[0]}{p2[0]}".upper() + tail[1]
    english = f"{p1.capitalize()}{p2} {tail[2]} Co., Ltd."
    return short, spell, english


def person(k: int) -> str:
    """A person's name for a private controller."""
    return _SURNAMES[k % len(_SURNAMES)] + _GIVEN[(k // len(_SURNAMES)) % len(_GIVEN)]
