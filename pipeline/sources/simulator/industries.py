"""The Shenwan 2021 industry tree: 31 first-level industries, their sub-industries.

L1 names, index codes (801010.SI, ...) and industry codes are the real ones; L2 names
are real or close; each L2 has one or two L3 classes. Codes follow the real scheme:
L2 index 8017x1.SI under 801780.SI, L3 index 85xxxk.SI under its L2, industry codes
480000 -> 480100 -> 480101. Banks, insurers and brokers are the financial templates
(comp_type 2, 3, 4); 多元金融 sits under 非银金融 with the general template.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property

# (L1 name, L1 index code, L1 industry code, typical gross margin, weight in the market, L2 names)
_L1_TABLE = (
    (
        "农林牧渔",
        "801010",
        "110000",
        0.18,
        2.0,
        ("种植业", "渔业", "林业Ⅱ", "饲料", "养殖业", "动物保健Ⅱ"),
    ),
    (
        "基础化工",
        "801030",
        "220000",
        0.22,
        8.0,
        ("化学原料", "化学制品", "化学纤维", "塑料", "橡胶", "农化制品"),
    ),
    ("钢铁", "801040", "230000", 0.10, 1.0, ("普钢", "特钢Ⅱ", "冶钢原料")),
    (
        "有色金属",
        "801050",
        "240000",
        0.14,
        3.0,
        ("工业金属", "贵金属", "小金属", "能源金属", "金属新材料"),
    ),
    (
        "电子",
        "801080",
        "270000",
        0.24,
        9.0,
        ("半导体", "元件", "光学光电子", "消费电子", "电子化学品Ⅱ"),
    ),
    ("汽车", "801880", "280000", 0.18, 5.0, ("汽车零部件", "汽车服务", "乘用车", "商用车")),
    ("家用电器", "801110", "330000", 0.24, 2.0, ("白色家电", "黑色家电", "小家电", "厨卫电器")),
    (
        "食品饮料",
        "801120",
        "340000",
        0.42,
        3.0,
        ("白酒Ⅱ", "非白酒", "饮料乳品", "休闲食品", "食品加工"),
    ),
    ("纺织服饰", "801130", "350000", 0.28, 2.0, ("纺织制造", "服装家纺", "饰品")),
    ("轻工制造", "801140", "360000", 0.24, 3.0, ("造纸", "包装印刷", "家居用品", "文娱用品")),
    (
        "医药生物",
        "801150",
        "370000",
        0.45,
        9.0,
        ("化学制药", "中药Ⅱ", "生物制品", "医药商业", "医疗器械", "医疗服务"),
    ),
    ("公用事业", "801160", "410000", 0.22, 2.5, ("电力", "燃气Ⅱ")),
    ("交通运输", "801170", "420000", 0.16, 2.5, ("物流", "铁路公路", "航空机场", "航运港口")),
    ("房地产", "801180", "430000", 0.25, 2.0, ("房地产开发", "房地产服务")),
    ("商贸零售", "801200", "450000", 0.20, 2.0, ("一般零售", "贸易Ⅱ", "互联网电商", "专业连锁Ⅱ")),
    ("社会服务", "801210", "460000", 0.32, 1.5, ("专业服务", "酒店餐饮", "旅游及景区", "教育")),
    ("银行", "801780", "480000", 0.0, 0.0, ("国有大型银行Ⅱ", "股份制银行Ⅱ", "城商行Ⅱ", "农商行Ⅱ")),
    ("非银金融", "801790", "490000", 0.0, 0.4, ("证券Ⅱ", "保险Ⅱ", "多元金融")),
    ("综合", "801230", "510000", 0.20, 0.5, ("综合Ⅱ",)),
    ("建筑材料", "801710", "610000", 0.26, 1.5, ("水泥", "玻璃玻纤", "装修建材")),
    ("建筑装饰", "801720", "620000", 0.12, 3.0, ("房屋建设Ⅱ", "装修装饰Ⅱ", "基础建设", "专业工程")),
    (
        "电力设备",
        "801730",
        "630000",
        0.23,
        7.0,
        ("电机Ⅱ", "光伏设备", "风电设备", "电池", "电网设备"),
    ),
    (
        "机械设备",
        "801890",
        "640000",
        0.28,
        9.0,
        ("通用设备", "专用设备", "轨交设备Ⅱ", "工程机械", "自动化设备"),
    ),
    (
        "国防军工",
        "801740",
        "650000",
        0.28,
        2.0,
        ("航天装备Ⅱ", "航空装备Ⅱ", "地面兵装Ⅱ", "军工电子Ⅱ"),
    ),
    ("计算机", "801750", "710000", 0.40, 6.0, ("计算机设备", "IT服务Ⅱ", "软件开发")),
    ("传媒", "801760", "720000", 0.33, 3.0, ("游戏Ⅱ", "广告营销", "影视院线", "数字媒体", "出版")),
    ("通信", "801770", "730000", 0.30, 2.5, ("通信服务", "通信设备")),
    ("煤炭", "801950", "740000", 0.30, 1.0, ("煤炭开采", "焦炭Ⅱ")),
    ("石油石化", "801960", "750000", 0.18, 1.0, ("油气开采Ⅱ", "油服工程", "炼化及贸易")),
    ("环保", "801970", "760000", 0.30, 2.0, ("环境治理", "环保设备Ⅱ")),
    ("美容护理", "801980", "770000", 0.50, 0.8, ("个护用品", "化妆品", "医疗美容")),
)

FINANCIAL_L2 = {
    "国有大型银行Ⅱ": 2,
    "股份制银行Ⅱ": 2,
    "城商行Ⅱ": 2,
    "农商行Ⅱ": 2,
    "保险Ⅱ": 3,
    "证券Ⅱ": 4,
}


@dataclass(frozen=True)
class Industry:
    """One class of the tree (any level)."""

    index_code: str  # e.g. 801780.SI
    name: str
    level: str  # L1, L2, L3
    industry_code: str  # e.g. 480000
    parent_code: str  # industry code of the parent, '0' for L1
    l1: int  # position of its L1 in `tree().l1`
    comp_type: int  # statement template of its members: 1 general, 2 bank, 3 insurer, 4 broker
    gross_margin: float  # typical gross margin of its members (general template)


@dataclass(frozen=True, eq=False)
class IndustryTree:
    """All classes by level; `l3` entries point to their L2 and L1."""

    l1: tuple[Industry, ...]
    l2: tuple[Industry, ...]
    l3: tuple[Industry, ...]
    l3_parent: tuple[int, ...]  # L2 position of each L3
    l1_weight: tuple[float, ...]  # share of general companies in each L1

    @property
    def classes(self) -> tuple[Industry, ...]:
        """Every class, L1 then L2 then L3."""
        return self.l1 + self.l2 + self.l3

    def l3_of(self, comp_type: int) -> tuple[int, ...]:
        """L3 positions whose members use the given template."""
        return self._by_template[comp_type]

    def l3_in_l1(self, l1: int) -> tuple[int, ...]:
        """L3 positions under one L1 whose members use the general template."""
        return self._general_by_l1[l1]

    @cached_property
    def _by_template(self) -> dict[int, tuple[int, ...]]:
        return {
            t: tuple(i for i, c in enumerate(self.l3) if c.comp_type == t) for t in (1, 2, 3, 4)
        }

    @cached_property
    def _general_by_l1(self) -> tuple[tuple[int, ...], ...]:
        return tuple(
            tuple(i for i, c in enumerate(self.l3) if c.l1 == k and c.comp_type == 1)
            for k in range(len(self.l1))
        )


def _l3_names(l2_name: str) -> tuple[str, ...]:
    base = l2_name.removesuffix("Ⅱ")
    return (f"{base}Ⅲ",) if len(base) <= 2 or l2_name.endswith("Ⅱ") else (f"{base}Ⅲ", f"其他{base}")


@cache
def tree() -> IndustryTree:
    """The SW2021 tree used by the simulated market."""
    l1s: list[Industry] = []
    l2s: list[Industry] = []
    l3s: list[Industry] = []
    parents: list[int] = []
    for i, (name, code, industry_code, margin, _, l2_names) in enumerate(_L1_TABLE):
        l1s.append(Industry(f"{code}.SI", name, "L1", industry_code, "0", i, 1, margin))
        for j, l2_name in enumerate(l2_names, start=1):
            l2_code = f"{int(code) + j}"
            l2_industry = f"{industry_code[:2]}{j:02d}00"
            comp_type = FINANCIAL_L2.get(l2_name, 1)
            l2s.append(
                Industry(
                    f"{l2_code}.SI", l2_name, "L2", l2_industry, industry_code, i, comp_type, margin
                )
            )
            for k, l3_name in enumerate(_l3_names(l2_name), start=1):
                l3s.append(
                    Industry(
                        f"85{l2_code[3:]}{k}.SI",
                        l3_name,
                        "L3",
                        f"{l2_industry[:4]}{k:02d}",
                        l2_industry,
                        i,
                        comp_type,
                        margin,
                    )
                )
                parents.append(len(l2s) - 1)
    weights = tuple(row[4] for row in _L1_TABLE)
    return IndustryTree(tuple(l1s), tuple(l2s), tuple(l3s), tuple(parents), weights)
