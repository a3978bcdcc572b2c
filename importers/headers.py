"""Column names as utilities write them: which column of a ledger feeds which registry field.

A utility's own inventory says 编号, 设施类型, 权属单位, 养护单位, 经度(°) rather than the 数字城管
OBJCODE/DEPTNAME2. Headers are compared after normalisation (NFKC, lower case, no blanks, no
bracketed unit such as "(°)" or "（m）", no "_-·:" punctuation), first against the profile's own
names, then against a vocabulary of the usual Chinese, pinyin and English spellings, then by the
words a header is built of (…权属…单位 is an owner, …养护… a maintainer). This runs once per file,
on the header, never per row: the profile it returns is used for every chunk as before.

The result also says which columns were left out, and warns about a left-out column that looks like
a unit: an owner must never be dropped in silence.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from importers.profiles import TARGETS, Profile
from registry.messages import both

# Normalised header -> target. Each list holds spellings met in utilities' ledgers.
_VOCABULARY: dict[str, tuple[str, ...]] = {
    "code": ("智慧码", "标识码", "部件标识码", "城市部件标识码", "smartcode", "smart_code", "objcode"),
    "source_id": (
        "编号",
        "设施编号",
        "资产编号",
        "部件编号",
        "设备编号",
        "台账编号",
        "原编号",
        "序号编码",
        "部件编码",
        "设施编码",
        "设备编码",
        "资产编码",
        "id",
        "bh",
        "bianhao",
        "zcbh",
        "sbbh",
        "assetid",
        "asset_id",
        "sourceid",
    ),
    "class_code": ("部件代码", "小类代码", "类型代码", "部件类型代码", "classcode", "class_code", "lxdm"),
    "class_name": (
        "设施类型",
        "设施类别",
        "部件名称",
        "部件类型",
        "部件类别",
        "部件小类",
        "小类名称",
        "设备类型",
        "资产类型",
        "类型",
        "类别",
        "种类",
        "objname",
        "class",
        "classname",
        "type",
        "sslx",
        "bjlx",
    ),
    "owner": (
        "权属单位",
        "产权单位",
        "所属单位",
        "责任单位",
        "权属部门",
        "产权人",
        "权属人",
        "所有权单位",
        "资产单位",
        "owner",
        "qsdw",
        "cqdw",
        "ssdw",
        "zrdw",
    ),
    "maintainer": (
        "养护单位",
        "维护单位",
        "管养单位",
        "管护单位",
        "运维单位",
        "维修单位",
        "管理单位",
        "maintainer",
        "yhdw",
        "whdw",
        "gydw",
    ),
    "supervisor": ("主管部门", "主管单位", "行业主管部门", "监管部门", "监管单位", "supervisor", "zgbm"),
    "grid": ("单元网格", "网格", "网格编码", "网格编号", "所在网格", "grid", "bgid"),
    "state": ("状态", "设施状态", "部件状态", "完好状态", "完好情况", "现状", "state", "zt"),
    "in_use": ("是否在用", "使用状态", "在用状态", "inuse", "in_use"),
    "installed": (
        "建设日期",
        "安装日期",
        "建成日期",
        "建设时间",
        "安装时间",
        "建成时间",
        "投用日期",
        "投运日期",
        "启用日期",
        "竣工日期",
        "初始时间",
        "installed",
        "ordate",
        "jsrq",
    ),
    "changed": ("更新日期", "变更日期", "修改日期", "更新时间", "变更时间", "修改时间", "changed", "chdate"),
    "data_source": ("数据来源", "来源", "datasource", "data_source", "sjly"),
    "note": ("备注", "说明", "note", "bz"),
    "x": ("经度", "x", "x坐标", "坐标x", "lon", "lng", "long", "longitude", "东坐标", "横坐标", "point_x"),
    "y": ("纬度", "y", "y坐标", "坐标y", "lat", "latitude", "北坐标", "纵坐标", "point_y"),
}

# Words a header is built of, tried when no spelling above matches (…的权属单位, 路灯养护单位名称).
_WORD_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("maintainer", re.compile(r"(养护|维护|管养|管护|运维|维修)")),
    ("supervisor", re.compile(r"主管|监管")),
    ("owner", re.compile(r"(权属|产权|所属|责任|所有)(单位|部门|人|方)")),
    ("installed", re.compile(r"(建设|安装|建成|投用|投运|启用|竣工)(日期|时间|年月)")),
    ("changed", re.compile(r"(更新|变更|修改)(日期|时间)")),
    ("class_name", re.compile(r"(设施|部件|设备|资产)(类型|类别|名称)")),
    ("source_id", re.compile(r"(设施|部件|设备|资产|台账).*(编号|编码)$")),
)
# A header that looks like it names a unit: never left out without a warning.
_UNIT_LIKE = re.compile(r"(单位|部门|公司|局|权属|产权|所属|养护|维护|管养|主管|责任|owner|dept)")
_BRACKETED = re.compile(r"[(（\[【<《].*?[)）\]】>》]")
_PUNCTUATION = re.compile(r"[\s_\-·:：/、.。]+")
# Headers that hold the class in some ledgers and each asset's own name in others.
_NAME_HEADERS = frozenset({"名称", "设施名称", "部件名", "name", "mc"})
_SMART_CODE = re.compile(r"^\d{16}$")


def header_key(name: object) -> str:
    """A header as compared with known spellings: NFKC, lower case, no brackets, blanks or punctuation."""
    text = unicodedata.normalize("NFKC", str(name)).strip().lower()
    text = _BRACKETED.sub("", text)
    return _PUNCTUATION.sub("", text)


_KNOWN: dict[str, str] = {header_key(s): t for t, spellings in _VOCABULARY.items() for s in spellings}


@dataclass
class HeaderMapping:
    """Which column feeds which target, how each was recognised, and the columns left out."""

    columns: dict[str, str] = field(default_factory=dict)  # target -> column
    how: dict[str, str] = field(default_factory=dict)  # target -> "profile" | "known name" | "words"
    ignored: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON form for the import report (column -> field, in the file's order of targets)."""
        return {
            "mapped": [
                {"column": column, "field": target, "how": self.how[target]}
                for target, column in self.columns.items()
            ],
            "ignored": list(self.ignored),
        }


def _profile_match(columns: Sequence[str], candidates: Iterable[str]) -> str | None:
    """The first column the profile names (case-insensitive, blanks ignored, as importers.mapping)."""
    by_key: dict[str, str] = {}
    for actual in columns:
        by_key.setdefault(actual.strip().lower(), actual)
    for name in candidates:
        found = by_key.get(name.strip().lower())
        if found is not None:
            return found
    return None


def match_headers(
    columns: Sequence[str],
    profile: Profile,
    *,
    sample: Mapping[str, Sequence[Any]] | None = None,
    geometry_columns: Sequence[str] = (),
    is_class: Callable[[str], bool] | None = None,
) -> HeaderMapping:
    """Map a file's columns to targets: the profile's names first, then known spellings, then words.

    ``sample`` (a few values per column) lets a code-like column holding no 16-digit smart codes
    become the source id instead; ``geometry_columns`` were already taken by the reader (x/y, WKT);
    ``is_class`` tells a registered class name, so that a 名称 column holding 路灯, 井盖 … is read
    as the class while one holding each asset's own name (坪山大道1号灯) is not.
    """
    out = HeaderMapping()
    taken: set[str] = set()
    for target in TARGETS:
        fixed = profile.fixed.get(target)  # type: ignore[call-overload]
        if fixed is not None:
            continue
        found = _profile_match(columns, profile.fields.for_target(target))
        if found is not None and found not in taken:
            out.columns[target], out.how[target] = found, "profile"
            taken.add(found)
    for how, guess in (("known name", _KNOWN.get), ("words", _by_words)):
        for column in columns:
            if column in taken or column in geometry_columns:
                continue
            guessed = guess(header_key(column))
            if guessed is None or guessed in out.columns or guessed in profile.fixed:
                continue
            target = guessed
            if target == "code" and sample is not None and not _looks_like_codes(sample.get(column, ())):
                target = "source_id"  # the utility's own numbering under a 编码 header
                if target in out.columns:
                    continue
            out.columns[target], out.how[target] = column, how
            taken.add(column)
    if "class_name" not in out.columns and "class_code" not in out.columns and is_class and sample:
        for column in columns:
            if column in taken or header_key(column) not in _NAME_HEADERS:
                continue
            values = [str(v).strip() for v in sample.get(column, ()) if v is not None and str(v).strip()]
            if values and sum(map(is_class, values)) >= 0.8 * len(values):
                out.columns["class_name"], out.how["class_name"] = column, "values are class names"
                taken.add(column)
                break
    for target in ("x", "y"):
        out.columns.pop(target, None)  # the reader found the coordinates; listed below if it did
        out.how.pop(target, None)
    out.ignored = [c for c in columns if c not in taken and c not in geometry_columns]
    for column in out.ignored:
        if _UNIT_LIKE.search(header_key(column)):
            out.warnings.append(both("imp.unit_column", column=column))
    return out


def _by_words(key: str) -> str | None:
    for target, pattern in _WORD_RULES:
        if pattern.search(key):
            return target
    return None


def _looks_like_codes(values: Sequence[Any]) -> bool:
    present = [str(v).strip() for v in values if v is not None and str(v).strip()]
    if not present:
        return True  # nothing to judge by: keep what the header says
    return sum(bool(_SMART_CODE.match(v)) for v in present) >= len(present) / 2


def apply_mapping(profile: Profile, mapping: HeaderMapping, class_value: str | None = None) -> Profile:
    """The profile with each recognised column put first for its target (and ``--class`` fixed)."""
    fields = profile.fields.model_dump()
    for target, column in mapping.columns.items():
        fields[target] = [column, *(n for n in fields[target] if n != column)]
    fixed = dict(profile.fixed)
    if class_value:
        value = class_value.strip()
        if value.isdigit():
            fixed["class_code"] = value.zfill(4)
        else:
            fixed["class_name"] = value
            fields["class_code"] = []  # the file's class codes must not override the class given
    return profile.model_copy(update={"fields": type(profile.fields)(**fields), "fixed": fixed})


def suggest_profile_toml(name: str, mapping: HeaderMapping, x_field: str | None, y_field: str | None) -> str:
    """A starter mapping profile (TOML, as importers.profiles reads it) for a file's columns."""
    lines = [
        f"# {both('suggest.head', name=name)}",
        f"# {both('suggest.docs')}",
        f'name = "{_toml_text(_profile_name(name))}"',
        'extends = "szcg"',
        f'# crs = "gcj02"   # {both("suggest.crs")}',
        "",
        "[fields]",
    ]
    for target, column in mapping.columns.items():
        lines.append(f'{target} = ["{_toml_text(column)}"]   # {mapping.how[target]}')
    if x_field and y_field:
        lines.append(f'x = ["{_toml_text(x_field)}"]')
        lines.append(f'y = ["{_toml_text(y_field)}"]')
    if mapping.ignored:
        lines.append("")
        lines.append(f"# {both('suggest.ignored')}")
        lines.extend(f"#   {column}" for column in mapping.ignored)
    lines += [
        "",
        f"# {both('suggest.classes')}",
        "# [classes]",
        '# "路灯" = "0501"',
        "",
        f"# {both('suggest.units')}",
        "# [units]",
        '# "深圳供电局" = "深圳供电局有限公司"',
        "",
    ]
    return "\n".join(lines)


def _profile_name(file_name: str) -> str:
    stem = file_name.rsplit(".", 1)[0]
    return stem or "ledger"


def _toml_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def suggest_for_file(path: str | Path, *, layer: str | None = None, encoding: str | None = None) -> str:
    """A starter mapping profile for a file, from its header and first rows (no database needed)."""
    from importers.formats import open_source
    from importers.profiles import default_profile
    from importers.tabular import X_NAMES, Y_NAMES

    path = Path(path)
    profile = default_profile()
    xs = [*profile.fields.x, *(n for n in X_NAMES if n not in profile.fields.x)]
    ys = [*profile.fields.y, *(n for n in Y_NAMES if n not in profile.fields.y)]
    info, chunks = open_source(path, layer=layer, encoding=encoding, x_field=xs, y_field=ys, chunk_size=200)
    try:
        first = next(iter(chunks), None)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    columns = list(first.columns) if first is not None else list(info.fields)
    sample = {str(k): list(v) for k, v in first.columns.items()} if first is not None else None
    geometry = [c for c in (info.x_field, info.y_field) if c]
    found = match_headers(columns, profile, sample=sample, geometry_columns=geometry)
    return suggest_profile_toml(path.name, found, info.x_field, info.y_field)
