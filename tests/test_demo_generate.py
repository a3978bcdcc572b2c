"""The synthetic 坪山 pilot generator: deterministic, inside Pingshan, valid classes and credit codes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import openpyxl
import pyogrio
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import shape

from common.settings import DEFAULT_SERVICE_AREA_WKT, PROJECT_ROOT
from gis.area import ServiceArea
from gis.dms import Axis, parse_coordinate
from importers.demo import generate as gen
from importers.demo.world import OWNERLESS_SPOTS, UNITS, build_world
from registry.credit_code import is_valid_credit_code

REFERENCE_CLASSES = Path("/work/shared/reference/component-classes.csv")
LOCAL_CLASSES = PROJECT_ROOT / "registry" / "data" / "component-classes-local.csv"
NATIONAL_CLASSES = PROJECT_ROOT / "registry" / "data" / "component-classes-national.csv"
TO_METRES = Transformer.from_crs(4326, 4547, always_xy=True)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> gen.DemoFiles:
    """The demo files of the default seed, written once for the module."""
    return gen.generate_demo(tmp_path_factory.mktemp("demo"))


def _features(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["features"]


def _class_table() -> dict[str, str]:
    """Class code -> name from the shared reference list, the seeded national list and the local list."""
    table: dict[str, str] = {}
    for path in (REFERENCE_CLASSES, NATIONAL_CLASSES, LOCAL_CLASSES):
        if path.is_file():
            with path.open(encoding="utf-8") as handle:
                table.update({row["class_code"]: row["class_name"] for row in csv.DictReader(handle)})
    return table


def _asset_points(demo: gen.DemoFiles) -> np.ndarray:
    """Every vertex of every asset as the files state it, in WGS84 lon/lat, read back independently."""
    coords: list[np.ndarray] = []
    for name in (gen.LAMPS_FILE, gen.CABLES_FILE):
        for feature in _features(demo.path(name)):
            coords.append(shapely.get_coordinates(shape(feature["geometry"])))
    with demo.path(gen.COVERS_FILE).open(encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            coords.append(
                np.array([[parse_coordinate(row["经度"], "lon"), parse_coordinate(row["纬度"], "lat")]])
            )
    sheet = openpyxl.load_workbook(demo.path(gen.POLES_FILE), read_only=True).active
    for row in sheet.iter_rows(min_row=3, values_only=True):
        coords.append(np.array([[row[4], row[5]]], dtype=float))
    _, _, geometry, _ = pyogrio.raw.read(demo.path(gen.POWER_SHAPEFILE), encoding="GBK")
    metres = shapely.get_coordinates(shapely.from_wkb(geometry))
    lon, lat = Transformer.from_crs(4547, 4326, always_xy=True).transform(metres[:, 0], metres[:, 1])
    coords.append(np.column_stack([lon, lat]))
    return np.vstack(coords)


def test_same_seed_writes_identical_files(demo: gen.DemoFiles, tmp_path: Path) -> None:
    again = gen.generate_demo(tmp_path / "again")
    assert again.hashes == demo.hashes
    assert again.fingerprint == demo.fingerprint
    for name in demo.hashes:
        assert (tmp_path / "again" / name).read_bytes() == demo.path(name).read_bytes(), name


def test_regenerating_in_place_changes_nothing(demo: gen.DemoFiles) -> None:
    before = {name: demo.path(name).read_bytes() for name in demo.hashes}
    again = gen.generate_demo(demo.folder)
    assert again.fingerprint == demo.fingerprint
    assert {name: demo.path(name).read_bytes() for name in demo.hashes} == before


def test_another_seed_gives_another_pilot(demo: gen.DemoFiles, tmp_path: Path) -> None:
    other = gen.generate_demo(tmp_path / "other", seed=7)
    assert other.fingerprint != demo.fingerprint
    assert other.hashes[gen.LAMPS_FILE] != demo.hashes[gen.LAMPS_FILE]
    # The geography is the same pilot whatever the seed; only the assets change.
    assert other.hashes[gen.ZONE_FILES["street"]] == demo.hashes[gen.ZONE_FILES["street"]]


def test_manifest_reads_back(demo: gen.DemoFiles) -> None:
    loaded = gen.read_manifest(demo.folder)
    assert loaded is not None
    assert loaded.fingerprint == demo.fingerprint
    assert [s.file for s in loaded.steps] == [s.file for s in demo.steps]
    assert loaded.expected == demo.expected
    manifest = json.loads(demo.path(gen.MANIFEST).read_text(encoding="utf-8"))
    assert manifest["synthetic"] is True and "SYNTHETIC" in manifest["note"]
    for step in demo.steps:
        assert demo.path(step.file).is_file(), step.file


def test_a_few_thousand_assets_in_every_format(demo: gen.DemoFiles) -> None:
    per_file = demo.expected["assets_per_file"]
    assert set(per_file) == {
        gen.POWER_SHAPEFILE,
        gen.LAMPS_FILE,
        gen.CABLES_FILE,
        gen.COVERS_FILE,
        gen.POLES_FILE,
    }
    assert 2000 <= demo.expected["assets"] <= 6000
    assert all(count >= 100 for count in per_file.values())
    assert demo.expected["assets_per_class"]["0114"] == len(OWNERLESS_SPOTS)
    assert 0 < demo.expected["prefilled_codes"] < per_file[gen.POWER_SHAPEFILE] / 2


def test_every_point_lies_in_pingshan(demo: gen.DemoFiles) -> None:
    points = _asset_points(demo)
    assert len(points) > demo.expected["assets"]  # cables add two vertices each
    area = ServiceArea.from_wkt(DEFAULT_SERVICE_AREA_WKT, margin_m=0.0)
    assert area.inside_mask(points[:, 0], points[:, 1]).all()
    # The district itself spans roughly 114.28-114.45 E, 22.63-22.78 N.
    assert points[:, 0].min() > 114.28 and points[:, 0].max() < 114.45
    assert points[:, 1].min() > 22.63 and points[:, 1].max() < 22.78
    for level in gen.ZONE_FILES:
        for feature in _features(demo.path(gen.ZONE_FILES[level])):
            bounds = shape(feature["geometry"]).bounds
            assert area.inside_mask(np.array(bounds[::2]), np.array(bounds[1::2])).all()


def test_every_asset_has_a_street_office_behind_it(demo: gen.DemoFiles) -> None:
    streets = shapely.union_all(
        [shape(f["geometry"]) for f in _features(demo.path(gen.ZONE_FILES["street"]))]
    )
    points = _asset_points(demo)
    assert shapely.covers(streets, shapely.points(points)).all()
    pilots = [shape(f["geometry"]) for f in _features(demo.path(gen.ZONE_FILES["pilot"]))]
    assert all(streets.buffer(1e-6).covers(pilot) for pilot in pilots)
    assert all(f["properties"][gen.ZONE_UNIT_FIELD] for f in _features(demo.path(gen.ZONE_FILES["street"])))


def test_zones_nest_and_tile(demo: gen.DemoFiles) -> None:
    streets = {
        f["properties"]["名称"]: shape(f["geometry"]) for f in _features(demo.path(gen.ZONE_FILES["street"]))
    }
    assert {"坪山街道", "马峦街道"} <= set(streets)
    communities = [
        (f["properties"]["编码"], shape(f["geometry"]))
        for f in _features(demo.path(gen.ZONE_FILES["community"]))
    ]
    by_code = {
        f["properties"]["编码"]: shape(f["geometry"]) for f in _features(demo.path(gen.ZONE_FILES["street"]))
    }
    for code, community in communities:
        assert len(code) == 12 and code.startswith("440310")
        assert by_code[code[:9]].buffer(1e-6).covers(community)
    street_area = sum(s.area for s in streets.values())
    assert sum(c.area for _, c in communities) == pytest.approx(street_area, rel=1e-6)
    grids = _features(demo.path(gen.ZONE_FILES["grid"]))
    assert grids and all(len(g["properties"]["编码"]) == 15 for g in grids)
    names = {f["properties"]["名称"] for f in _features(demo.path(gen.ZONE_FILES["pilot"]))}
    assert names == {"坪山中心区", "坪环社区"}


def test_every_class_exists(demo: gen.DemoFiles) -> None:
    table = _class_table()
    world = build_world(demo.seed)
    for asset in world.assets:
        assert asset.class_code in table, asset.class_code
        assert table[asset.class_code] == asset.class_name, asset.class_code
    info, _, _, field_data = pyogrio.raw.read(demo.path(gen.POWER_SHAPEFILE), encoding="GBK")
    names = dict(zip(info["fields"], field_data, strict=True))
    assert set(names["OBJNAME"]) <= set(table.values())
    for rule in world.rules:
        assert not rule.class_code or rule.class_code in table


def test_credit_codes_validate_and_look_synthetic() -> None:
    codes = [unit.credit_code for unit in UNITS]
    assert len(set(codes)) == len(codes)
    for code in codes:
        assert is_valid_credit_code(code), code
        assert code[8:11] == "DEM", code
    assert len({unit.name for unit in UNITS}) == len(UNITS)
    aliases = [alias for unit in UNITS for alias in unit.aliases]
    assert len(set(aliases)) == len(aliases), "an alias must name one unit only"
    kinds = {unit.kind for unit in UNITS}
    assert {"utility", "telecom", "government", "street_office"} <= kinds


def test_inventories_name_only_registered_units(demo: gen.DemoFiles) -> None:
    known = {unit.name for unit in UNITS} | {alias for unit in UNITS for alias in unit.aliases}
    world = build_world(demo.seed)
    named = {name for a in world.assets for name in (a.owner, a.maintainer, a.supervisor) if name}
    assert named <= known
    # Inventories use aliases as well as full names, so matching by alias is exercised.
    assert named & {alias for unit in UNITS for alias in unit.aliases}
    assert {rule.unit for rule in world.rules} <= known


def test_lamps_stand_beside_a_road(demo: gen.DemoFiles) -> None:
    roads = [shape(f["geometry"]) for f in _features(demo.path(gen.ROADS_FILE))]
    roads_m = shapely.union_all(
        [shapely.transform(r, lambda c: np.column_stack(TO_METRES.transform(*c.T))) for r in roads]
    )
    lamps = np.array([f["geometry"]["coordinates"] for f in _features(demo.path(gen.LAMPS_FILE))])
    x, y = TO_METRES.transform(lamps[:, 0], lamps[:, 1])
    distances = shapely.distance(roads_m, shapely.points(x, y))
    assert distances.max() <= 20.0
    assert distances.min() >= 5.0  # beside the carriageway, not in it


def test_cables_join_poles(demo: gen.DemoFiles) -> None:
    sheet = openpyxl.load_workbook(demo.path(gen.POLES_FILE), read_only=True).active
    poles = np.array([[r[4], r[5]] for r in sheet.iter_rows(min_row=3, values_only=True)], dtype=float)
    px, py = TO_METRES.transform(poles[:, 0], poles[:, 1])
    pole_points = shapely.points(px, py)
    for feature in _features(demo.path(gen.CABLES_FILE))[:200]:
        assert feature["geometry"]["type"] == "LineString"
        ends = np.array(feature["geometry"]["coordinates"])
        ex, ey = TO_METRES.transform(ends[:, 0], ends[:, 1])
        for end in shapely.points(ex, ey):
            assert shapely.distance(pole_points, end).min() < 1.5


def test_power_shapefile_is_a_gbk_szcg_export_without_cpg(demo: gen.DemoFiles) -> None:
    shp = demo.path(gen.POWER_SHAPEFILE)
    assert not shp.with_suffix(".cpg").exists()
    assert shp.with_suffix(".prj").exists()
    dbf = shp.with_suffix(".dbf").read_bytes()
    assert "电力井盖".encode("gbk") in dbf
    info = pyogrio.read_info(shp, encoding="GBK")
    for name in (
        "OBJCODE",
        "OBJNAME",
        "DEPTNAME1",
        "DEPTNAME2",
        "DEPTNAME3",
        "BGID",
        "OBJSTATE",
        "OBJUPTODAT",
        "ORDATE",
    ):
        assert name in info["fields"]
    _, _, _, field_data = pyogrio.raw.read(shp, encoding="GBK")
    codes = [c for c in dict(zip(info["fields"], field_data, strict=True))["OBJCODE"] if c]
    assert codes and all(len(c) == 16 and c.startswith("440310") for c in codes)


def test_covers_csv_writes_dms_that_parses_back() -> None:
    cases: list[tuple[float, Axis]] = [
        (114.3456789, "lon"),
        (22.6950001, "lat"),
        (114.0, "lon"),
        (22.9999999, "lat"),
    ]
    for value, axis in cases:
        text = gen.format_dms(value, axis)
        assert "°" in text and "'" in text and '"' in text
        assert parse_coordinate(text, axis) == pytest.approx(value, abs=1e-6)


def test_ownerless_covers_sit_alone(demo: gen.DemoFiles) -> None:
    with demo.path(gen.COVERS_FILE).open(encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    ownerless = [r for r in rows if r["井盖类型"] == "无主井盖"]
    assert len(ownerless) == len(OWNERLESS_SPOTS)
    assert all(not r["权属单位"] for r in ownerless)

    def metres(row: dict[str, str]) -> tuple[float, float]:
        return TO_METRES.transform(parse_coordinate(row["经度"], "lon"), parse_coordinate(row["纬度"], "lat"))

    others = shapely.points([metres(r) for r in rows if r["井盖类型"] != "无主井盖"])
    for row in ownerless:
        assert shapely.distance(others, shapely.Point(metres(row))).min() > 30.0
