"""The fast paths of the GeoJSON reader and the mapping give exactly what the plain paths give.

A FeatureCollection batch of plain points is parsed by Arrow's JSON reader, every other batch by
orjson. Each file below is read twice, once with the Arrow path switched off, and the chunks must
match value for value and type for type (1 and 1.0 differ). No database is needed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.errors import InvalidInput
from importers import geojson_stream, mapping
from importers.formats import open_source
from importers.mapping import map_chunk
from importers.source import SourceChunk

DATES = ["2019-01-01", "2019/3/2", "20190302", "2019年3月2日", "", "not a date", "2019-02-30"]


def point_feature(i: int, **props: Any) -> dict[str, Any]:
    return {
        "type": "Feature",
        "properties": props,
        "geometry": {"type": "Point", "coordinates": [114.3 + i / 1000, 22.7 + i / 1000]},
    }


def szcg_features(n: int) -> list[dict[str, Any]]:
    """Features shaped like a 数字城管 export: repeated Chinese text, codes, dates, a few blanks."""
    return [
        point_feature(
            i,
            OBJCODE="" if i % 3 else f"4403100118{i:07d}",
            OBJNAME=["路灯", "上水井盖", "污水井盖", " 雨水井盖 "][i % 4],
            DEPTNAME1="深圳市坪山区城市管理和综合执法局",
            DEPTNAME2=["深圳供电局有限公司", "深圳市水务集团有限公司", "", None][i % 4],
            DEPTNAME3="ＡＢＣ　公司" if i % 7 == 0 else "坪山区路灯管理所",
            BGID=f"4403100001{i:04d}" if i % 5 else f"bg-{i}",
            OBJSTATE=["完好", "破损", "正常", "坏了"][i % 4],
            OBJUPTODAT=["在用", "作废", "停用"][i % 3],
            ORDATE=DATES[i % len(DATES)],
            DATASOURCE="实测",
        )
        for i in range(n)
    ]


def write(path: Path, features: list[Any], *, indent: int | None = None, text: str | None = None) -> Path:
    if text is None:
        text = json.dumps(
            {"type": "FeatureCollection", "features": features}, ensure_ascii=False, indent=indent
        )
    path.write_text(text, encoding="utf-8")
    return path


def arrow_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plain reader: no read-ahead, no background Arrow read, orjson for every batch."""
    plain = partial(geojson_stream.iter_collection_texts, arrow=False)
    monkeypatch.setattr("importers.vector.iter_collection_texts", plain)
    monkeypatch.setattr(geojson_stream, "_arrow_features", lambda text: None)


def arrow_spy(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Record, per parse unit, whether the Arrow path took it."""
    taken: list[bool] = []
    real = geojson_stream._arrow_features

    def spy(text: Any) -> Any:
        parsed = real(text)
        taken.append(parsed is not None)
        return parsed

    monkeypatch.setattr(geojson_stream, "_arrow_features", spy)
    return taken


def snapshot_chunk(chunk: SourceChunk) -> tuple[Any, ...]:
    """Everything a chunk says, with each value's type visible (repr tells 1 from 1.0 and '1')."""

    def floats(values: Any) -> Any:
        return None if values is None else [repr(v) for v in np.asarray(values).tolist()]

    return (
        chunk.file,
        chunk.first_row,
        len(chunk),
        list(chunk.columns),
        {name: (type(values).__name__, [repr(v) for v in values]) for name, values in chunk.columns.items()},
        None if chunk.geometry is None else [None if g is None else g.wkt for g in chunk.geometry],
        floats(chunk.xs),
        floats(chunk.ys),
        chunk.declared_crs,
        chunk.problems,
        None if chunk.row_numbers is None else chunk.row_numbers.tolist(),
    )


def read(path: Path, chunk_size: int) -> tuple[Any, ...]:
    """SourceInfo plus snapshots of all chunks, or the error message."""
    try:
        info, chunks = open_source(path, chunk_size=chunk_size)
        return info, [snapshot_chunk(c) for c in chunks]
    except InvalidInput as exc:
        return ("error", str(exc))


def both_ways(
    path: Path, monkeypatch: pytest.MonkeyPatch, *, unit: int = 5, chunk_size: int = 7
) -> tuple[tuple[Any, ...], list[bool]]:
    """Read ``path`` with and without the Arrow path; assert equality; return the result and the spy."""
    monkeypatch.setattr("importers.vector.PARSE_UNIT", unit)
    with monkeypatch.context() as m:
        taken = arrow_spy(m)
        fast = read(path, chunk_size)
    with monkeypatch.context() as m:
        arrow_off(m)
        plain = read(path, chunk_size)
    assert fast == plain
    return fast, taken


# --------------------------------------------------------------------------------------------------
# Reader: Arrow path against orjson path


def test_szcg_points_take_the_arrow_path_and_match(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "p.geojson", szcg_features(60))
    result, taken = both_ways(path, monkeypatch, unit=10, chunk_size=25)
    assert taken and all(taken)
    info, chunks = result
    assert info.fields[:3] == ("OBJCODE", "OBJNAME", "DEPTNAME1")
    assert [c[1] for c in chunks] == [1, 11, 36]  # the first chunk is one parse unit


def test_mapping_matches_on_both_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "p.geojson", szcg_features(40))
    monkeypatch.setattr("importers.vector.PARSE_UNIT", 8)

    def drafts() -> list[Any]:
        _, chunks = open_source(path, chunk_size=15)
        return [draft_snapshot(map_chunk(chunk)) for chunk in chunks]

    with monkeypatch.context() as m:
        taken = arrow_spy(m)
        fast = drafts()
    with monkeypatch.context() as m:
        arrow_off(m)
        plain = drafts()
    assert all(taken) and fast == plain


def draft_snapshot(draft: mapping.DraftChunk) -> tuple[Any, ...]:
    fields = (*mapping.TEXT_TARGETS, "state", "in_use", *mapping.DATE_TARGETS)
    return (
        draft.rows.tolist(),
        {name: [repr(v) for v in getattr(draft, name).tolist()] for name in fields},
        {name: [repr(v) for v in values.tolist()] for name, values in draft.attributes.items()},
        None if draft.xs is None else draft.xs.tolist(),
        None if draft.ys is None else draft.ys.tolist(),
        draft.crs,
        draft.problems,
    )


PROPERTY_CASES: dict[str, list[Any]] = {
    "ints and bools": [1, -0, 2**62, True, False, None],
    "fractions": [1.5, -0.25, 1e-7, 3.14159265358979, None],
    "whole floats": [1.0, 2.5, 1e20, None],  # 1.0 must stay a float: orjson decides
    "ints then a float": [1, 2, 3.5],
    "big ints": [2**63, 2**64 - 1, 1],
    "text and numbers": ["1", 1, "x"],
    "nested": [{"a": 1}, [1, 2], "x"],
    "only nulls": [None, None, None],
    "timestamps": ["2019-01-01", "2019-01-01T10:00:00", "2019-01-01 10:00:00Z"],
    "escapes": ['q"uote', "back\\slash", "tab\tnl\n", "\u0000", "😀", "\ud7ff", "/"],
}


@pytest.mark.parametrize("case", list(PROPERTY_CASES))
def test_property_value_kinds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    values = PROPERTY_CASES[case]
    features = [point_feature(i, V=values[i % len(values)], N=i) for i in range(12)]
    both_ways(write(tmp_path / "p.geojson", features), monkeypatch)


def test_ascii_escaped_text_and_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    features = [
        point_feature(i, 名称="井盖" + "😀" * (i % 2), **{"": "empty key", "a/b": i}) for i in range(9)
    ]
    path = tmp_path / "p.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=True))
    _, taken = both_ways(path, monkeypatch)
    assert all(taken)


def test_keys_appear_late_and_in_any_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    features = []
    for i in range(40):
        props: dict[str, Any] = {"A": i}
        if i >= 12:
            props = {"C": None, "B": "b", **props} if i % 2 else {"B": "b", "D": "d", **props}
        if i == 33:
            props = {"Z": "z", "Y": "y", "X": "x"}
        features.append(point_feature(i, **props))
    (_, chunks), taken = both_ways(write(tmp_path / "p.geojson", features), monkeypatch)
    assert all(taken)
    assert chunks[-1][3] == ["A", "B", "D", "C", "Z", "Y", "X"]


def test_new_keys_across_arrow_blocks_keep_first_seen_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large unit (beyond Arrow's default block size) with new keys far in: order as orjson sees it."""
    features = [point_feature(i, A="x" * 200, N=i) for i in range(12_000)]
    features[5_000]["properties"].update(LATE1="1", LATE2=2)
    features[9_000]["properties"].update(LATE0="0")
    features[11_000]["properties"] = {"LATE4": "4", "LATE3": "3"}
    (_, chunks), taken = both_ways(
        write(tmp_path / "p.geojson", features), monkeypatch, unit=12_000, chunk_size=12_000
    )
    assert all(taken)
    assert chunks[0][3] == ["A", "N", "LATE1", "LATE2", "LATE0", "LATE4", "LATE3"]


def test_new_keys_from_a_block_that_finishes_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With several blocks, Arrow's threads register a new field when its block is done, so a quick
    second block (long texts) would list its keys before the slow first block's (many short rows)."""
    slow = [point_feature(i, A=i % 10, S="s") for i in range(6_000)]  # about one Arrow block
    quick = [point_feature(i, B="b" * 4_000) for i in range(200)] + [
        point_feature(i, C="c" * 4_000) for i in range(200)
    ]
    features = slow + quick
    (info, _), taken = both_ways(
        write(tmp_path / "p.geojson", features), monkeypatch, unit=len(features), chunk_size=len(features)
    )
    assert all(taken)
    assert info.fields == ("A", "S", "B", "C")


def test_a_field_that_changes_type_between_units(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    features = [point_feature(i, V="text" if i < 10 else i, W="2019-01-01") for i in range(40)]
    _, taken = both_ways(write(tmp_path / "p.geojson", features), monkeypatch)
    assert taken[:2] == [True, True] and not taken[2]
    assert any(taken[3:])  # back on the fast path once the orjson batches are past


GEOMETRY_CASES: dict[str, list[Any]] = {
    "null geometry": [None],
    "missing coordinates": [{"type": "Point"}],
    "empty coordinates": [{"type": "Point", "coordinates": []}],
    "one coordinate": [{"type": "Point", "coordinates": [1]}],
    "3-D": [{"type": "Point", "coordinates": [1, 2, 3]}],
    "integers": [{"type": "Point", "coordinates": [114, 22]}],
    "text coordinates": [{"type": "Point", "coordinates": ["114.3", "22.7"]}],
    "null coordinate": [{"type": "Point", "coordinates": [None, 22.7]}],
    "line": [{"type": "LineString", "coordinates": [[0, 0], [1, 1]]}],
    "multipoint": [{"type": "MultiPoint", "coordinates": [[0, 0], [1, 1]]}],
    "collection": [{"type": "GeometryCollection", "geometries": [{"type": "Point", "coordinates": [1, 2]}]}],
    "bbox and crs": [{"type": "Point", "coordinates": [1.5, 2.5], "bbox": [1.5, 2.5, 1.5, 2.5]}],
    "geometry as text": ["POINT (1 2)"],
    "flat polygon": [{"type": "Polygon", "coordinates": [1, 2]}],
    "unknown type": [{"type": "Pointy", "coordinates": [1, 2]}],
}


@pytest.mark.parametrize("case", list(GEOMETRY_CASES))
def test_geometry_kinds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    features: list[Any] = [point_feature(i, N=i) for i in range(14)]
    for k, geometry in enumerate(GEOMETRY_CASES[case]):
        features[3 + k]["geometry"] = geometry
    both_ways(write(tmp_path / "p.geojson", features), monkeypatch)


@pytest.mark.parametrize("case", ["line", "multipoint", "collection", "flat polygon", "unknown type"])
def test_geometry_kinds_behind_a_point_named_property(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    """The quick "every feature says Point" check passes; Arrow's own check must still refuse."""
    features: list[Any] = [point_feature(i, KIND="Point") for i in range(14)]
    features[3]["geometry"] = GEOMETRY_CASES[case][0]
    both_ways(write(tmp_path / "p.geojson", features), monkeypatch)


RECORD_CASES: dict[str, Any] = {
    "no properties": lambda f: f.pop("properties"),
    "null properties": lambda f: f.update(properties=None),
    "empty properties": lambda f: f.update(properties={}),
    "text properties": lambda f: f.update(properties="x"),
    "no geometry member": lambda f: f.pop("geometry"),
    "bare geometry": lambda f: (f.clear(), f.update(type="Point", coordinates=[1, 2])),
    "extra members": lambda f: f.update(id=7, bbox=[0, 0, 1, 1], title="t"),
    "mixed ids": lambda f: f.update(id="seven"),
}


@pytest.mark.parametrize("case", list(RECORD_CASES))
def test_irregular_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    features: list[Any] = [point_feature(i, N=i) for i in range(14)]
    for i in (2, 3):
        features[i]["id"] = i
    RECORD_CASES[case](features[3])
    both_ways(write(tmp_path / "p.geojson", features), monkeypatch)


def test_all_properties_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    features = [point_feature(i) for i in range(9)]
    both_ways(write(tmp_path / "p.geojson", features), monkeypatch)


@pytest.mark.parametrize("indent", [None, 2])
def test_layout_pretty_printed_and_crlf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, indent: int | None
) -> None:
    features = szcg_features(20)
    text = json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False, indent=indent)
    for name, content in (
        ("lf", text),
        ("crlf", text.replace("\n", "\r\n")),
        ("tabs", text.replace(", ", ",\t")),
    ):
        path = tmp_path / f"{name}.geojson"
        path.write_bytes(content.encode())
        _, taken = both_ways(path, monkeypatch)
        assert all(taken)


def feature_text(properties: str, *, before: str = "", coordinates: str = "[1,2]") -> str:
    """One feature written by hand, to hold what json.dumps would never write."""
    geometry = '{"type":"Point","coordinates":' + coordinates + "}"
    return '{"type":"Feature",' + before + '"properties":' + properties + ',"geometry":' + geometry + "}"


ARRAY_TEXT_CASES = {
    "NaN": feature_text('{"V":NaN}'),
    "Infinity coordinate": feature_text("{}", coordinates="[Infinity,2]"),
    "Inf": feature_text('{"V":Inf}'),
    "overflow": feature_text('{"V":1.5e999}'),
    "overflow id": feature_text("{}", before='"id":9.9e999,'),
    "rounds to infinity": feature_text('{"V":3.860325523161714e310}'),  # Arrow: inf, orjson: error
    "id rounds to infinity": feature_text("{}", before='"id":5.773527830516938e308,'),
    "duplicate key": feature_text('{"V":1,"V":2}'),
    "control character": feature_text('{"V":"a\tb"}'),  # a raw tab inside the string
    "lone surrogate": feature_text('{"V":"\\ud800"}'),
    "trailing comma": feature_text('{"V":1,}'),
    "missing comma": '{"type":"Feature","properties":{"V":1}}{"type":"Feature","properties":{"V":1}}',
    "double comma": '{"type":"Feature","properties":{},"geometry":null},,',
    "number element": "5",
    "array element": "[1, 2]",
    "string element": '"Feature"',
}


@pytest.mark.parametrize("case", list(ARRAY_TEXT_CASES))
def test_odd_array_contents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    good = [json.dumps(point_feature(i, N=i, T="t")) for i in range(12)]
    good[4] = ARRAY_TEXT_CASES[case]
    text = '{"type":"FeatureCollection","features":[' + ",\n".join(good) + "]}"
    both_ways(write(tmp_path / "p.geojson", [], text=text), monkeypatch)


@pytest.mark.parametrize("cut", [30, 2_000, 20_000])
def test_truncated_file_yields_the_same_chunks_before_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cut: int
) -> None:
    """Reading ahead must not hold back the chunks a truncated file delivers before the error."""
    data = json.dumps({"type": "FeatureCollection", "features": szcg_features(200)}, ensure_ascii=False)
    path = tmp_path / "cut.geojson"
    path.write_bytes(data.encode()[:-cut])
    monkeypatch.setattr("importers.vector.PARSE_UNIT", 10)

    def until_error() -> tuple[list[Any], str]:
        got: list[Any] = []
        try:
            _, chunks = open_source(path, chunk_size=10)
            for chunk in chunks:
                got.append(snapshot_chunk(chunk))
        except InvalidInput as exc:
            return got, str(exc)
        return got, "no error"

    fast = until_error()
    with monkeypatch.context() as m:
        arrow_off(m)
        plain = until_error()
    assert fast == plain and "truncated" in fast[1]


def test_invalid_utf8(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    features = [point_feature(i, T="井盖") for i in range(12)]
    data = json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False).encode()
    path = tmp_path / "p.geojson"
    path.write_bytes(data.replace("井".encode(), b"\xff\xfe\xfd", 3))
    both_ways(path, monkeypatch)


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.sampled_from(["2019-01-01", "2020-02-29T08:00:00", "完好", "", " "]),
)
json_values = st.one_of(
    json_scalars,
    st.lists(json_scalars, max_size=2),
    st.dictionaries(st.text(max_size=2), json_scalars, max_size=2),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.dictionaries(st.sampled_from(["A", "B", "c", "名", "E"]), json_values, max_size=4),
        min_size=1,
        max_size=20,
    ),
    column_kind=st.sampled_from(["mixed", "uniform"]),
)
def test_random_properties(
    tmp_path_factory: pytest.TempPathFactory, rows: list[dict[str, Any]], column_kind: str
) -> None:
    if column_kind == "uniform":  # one type per key, so the Arrow path gets its chance
        rows = [{k: (v if isinstance(v, str) else str(v)) for k, v in row.items()} for row in rows]
    path = write(
        tmp_path_factory.mktemp("h") / "p.geojson", [point_feature(i, **p) for i, p in enumerate(rows)]
    )
    with pytest.MonkeyPatch.context() as monkeypatch:
        both_ways(path, monkeypatch, unit=4, chunk_size=6)


# --------------------------------------------------------------------------------------------------
# Mapping: column-wise shortcuts against one call per value


def per_value(
    function: Callable[[Any], Any], values: list[Any]
) -> tuple[list[Any], list[tuple[int, str, Any]]]:
    out: list[Any] = []
    errors: list[tuple[int, str, Any]] = []
    for i, value in enumerate(values):
        try:
            out.append(function(value))
        except ValueError as exc:
            out.append(None)
            errors.append((i, str(exc), value))
    return out, errors


CODE_VALUES = [
    "4403100118000001",
    "abc123",
    "ab c",
    " x ",
    "",
    None,
    "ＡＢ１２",
    "ß",
    "ǅ",
    "ﬁ",
    "ı",
    "٣",
    "²",
    "x\u3000y",
    "a-b",
    4403100118000001,
    4403100118000001.0,
    1.5,
    math.nan,
    2.0**60,
    True,
    np.int64(7),
]


@pytest.mark.parametrize(
    "function",
    [mapping.normalise_code, mapping.normalise_class_code, mapping._code_function, mapping.normalise_text],
)
def test_memo_map_matches_one_call_per_value(function: Callable[[Any], Any]) -> None:
    rng = np.random.default_rng(7)
    for _ in range(30):
        values = [CODE_VALUES[i] for i in rng.integers(0, len(CODE_VALUES), size=int(rng.integers(1, 40)))]
        for column in (values, np.array(values, dtype=object)):
            got, errors = mapping._memo_map(function, column)
            want, want_errors = per_value(function, values)
            assert [repr(v) for v in got] == [repr(v) for v in want]
            assert errors == want_errors


ODD_CODES = ["", " ", "a b", "e\t5", "ｃ3", "İ", "ß", "ǆ", "٣", "²", "a\x00b", "\x00", "a-1", None, 7, 7.0]


@pytest.mark.parametrize("odd", [None, *range(len(ODD_CODES))])
def test_memo_map_on_text_codes(odd: int | None) -> None:
    """A column of plain codes takes the whole-column shortcut; one odd cell must not fool it."""
    values: list[Any] = [f"code{i}x" for i in range(300)] + ["abc"] * 50
    if odd is not None:
        values[150] = ODD_CODES[odd]
    for function in (mapping.normalise_code, mapping.normalise_class_code, mapping._code_function):
        got, errors = mapping._memo_map(function, values)
        want, want_errors = per_value(function, values)
        assert [repr(v) for v in got] == [repr(v) for v in want] and errors == want_errors


def test_memo_map_unhashable_cells() -> None:
    values: list[Any] = [{"a": 1}, [1], "x", None]
    got, errors = mapping._memo_map(mapping.normalise_text, values)
    assert (got, errors) == per_value(mapping.normalise_text, values)


def test_points_are_only_arrays(tmp_path: Path) -> None:
    """Point batches never build shapely objects; shapes() still gives the same points."""
    path = write(tmp_path / "p.geojson", szcg_features(5))
    _, chunks = open_source(path)
    chunk = next(iter(chunks))
    assert chunk.geometry is None and chunk.xs is not None and chunk.ys is not None
    assert shapely.equals(chunk.shapes()[0], shapely.Point(114.3, 22.7))
