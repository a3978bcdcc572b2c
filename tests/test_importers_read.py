"""Reading layer of the importers: formats, encodings, chunking and row problems (no database).

Every fixture file is generated in tmp_path with pyogrio, csv or openpyxl: nothing binary is committed.
"""

from __future__ import annotations

import csv
import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio.raw
import pytest
import shapely
from openpyxl import Workbook

from common.errors import InvalidInput
from importers.formats import open_source
from importers.geojson_stream import find_features_array, iter_collection_batches
from importers.source import SourceChunk, iter_records

NAMES = ["上水井盖", "电线杆", "深圳供电局（坪山）"]
OWNERS = ["深圳市水务集团有限公司", "中国电信深圳分公司", "深圳供电局有限公司"]
LONS = [114.35, 114.36, 114.37]
LATS = [22.70, 22.71, 22.72]


def write_shapefile(
    path: Path,
    *,
    encoding: str | None,
    crs: str | None = "EPSG:4326",
    names: list[str] = NAMES,
    geoms: list[Any] | None = None,
    name_field: str = "OBJNAME",
) -> Path:
    """A point shapefile with an OBJNAME/DEPTNAME2 text column and an integer column."""
    n = len(names)
    if geoms is None:
        geoms = list(shapely.points(LONS[:n], LATS[:n]))
    wkb = np.array([None if g is None else shapely.to_wkb(g) for g in geoms], dtype=object)
    pyogrio.raw.write(
        path,
        geometry=wkb,
        field_data=[
            np.array(names, dtype=object),
            np.array((OWNERS * n)[:n], dtype=object),
            np.arange(1, n + 1, dtype=np.int64),
        ],
        fields=[name_field, "DEPTNAME2", "N"],
        geometry_type="Point",
        crs=crs,
        encoding=encoding,
        driver="ESRI Shapefile",
    )
    return path


def read_all(path: Path, **options: Any) -> tuple[Any, list[SourceChunk]]:
    info, chunks = open_source(path, **options)
    return info, list(chunks)


def column(chunks: list[SourceChunk], name: str) -> list[Any]:
    out: list[Any] = []
    for chunk in chunks:
        values = chunk.columns[name]
        out.extend(values.tolist() if isinstance(values, np.ndarray) else values)
    return out


# --------------------------------------------------------------------------------------------------
# Shapefile encodings


def test_gbk_shapefile_without_cpg_is_detected(tmp_path: Path) -> None:
    shp = write_shapefile(tmp_path / "poles.shp", encoding="GBK", name_field="名称")
    (tmp_path / "poles.cpg").unlink()
    info, chunks = read_all(shp)
    assert info.encoding == "GBK"
    assert info.encoding_origin == "detected"
    assert "名称" in info.fields  # field names are decoded with the same encoding
    assert column(chunks, "名称") == NAMES
    assert column(chunks, "DEPTNAME2") == OWNERS


def test_gbk_shapefile_with_cpg_is_declared(tmp_path: Path) -> None:
    shp = write_shapefile(tmp_path / "poles.shp", encoding="GBK")
    assert (tmp_path / "poles.cpg").read_text().strip() in {"GBK", "936", "CP936"}
    info, chunks = read_all(shp)
    assert (info.encoding, info.encoding_origin) == ("GBK", "declared")
    assert column(chunks, "OBJNAME") == NAMES


def test_cpg_code_page_number_is_understood(tmp_path: Path) -> None:
    shp = write_shapefile(tmp_path / "poles.shp", encoding="GBK")
    (tmp_path / "poles.cpg").write_text("936")
    info, chunks = read_all(shp)
    assert (info.encoding, info.encoding_origin) == ("GBK", "declared")
    assert column(chunks, "OBJNAME") == NAMES


def test_utf8_shapefile_without_cpg_is_detected(tmp_path: Path) -> None:
    shp = write_shapefile(tmp_path / "poles.shp", encoding="UTF-8")
    (tmp_path / "poles.cpg").unlink()
    info, chunks = read_all(shp)
    assert (info.encoding, info.encoding_origin) == ("UTF-8", "detected")
    assert column(chunks, "OBJNAME") == NAMES


def test_encoding_argument_wins(tmp_path: Path) -> None:
    shp = write_shapefile(tmp_path / "poles.shp", encoding="GBK")
    (tmp_path / "poles.cpg").write_text("UTF-8")  # a wrong .cpg, overridden by the caller
    info, chunks = read_all(shp, encoding="cp936")
    assert (info.encoding, info.encoding_origin) == ("GBK", "argument")
    assert column(chunks, "OBJNAME") == NAMES


def test_every_dbf_encoding_note_is_chinese_first(tmp_path: Path) -> None:
    declared = write_shapefile(tmp_path / "declared.shp", encoding="GBK")
    (tmp_path / "declared.cpg").write_text("GBK")
    guessed = write_shapefile(tmp_path / "guessed.shp", encoding="GBK")
    (tmp_path / "guessed.cpg").write_text("ANSI 1234")  # a code page no one knows: detected instead
    stale = write_shapefile(tmp_path / "stale.shp", encoding="UTF-8")
    (tmp_path / "stale.cpg").unlink()
    with (tmp_path / "stale.dbf").open("r+b") as dbf:  # a GBK language driver byte on UTF-8 data
        dbf.seek(29)
        dbf.write(bytes([0x4D]))
    expected = {
        declared: ("GBK", "编码 GBK：.cpg 文件声明为 'GBK'", "encoding GBK: .cpg file says 'GBK'"),
        guessed: (
            "GBK",
            "编码 GBK：.cpg 文件中的编码 'ANSI 1234' 无法识别；文本不是 UTF-8，但可按 GBK 解码",
            "encoding GBK: .cpg value 'ANSI 1234' is unknown; text is not UTF-8 but decodes as GBK",
        ),
        stale: (
            "UTF-8",
            "编码 UTF-8：DBF 文件头的语言驱动 0x4D 与数据不符；文本可按 UTF-8 解码",
            "encoding UTF-8: DBF language driver 0x4D does not fit the data; text decodes as UTF-8",
        ),
    }
    for shp, (encoding, zh, en) in expected.items():
        info, chunks = read_all(shp)
        assert info.encoding == encoding and column(chunks, "OBJNAME") == NAMES
        assert info.notes[0] == f"{zh} / {en}", shp.name


def test_an_unknown_encoding_is_refused_in_chinese_first(tmp_path: Path) -> None:
    shp = write_shapefile(tmp_path / "poles.shp", encoding="GBK")
    with pytest.raises(InvalidInput) as refused:
        read_all(shp, encoding="klingon")
    assert refused.value.message == "未知的文字编码 'klingon' / unknown encoding 'klingon'"


@pytest.mark.filterwarnings("ignore:.crs. was not provided")
def test_shapefile_without_prj_has_no_declared_crs(tmp_path: Path) -> None:
    shp = write_shapefile(tmp_path / "poles.shp", encoding="UTF-8", crs=None)
    assert not (tmp_path / "poles.prj").exists()
    info, chunks = read_all(shp)
    assert info.declared_crs is None
    assert all(chunk.declared_crs is None for chunk in chunks)
    assert any(".prj" in note for note in info.notes)


def test_shapefile_with_prj_declares_its_crs(tmp_path: Path) -> None:
    shp = write_shapefile(tmp_path / "poles.shp", encoding="UTF-8", crs="EPSG:4547")
    info, chunks = read_all(shp)
    assert info.declared_crs == "EPSG:4547"
    assert chunks[0].declared_crs == "EPSG:4547"


def test_shapefile_points_come_as_xy_arrays(tmp_path: Path) -> None:
    geoms = [shapely.Point(114.35, 22.7), None, shapely.Point(114.37, 22.72)]
    shp = write_shapefile(tmp_path / "poles.shp", encoding="UTF-8", geoms=geoms)
    info, chunks = read_all(shp)
    assert info.feature_count == 3
    chunk = chunks[0]
    assert chunk.xs is not None and chunk.ys is not None
    assert chunk.xs[0] == pytest.approx(114.35) and math.isnan(chunk.xs[1])
    assert [(p.row, p.field, p.reason) for p in chunk.problems] == [
        (2, "geometry", "没有几何（坐标） / no geometry")
    ]
    shapes = chunk.shapes()
    assert shapes[1] is None and shapes[2].equals(shapely.Point(114.37, 22.72))


def test_line_shapefile_gives_shapely_geometry(tmp_path: Path) -> None:
    lines = [
        shapely.LineString([(114.3, 22.7), (114.31, 22.71)]),
        shapely.LineString([(114.4, 22.7), (114.41, 22.7)]),
    ]
    path = tmp_path / "cables.shp"
    pyogrio.raw.write(
        path,
        geometry=np.array(shapely.to_wkb(lines), dtype=object),
        field_data=[np.array(["架空线缆", "架空线缆"], dtype=object)],
        fields=["OBJNAME"],
        geometry_type="LineString",
        crs="EPSG:4326",
        encoding="UTF-8",
        driver="ESRI Shapefile",
    )
    info, chunks = read_all(path)
    assert info.geometry_type == "LineString"
    assert chunks[0].xs is None
    assert chunks[0].geometry is not None and chunks[0].geometry[1].equals(lines[1])


def test_shapefile_chunks_number_features_from_one(tmp_path: Path) -> None:
    n = 7
    names = [f"杆{i}" for i in range(n)]
    geoms = list(shapely.points(np.linspace(114.3, 114.4, n), np.full(n, 22.7)))
    shp = write_shapefile(tmp_path / "poles.shp", encoding="UTF-8", names=names, geoms=geoms)
    _, chunks = read_all(shp, chunk_size=3)
    assert [(c.first_row, len(c)) for c in chunks] == [(1, 3), (4, 3), (7, 1)]
    assert [r["_row"] for c in chunks for r in iter_records(c)] == list(range(1, n + 1))
    assert column(chunks, "OBJNAME") == names


def test_missing_dbf_names_the_file(tmp_path: Path) -> None:
    shp = write_shapefile(tmp_path / "roads.shp", encoding="UTF-8")
    (tmp_path / "roads.dbf").unlink()
    with pytest.raises(InvalidInput, match=r"missing \.dbf beside roads\.shp"):
        open_source(shp)


def test_zipped_shapefile(tmp_path: Path) -> None:
    write_shapefile(tmp_path / "poles.shp", encoding="GBK")
    (tmp_path / "poles.cpg").unlink()
    archive = tmp_path / "delivery.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for part in tmp_path.glob("poles.*"):
            zf.write(part, f"data/{part.name}")
    info, chunks = read_all(archive)
    assert info.layers == ("poles",)
    assert (info.encoding, info.encoding_origin) == ("GBK", "detected")
    assert column(chunks, "OBJNAME") == NAMES


# --------------------------------------------------------------------------------------------------
# GeoJSON and GeoJSONSeq


def feature(i: int, geometry: Any, **props: Any) -> dict[str, Any]:
    return {
        "type": "Feature",
        "properties": {"OBJCODE": f"44031001170000{i:02d}", **props},
        "geometry": geometry,
    }


def test_geojson_feature_collection(tmp_path: Path) -> None:
    features = [
        feature(1, {"type": "Point", "coordinates": [500100.0, 2510100.0]}, OBJNAME="立杆"),
        feature(
            2, {"type": "LineString", "coordinates": [[500000, 2510000], [500010, 2510000]]}, NOTE_="a]b}c"
        ),
        feature(3, None, OBJNAME='带"引号"的{名称}'),
    ]
    doc = {
        "type": "FeatureCollection",
        "name": "poles",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::4547"}},
        "features": features,
    }
    path = tmp_path / "poles.geojson"
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
    info, chunks = read_all(path)
    assert info.format == "geojson"
    assert info.declared_crs == "EPSG:4547"
    assert info.fields == ("OBJCODE", "OBJNAME", "NOTE_")
    assert info.geometry_type == "Mixed"
    chunk = chunks[0]
    assert chunk.columns["OBJNAME"] == ["立杆", None, '带"引号"的{名称}']
    assert chunk.columns["NOTE_"] == [None, "a]b}c", None]
    assert chunk.geometry is not None and chunk.geometry[1].geom_type == "LineString"
    assert chunk.geometry[2] is None
    assert [(p.row, p.field) for p in chunk.problems] == [(3, "geometry")]


def test_geojson_without_crs_member_is_undeclared(tmp_path: Path) -> None:
    path = tmp_path / "p.geojson"
    path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [feature(1, {"type": "Point", "coordinates": [114.3, 22.7]})],
            }
        )
    )
    info, chunks = read_all(path)
    assert info.declared_crs is None
    assert any("RFC 7946" in note for note in info.notes)
    assert chunks[0].xs is not None and chunks[0].geometry is None  # points stay as arrays


def test_geojson_crs_after_the_features(tmp_path: Path) -> None:
    path = tmp_path / "p.geojson"
    text = json.dumps(
        {"type": "FeatureCollection", "features": [feature(1, {"type": "Point", "coordinates": [1, 2]})]}
    )
    path.write_text(text[:-1] + ', "crs": {"type": "name", "properties": {"name": "EPSG:4526"}}}')
    info, _ = read_all(path)
    assert info.declared_crs == "EPSG:4526"


def test_geojson_chunks_and_row_numbers(tmp_path: Path) -> None:
    n = 10
    features = [
        feature(i, {"type": "Point", "coordinates": [114.3 + i / 100, 22.7]}, N=i) for i in range(1, n + 1)
    ]
    path = tmp_path / "p.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    _, chunks = read_all(path, chunk_size=3)
    assert [(c.first_row, len(c)) for c in chunks] == [(1, 3), (4, 3), (7, 3), (10, 1)]
    assert column(chunks, "N") == list(range(1, n + 1))
    xs = np.concatenate([c.xs for c in chunks if c.xs is not None])
    np.testing.assert_allclose(xs, [114.3 + i / 100 for i in range(1, n + 1)])


@pytest.mark.parametrize("block_bytes", [7, 64, 1000])
def test_geojson_splitter_survives_any_block_boundary(tmp_path: Path, block_bytes: int) -> None:
    """Tiny blocks cut features, strings, escapes and multi-byte characters at every position."""
    names = ["a\\", 'q"}', "{[", "井盖]", '\\\\"x', "end"]
    features = [
        feature(i, {"type": "Point", "coordinates": [i, i]}, NAME=name) for i, name in enumerate(names)
    ]
    path = tmp_path / "p.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False))
    with path.open("rb") as stream:
        layout = find_features_array(stream)
        assert layout is not None
        batches = list(iter_collection_batches(stream, layout.features_offset, 4, block_bytes=block_bytes))
    assert [len(b) for b in batches] == [4, 2]
    assert [f["properties"]["NAME"] for b in batches for f in b] == names


def test_truncated_geojson_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "cut.geojson"
    text = json.dumps({"type": "FeatureCollection", "features": [feature(1, None), feature(2, None)]})
    path.write_text(text[: len(text) - 30])
    with pytest.raises(InvalidInput, match=r"cut\.geojson: .*truncated"):
        _, chunks = open_source(path)  # the first chunk is read at once, for the field list
        list(chunks)


def test_single_feature_geojson(tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    path.write_text(json.dumps(feature(1, {"type": "Point", "coordinates": [114.3, 22.7]})))
    _, chunks = read_all(path)
    assert len(chunks) == 1 and chunks[0].xs is not None and chunks[0].xs[0] == 114.3


def test_geojsonseq_with_blank_and_bad_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps(
            feature(1, {"type": "Point", "coordinates": [114.3, 22.7]}, OBJNAME="立杆"), ensure_ascii=False
        ),
        "",
        '{"type": "Feature", "properties": {"OBJNAME": ',  # broken line: feature 2
        json.dumps(
            feature(3, {"type": "Point", "coordinates": [114.4, 22.8]}, OBJNAME="路灯"), ensure_ascii=False
        ),
    ]
    path = tmp_path / "p.geojsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    info, chunks = read_all(path, chunk_size=2)
    assert info.format == "geojsonseq" and info.declared_crs is None
    assert [(c.first_row, len(c)) for c in chunks] == [(1, 2), (3, 1)]
    assert column(chunks, "OBJNAME") == ["立杆", None, "路灯"]
    problems = [p for c in chunks for p in c.problems]
    assert [(p.row, p.field) for p in problems if p.field is None] == [(2, None)]
    assert "invalid JSON" in problems[0].reason


def test_geojsonseq_record_separators(tmp_path: Path) -> None:
    records = [feature(i, {"type": "Point", "coordinates": [i, i]}) for i in range(3)]
    path = tmp_path / "p.geojsons"
    path.write_bytes(b"".join(b"\x1e" + json.dumps(r, indent=2).encode() + b"\n" for r in records))
    _, chunks = read_all(path)
    assert len(chunks[0]) == 3
    assert chunks[0].xs is not None and chunks[0].xs.tolist() == [0.0, 1.0, 2.0]


# --------------------------------------------------------------------------------------------------
# GeoPackage


def write_gpkg_layer(path: Path, layer: str, names: list[str], geometry_type: str = "Point") -> None:
    n = len(names)
    geoms = (
        shapely.points(LONS[:n], LATS[:n])
        if geometry_type == "Point"
        else shapely.buffer(shapely.points(LONS[:n], LATS[:n]), 0.001)
    )
    pyogrio.raw.write(
        path,
        geometry=np.array(shapely.to_wkb(geoms), dtype=object),
        field_data=[np.array(names, dtype=object)],
        fields=["OBJNAME"],
        layer=layer,
        geometry_type=geometry_type,
        crs="EPSG:4490",
        driver="GPKG",
        append=path.exists(),
    )


def test_geopackage_two_layers(tmp_path: Path) -> None:
    path = tmp_path / "inventory.gpkg"
    write_gpkg_layer(path, "poles", ["立杆", "路灯"])
    write_gpkg_layer(path, "rooms", ["配电房"], geometry_type="Polygon")
    info, chunks = read_all(path)
    assert info.layers == ("poles", "rooms")
    assert info.layer == "poles" and info.feature_count == 2
    assert info.declared_crs == "EPSG:4490"
    assert column(chunks, "OBJNAME") == ["立杆", "路灯"]
    info, chunks = read_all(path, layer="rooms")
    assert info.layer == "rooms" and info.geometry_type == "Polygon"
    assert chunks[0].geometry is not None and chunks[0].geometry[0].geom_type == "Polygon"
    with pytest.raises(InvalidInput, match="no layer 'manholes'; layers: poles, rooms"):
        open_source(path, layer="manholes")


# --------------------------------------------------------------------------------------------------
# CSV and Excel

DMS_ROWS = [
    ["编号", "名称", "经度", "纬度"],
    ["P1", "立杆", "114°21'30.5\"", "22°42'10\""],
    ["P2", "路灯", "114.36", "22.71"],
    ["P3", "配电箱", "114 22 00", "22 43 00"],
]


def write_csv(path: Path, rows: list[list[str]], encoding: str) -> Path:
    with path.open("w", encoding=encoding, newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def dms(d: float, m: float, s: float) -> float:
    return d + m / 60 + s / 3600


@pytest.mark.parametrize(
    ("encoding", "expected", "origin"),
    [("gbk", "GBK", "detected"), ("utf-8-sig", "utf-8-sig", "declared"), ("utf-8", "utf-8-sig", "detected")],
)
def test_csv_encodings_with_dms_columns(tmp_path: Path, encoding: str, expected: str, origin: str) -> None:
    path = write_csv(tmp_path / "poles.csv", DMS_ROWS, encoding)
    info, chunks = read_all(path)
    assert (info.encoding, info.encoding_origin) == (expected, origin)
    assert info.fields == ("编号", "名称", "经度", "纬度")  # no BOM glued to the first name
    assert (info.x_field, info.y_field) == ("经度", "纬度")
    chunk = chunks[0]
    assert chunk.columns["名称"] == ["立杆", "路灯", "配电箱"]
    assert chunk.rows().tolist() == [2, 3, 4]
    assert chunk.xs is not None and chunk.ys is not None
    np.testing.assert_allclose(chunk.xs, [dms(114, 21, 30.5), 114.36, dms(114, 22, 0)])
    np.testing.assert_allclose(chunk.ys, [dms(22, 42, 10), 22.71, dms(22, 43, 0)])
    assert chunk.problems == []


def test_csv_semicolons_explicit_fields_and_bad_cells(tmp_path: Path) -> None:
    rows = [
        ["id", "东", "北"],
        ["1", "512345.6", "2510000.5"],
        ["2", "", "2510001"],
        ["3", "abc", "2510002"],
    ]
    path = tmp_path / "survey.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, delimiter=";").writerows(rows)
    info, chunks = read_all(path, x_field="东", y_field=["北坐标", "北"])
    assert (info.x_field, info.y_field) == ("东", "北")
    chunk = chunks[0]
    assert chunk.xs is not None and chunk.xs[0] == 512345.6  # projected metres are not range-checked
    assert [(p.row, p.field) for p in chunk.problems] == [(3, "东"), (4, "东")]
    assert chunk.problems[0].reason == "坐标为空 / empty coordinate"


def test_csv_without_coordinate_columns_lists_the_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "list.csv", [["编号", "名称"], ["1", "立杆"]], "utf-8")
    with pytest.raises(InvalidInput, match=r"no coordinate columns found.*Columns: 编号, 名称"):
        open_source(path)


def test_csv_chunks_count_the_header(tmp_path: Path) -> None:
    rows = [["x", "y", "n"]] + [[str(114.3 + i / 1000), "22.7", str(i)] for i in range(1, 8)]
    rows.insert(4, ["", "", ""])  # a blank line: skipped, but the rows after it keep their numbers
    path = write_csv(tmp_path / "p.csv", rows, "utf-8")
    _, chunks = read_all(path, chunk_size=3)
    assert [c.first_row for c in chunks] == [2, 6, 9]
    assert [c.rows().tolist() for c in chunks] == [[2, 3, 4], [6, 7, 8], [9]]
    assert column(chunks, "n") == [str(i) for i in range(1, 8)]


def test_xlsx_with_title_row_dms_and_a_bad_cell(tmp_path: Path) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "井盖"
    sheet.append(["坪山区井盖台账"])  # row 1: a title, not the header
    sheet.append(["编号", "名称", "X坐标", "Y坐标", "建设日期"])  # row 2: header
    sheet.append(["W1", "上水井盖", "114°21'30.5\"", "22°42'10\"", "2019-03-02"])  # row 3
    sheet.append([])  # row 4: blank
    sheet.append(["W2", "污水井盖", "114度21分", "22°42'N", None])  # row 5
    sheet.append(["W3", "雨水井盖", "114°99'", 22.7, None])  # row 6: minutes out of range
    sheet.append(["W4", "电力井盖", 114.35, 22.71, None])  # row 7: plain numbers
    other = workbook.create_sheet("说明")
    other.append(["nothing to see"])
    path = tmp_path / "covers.xlsx"
    workbook.save(path)

    info, chunks = read_all(path, chunk_size=2)
    assert info.layers == ("井盖", "说明") and info.layer == "井盖"
    assert (info.x_field, info.y_field) == ("X坐标", "Y坐标")
    rows = [c.rows().tolist() for c in chunks]
    assert rows == [[3, 5], [6, 7]]
    problems = [p for c in chunks for p in c.problems]
    assert [(p.row, p.field) for p in problems] == [(6, "X坐标")]
    assert "114°99'" in (problems[0].value or "") and "minutes" in problems[0].reason
    xs = np.concatenate([c.xs for c in chunks if c.xs is not None])
    np.testing.assert_allclose(xs[[0, 1, 3]], [dms(114, 21, 30.5), dms(114, 21, 0), 114.35])
    assert math.isnan(xs[2])
    assert column(chunks, "名称") == ["上水井盖", "污水井盖", "雨水井盖", "电力井盖"]


def test_xlsx_sheet_selection(tmp_path: Path) -> None:
    workbook = Workbook()
    first = workbook.active
    assert first is not None
    first.append(["a"])
    second = workbook.create_sheet("杆")
    second.append(["lon", "lat"])
    second.append([114.3, 22.7])
    path = tmp_path / "book.xlsx"
    workbook.save(path)
    info, chunks = read_all(path, layer="杆")
    assert info.layer == "杆" and chunks[0].xs is not None and chunks[0].xs.tolist() == [114.3]
    with pytest.raises(InvalidInput, match="no sheet"):
        open_source(path, layer="missing")


# --------------------------------------------------------------------------------------------------
# Dispatch


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("roads.kml", "KML is not supported"),
        ("roads.xls", r"save it as \.xlsx"),
        ("roads.dat", "unsupported file type '.dat'"),
        ("roads", "unsupported file type '\\(no extension\\)'"),
    ],
)
def test_unsupported_files_name_the_reason(tmp_path: Path, name: str, message: str) -> None:
    path = tmp_path / name
    path.write_text("x")
    with pytest.raises(InvalidInput, match=message) as caught:
        open_source(path)
    assert caught.value.message.startswith(name)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"nothing\.geojson: file not found"):
        open_source(tmp_path / "nothing.geojson")


def test_corrupt_geopackage(tmp_path: Path) -> None:
    path = tmp_path / "broken.gpkg"
    path.write_bytes(b"not sqlite at all" * 10)
    with pytest.raises(InvalidInput, match=r"broken\.gpkg"):
        open_source(path)


def test_geojson_parse_units_regroup_into_exact_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks are assembled from smaller parse units (the first chunk is one unit, so writing starts
    early); cuts inside a unit keep rows and problems right."""
    monkeypatch.setattr("importers.vector.PARSE_UNIT", 4)
    geometries: list[Any] = [{"type": "Point", "coordinates": [i, i]} for i in range(15)]
    geometries[5] = None  # row 6
    geometries[9] = {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}  # row 10: a mixed unit
    geometries[12] = None  # row 13
    features = [
        feature(i, g, N=i + 1) if i != 11 else feature(i, g, N=i + 1, LATE="x")
        for i, g in enumerate(geometries)
    ]
    path = tmp_path / "p.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    info, chunks = read_all(path, chunk_size=6)
    assert info.fields == ("OBJCODE", "N")  # LATE first appears after the first chunk
    assert [(c.first_row, len(c)) for c in chunks] == [(1, 4), (5, 6), (11, 5)]
    assert column(chunks, "N") == list(range(1, 16))
    assert chunks[2].columns["LATE"] == [None, "x", None, None, None]
    assert [[p.row for p in c.problems] for c in chunks] == [[], [6], [13]]
    assert chunks[0].geometry is None and chunks[0].xs is not None  # all points: arrays only
    assert chunks[1].geometry is not None and chunks[1].geometry[5].geom_type == "LineString"
    assert chunks[1].geometry[0].equals(shapely.Point(4, 4))


def test_xlsx_flags_codes_typed_as_numbers(tmp_path: Path) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["OBJCODE", "lon", "lat"])
    sheet.append([4403100101000001, 114.3, 22.7])
    sheet.append(["4403100101000002", 114.3, 22.7])
    path = tmp_path / "codes.xlsx"
    workbook.save(path)
    _, chunks = read_all(path)
    assert [(p.row, p.field) for p in chunks[0].problems] == [(2, "OBJCODE")]
    assert "15" in chunks[0].problems[0].reason


def test_geopackage_attribute_table_has_no_geometry(tmp_path: Path) -> None:
    path = tmp_path / "table.gpkg"
    pyogrio.raw.write(
        path,
        geometry=None,
        field_data=[
            np.array(["立杆"], dtype=object),
            np.array(["114.3"], dtype=object),
            np.array(["22.7"], dtype=object),
        ],
        fields=["OBJNAME", "X", "Y"],
        geometry_type=None,
        driver="GPKG",
    )
    _, chunks = read_all(path)
    chunk = chunks[0]
    assert chunk.geometry is None and chunk.xs is None and len(chunk) == 1
    assert chunk.columns["OBJNAME"].tolist() == ["立杆"]


def test_dbf_language_driver_byte(tmp_path: Path) -> None:
    """LDID 0x4D (code page 936) counts as declared only when the data really decodes as GBK."""
    shp = write_shapefile(tmp_path / "poles.shp", encoding="GBK")
    (tmp_path / "poles.cpg").unlink()
    dbf = tmp_path / "poles.dbf"
    data = bytearray(dbf.read_bytes())
    data[29] = 0x4D
    dbf.write_bytes(bytes(data))
    info, chunks = read_all(shp)
    assert (info.encoding, info.encoding_origin) == ("GBK", "declared")
    assert column(chunks, "OBJNAME") == NAMES

    utf8 = write_shapefile(tmp_path / "u.shp", encoding="UTF-8")
    (tmp_path / "u.cpg").unlink()
    data = bytearray((tmp_path / "u.dbf").read_bytes())
    data[29] = 0x4D  # stale: says GBK, holds UTF-8
    (tmp_path / "u.dbf").write_bytes(bytes(data))
    info, chunks = read_all(utf8)
    assert (info.encoding, info.encoding_origin) == ("UTF-8", "detected")
    assert any("does not fit" in note for note in info.notes)
    assert column(chunks, "OBJNAME") == NAMES


def test_detection_looks_past_a_long_ascii_start() -> None:
    from importers.encoding import detect_bytes_encoding

    blocks = [b"P1,114.3,22.7\n" * 10_000] * 5 + ["井盖,深圳\n".encode("gbk")]
    assert detect_bytes_encoding(iter(blocks))[0] == "GBK"
    assert detect_bytes_encoding(iter([b"abc"]))[0] == "UTF-8"
    assert detect_bytes_encoding(iter(["井盖".encode()]))[0] == "UTF-8"


def test_zip_with_gbk_member_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Zips from Chinese Windows store GBK names without the UTF-8 flag; layers show them readable."""
    folder = tmp_path / "src"
    folder.mkdir()
    write_shapefile(folder / "井盖.shp", encoding="GBK")

    def gbk_names(self: zipfile.ZipInfo) -> tuple[bytes, int]:
        return self.filename.encode("gbk"), self.flag_bits & ~0x800

    # zipfile always writes UTF-8 names; imitate the Windows archiver (private hook, test only).
    monkeypatch.setattr(zipfile.ZipInfo, "_encodeFilenameFlags", gbk_names)
    archive = tmp_path / "交付.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for part in folder.iterdir():
            zf.write(part, part.name)
    monkeypatch.undo()
    info, chunks = read_all(archive, layer="井盖")
    assert info.layers == ("井盖",) and info.file == "交付.zip!井盖.shp"
    assert column(chunks, "OBJNAME") == NAMES


def test_swapped_dms_columns_are_read_not_rejected(tmp_path: Path) -> None:
    """Latitudes under "X" are kept (the CRS guess of the next stage detects the swap)."""
    rows = [["X", "Y"], ["22°42'10\"", "114°21'30\""], ["22°42'N", "114°21'E"]]
    path = write_csv(tmp_path / "swapped.csv", rows, "utf-8")
    _, chunks = read_all(path)
    chunk = chunks[0]
    assert chunk.problems == []
    assert chunk.xs is not None and chunk.ys is not None
    np.testing.assert_allclose(chunk.xs, [dms(22, 42, 10), dms(22, 42, 0)])
    np.testing.assert_allclose(chunk.ys, [dms(114, 21, 30), dms(114, 21, 0)])
