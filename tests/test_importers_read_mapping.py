"""Mapping profiles and the mapping of source chunks to draft registry fields (no database)."""

from __future__ import annotations

import os
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common.errors import InvalidInput
from importers.mapping import DraftChunk, map_chunk, normalise_text, parse_date
from importers.profiles import builtin_profiles, default_profile, load_profile, parse_profile
from importers.source import RowProblem, SourceChunk
from registry.messages import in_lang


def chunk(columns: dict[str, list[Any]], *, first_row: int = 1, crs: str | None = "EPSG:4547") -> SourceChunk:
    n = len(next(iter(columns.values())))
    xs = np.linspace(500000.0, 500100.0, n)
    ys = np.full(n, 2510000.0)
    return SourceChunk("t.shp", first_row, dict(columns), None, xs, ys, crs)


# --------------------------------------------------------------------------------------------------
# Dates


@pytest.mark.parametrize(
    "value",
    [
        "2019-03-02",
        "2019/3/2",
        "2019.03.02",
        "20190302",
        "2019年3月2日",
        "２０１９年３月２日",
        " 2019-3-2 ",
        "2019-03-02T10:20:30",
        "2019-03-02T10:20:30.5+08:00",
        "2019-03-02 10:20:30Z",
        "2019/3/2 0:00:00",
        20190302,
        43526,  # Excel serial day
        43526.75,  # Excel serial with a time of day
        date(2019, 3, 2),
        datetime(2019, 3, 2, 8, 0),
        np.datetime64("2019-03-02"),
    ],
)
def test_date_variants(value: Any) -> None:
    assert parse_date(value) == date(2019, 3, 2)


@pytest.mark.parametrize("value", [None, "", "  ", float("nan")])
def test_empty_dates(value: Any) -> None:
    assert parse_date(value) is None


@pytest.mark.parametrize(
    "value", ["2019-02-30", "2019年春", "03/02/2019", "2019-13-01", True, -5, "2019-03-02 上午"]
)
def test_bad_dates(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_date(value)


def test_normalise_text() -> None:
    assert normalise_text("  深圳　供电局  ") == "深圳 供电局"
    assert normalise_text("ＯＢＪ１２３") == "OBJ123"
    assert normalise_text(4403100101000001.0) == "4403100101000001"
    assert normalise_text(np.int64(7)) == "7"
    assert normalise_text(float("nan")) is None
    assert normalise_text("") is None


# --------------------------------------------------------------------------------------------------
# Profiles


def test_builtin_profiles_load() -> None:
    assert {"szcg", "example-utility"} <= set(builtin_profiles())
    szcg = default_profile()
    assert szcg.fields.code == ["OBJCODE", "ObjID"]
    assert szcg.fields.owner == ["DEPTNAME2", "DEPTCODE2"]
    assert szcg.values.in_use["作废"] is False
    utility = load_profile("example-utility")
    assert utility.crs == "EPSG:4547"
    assert utility.classes["电线杆"] == "0117"
    assert utility.fields.grid == ["BGID", "BGCODE"]  # inherited from szcg through "extends"
    assert utility.values.state["正常"] == "完好" and utility.values.state["坏"] == "破损"


def write(tmp_path: Path, text: str, name: str = "mine.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_profile_unknown_key_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "x"\n[fields]\nonwer = ["权属单位"]\n')
    with pytest.raises(InvalidInput, match=r"mine\.toml: fields\.onwer: unknown key"):
        load_profile(path)


def test_profile_errors_read_chinese_first(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "x"\n[fields]\nonwer = ["权属单位"]\n[values.state]\n"好" = "很好"\n')
    with pytest.raises(InvalidInput) as caught:
        load_profile(path)
    message = caught.value.message
    assert in_lang(message, "zh").startswith("映射方案 mine.toml：")
    assert "fields.onwer：未知的键" in message
    assert "'好' 对应 '很好'；状态只能是" in in_lang(message, "zh")
    english = in_lang(message, "en")
    assert english.startswith("mapping profile mine.toml: ") and "fields.onwer: unknown key" in english
    assert "'好' maps to '很好'; a state must be one of" in english and "未知" not in english


def test_profile_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "x"\n[fields\n')
    with pytest.raises(InvalidInput, match=r"mine\.toml: not valid TOML .*line 2"):
        load_profile(path)


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ('[classes]\n"电线杆" = "117"\n', "classes"),
        ('[values.state]\n"好" = "很好"\n', "values.state"),
        ('[values.in_use]\n"在用" = "maybe"\n', "values.in_use.在用"),
        ('[fixed]\nx = "1"\n', "fixed"),
        ('[fixed]\nownr = "A"\n', "fixed.ownr"),
        ('[attributes]\nkeep = "some"\n', "attributes.keep"),
        ("[fields]\ncode = 5\n", "fields.code"),
    ],
)
def test_profile_value_errors_name_the_key(tmp_path: Path, body: str, key: str) -> None:
    path = write(tmp_path, 'name = "x"\n' + body)
    with pytest.raises(InvalidInput) as caught:
        load_profile(path)
    assert f"mine.toml: {key}" in caught.value.message


def test_profile_missing_name_and_unknown_base(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="name: Field required"):
        parse_profile("[fields]\n", "p.toml")
    with pytest.raises(InvalidInput, match=r"p\.toml: extends must name a built-in profile"):
        parse_profile('name = "x"\nextends = "no-such-base"\n', "p.toml")


@pytest.mark.parametrize("form", ["{path}", "{relative}", "../{name}", "/etc/shadow", "/etc/passwd"])
def test_a_profile_cannot_extend_a_file_of_the_server(tmp_path: Path, form: str) -> None:
    # A file the server can read, shaped like a profile with a secret in it: never opened, never told.
    secret = tmp_path / "api-token.toml"
    secret.write_text('name = "t"\nsecret_key = "hunter2-0123456789"\n', "utf-8")
    base = form.format(path=secret, relative=os.path.relpath(secret), name=secret.name)
    with pytest.raises(InvalidInput) as caught:
        parse_profile(f'name = "x"\nextends = "{base}"\n', "upload.toml")
    message = caught.value.message
    assert "extends must name a built-in profile (" in message and "szcg" in message
    for leak in ("secret_key", "hunter2", str(tmp_path), "/etc", "line", "column"):
        assert leak not in message
    assert str(tmp_path) not in str(caught.value.details)


def test_profile_extends_merges_tables(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "mine"\nextends = "szcg"\n[fields]\nowner = ["权属单位"]\n')
    profile = load_profile(path)
    assert profile.fields.owner == ["权属单位"]
    assert profile.fields.code == ["OBJCODE", "ObjID"]
    assert profile.values.state["损坏"] == "破损"


# --------------------------------------------------------------------------------------------------
# Mapping


def test_szcg_mapping() -> None:
    source = chunk(
        {
            "objcode": ["4403100117000001", 4403100117000002.0, None],  # case-insensitive names
            "ObjName": ["立杆", " 路灯 ", "配电箱"],
            "DEPTNAME2": ["深圳供电局有限公司", None, ""],
            "DEPTCODE2": ["DC01", "DC02", "91440300192"],
            "DEPTNAME3": ["深圳市坪山区城市管理和综合执法局", None, None],
            "BGID": ["440310001001 01", None, None],
            "OBJSTATE": ["完好", "损坏", "不知道"],
            "OBJUPTODAT": ["在用", "作废", None],
            "ORDATE": ["2019/3/2", "2019年春", 20200101],
            "CHDATE": [None, None, "2021-05-06T10:00:00"],
            "PICTURE": ["p1.jpg", None, None],
            "NOTE_": ["　备注１", None, None],
        },
        first_row=10,
    )
    draft = map_chunk(source)
    assert isinstance(draft, DraftChunk)
    assert draft.rows.tolist() == [10, 11, 12]
    assert draft.code.tolist() == ["4403100117000001", "4403100117000002", None]
    assert draft.class_name.tolist() == ["立杆", "路灯", "配电箱"]
    assert draft.owner.tolist() == ["深圳供电局有限公司", "DC02", "91440300192"]
    assert draft.maintainer.tolist() == ["深圳市坪山区城市管理和综合执法局", None, None]
    assert draft.grid.tolist() == ["44031000100101", None, None]
    assert draft.state.tolist() == ["完好", "破损", None]
    assert draft.in_use.tolist() == [True, False, None]
    assert draft.installed.tolist() == [date(2019, 3, 2), None, date(2020, 1, 1)]
    assert draft.changed.tolist() == [None, None, date(2021, 5, 6)]
    assert draft.note.tolist() == ["备注1", None, None]
    assert draft.crs == "EPSG:4547"
    assert draft.xs is not None and draft.xs[0] == 500000.0
    assert [(p.row, p.field) for p in draft.problems] == [(11, "installed"), (12, "state")]
    assert draft.problems[0].value == "2019年春" and "ORDATE" in draft.problems[0].reason
    bags = draft.attribute_dicts()
    # DEPTCODE2 of row 10 lost to DEPTNAME2, so it stays in the bag; the unreadable date stays too.
    assert bags[0] == {"DEPTCODE2": "DC01", "PICTURE": "p1.jpg"}
    assert bags[1] == {"ORDATE": "2019年春"}
    assert bags[2] == {"OBJSTATE": "不知道"}
    assert draft.attributes_json()[0] == b'{"DEPTCODE2":"DC01","PICTURE":"p1.jpg"}'


def test_utility_profile_fixed_values_aliases_and_classes() -> None:
    profile = load_profile("example-utility")
    source = chunk(
        {
            "资产编号": ["ZC-1", "ZC-2", "ZC-3"],
            "设施类型": ["电线杆", "人井", "配电房"],
            "维护单位": ["深圳电信", "电信坪山分局", "某公司"],
            "DEPTNAME2": ["别人的", None, None],
            "OBJSTATE": [None, "坏", "完好"],
            "杆高": [8.5, None, float("nan")],
            "其他": ["dropped", "dropped", "dropped"],
        },
        crs=None,
    )
    draft = map_chunk(source, profile)
    assert draft.source_id.tolist() == ["ZC-1", "ZC-2", "ZC-3"]
    assert draft.class_code.tolist() == ["0117", "0107", None]
    assert draft.class_name.tolist() == ["电线杆", "人井", "配电房"]
    assert draft.owner.tolist() == ["中国电信股份有限公司深圳分公司"] * 3  # fixed wins over the file
    assert draft.maintainer.tolist() == [
        "中国电信股份有限公司深圳分公司",
        "中国电信股份有限公司深圳分公司",
        "某公司",
    ]
    assert draft.data_source.tolist() == ["实测"] * 3
    assert draft.state.tolist() == ["完好", "破损", "完好"]  # default fills the empty one
    assert draft.crs == "EPSG:4547"  # the profile's CRS for a file that declares none
    assert draft.attribute_dicts() == [
        {"资产编号": "ZC-1", "杆高": 8.5},
        {"资产编号": "ZC-2"},
        {"资产编号": "ZC-3"},
    ]
    assert draft.problems == []


def test_class_codes_regain_leading_zero() -> None:
    profile = parse_profile('name = "c"\n[fields]\nclass_code = ["BM"]\n[classes]\n"9001" = "0117"\n')
    draft = map_chunk(chunk({"BM": [117, "0118", "9001"]}), profile)
    assert draft.class_code.tolist() == ["0117", "0118", "0117"]


def test_coordinates_from_attribute_fields_when_no_geometry() -> None:
    source = SourceChunk(
        "t.geojson", 1, {"X": ["114°21'", "114.3"], "Y": ["22°42'", None]}, None, None, None, None
    )
    draft = map_chunk(source)
    assert draft.xs is not None and draft.ys is not None
    assert draft.xs[0] == pytest.approx(114.35)
    assert np.isnan(draft.ys[1])
    assert [(p.row, p.field) for p in draft.problems] == [(2, "Y")]
    assert draft.attribute_dicts() == [{}, {}]


def test_bad_fixed_value_is_a_profile_error() -> None:
    profile = parse_profile('name = "bad"\n[fixed]\nstate = "很好"\n', "bad.toml")
    with pytest.raises(InvalidInput, match=r"bad: fixed\.state: 未知的状态 '很好'.* / unknown state '很好'"):
        map_chunk(chunk({"A": [1]}), profile)


def test_records_view() -> None:
    draft = map_chunk(chunk({"OBJCODE": ["4403100117000001"], "OBJNAME": ["立杆"]}))
    (record,) = list(draft.records())
    assert record["row"] == 1 and record["code"] == "4403100117000001" and record["class_name"] == "立杆"
    assert record["geometry"].x == 500000.0


def test_null_geometries_fall_back_to_coordinate_fields() -> None:
    nan = float("nan")
    source = SourceChunk(
        "t.geojsonl",
        1,
        {"X": ["114.3", None], "Y": ["22.7", None]},
        None,
        np.array([nan, nan]),
        np.array([nan, nan]),
        None,
        [RowProblem(1, "geometry", "no geometry"), RowProblem(2, "geometry", "no geometry")],
    )
    draft = map_chunk(source)
    assert draft.xs is not None and draft.xs[0] == 114.3
    # Row 1 got coordinates from its fields; row 2 has none anywhere.
    assert [(p.row, p.field) for p in draft.problems] == [(2, "geometry"), (2, "X"), (2, "Y")]


@pytest.mark.parametrize("value", [2019, 2019.0, np.int64(2019), 1900, 2100, "2019"])
def test_a_bare_year_is_not_read_as_an_excel_serial(value: Any) -> None:
    with pytest.raises(ValueError, match="a year alone is not a date"):
        parse_date(value)


@pytest.mark.parametrize(("value", "day"), [(3654, date(1910, 1, 1)), (45000, date(2023, 3, 15))])
def test_excel_serials_start_above_ten_years(value: int, day: date) -> None:
    assert parse_date(value) == day


@pytest.mark.parametrize("value", [1, 1899, 2101, 3653])
def test_small_numbers_are_not_dates(value: int) -> None:
    with pytest.raises(ValueError, match="neither a yyyymmdd date nor an Excel date serial"):
        parse_date(value)
