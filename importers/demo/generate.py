"""Write the synthetic 坪山 pilot as the files a real deployment receives, plus a manifest.

The files are what utilities and departments actually send, in several formats, so that loading the
demo runs the real importers end to end:

* ``power/PS_GD_BJ.shp``: the power utility's 数字城管-standard export (OBJCODE, OBJNAME, DEPTNAME1-3,
  BGID, OBJSTATE, OBJUPTODAT, ORDATE...), projected in EPSG:4547, GBK text, no ``.cpg``;
* ``lamps.geojson`` (street lamps), ``cables.geojson`` (overhead cables as lines);
* ``manhole_covers.csv``: covers with degrees-minutes-seconds coordinate text;
* ``poles.xlsx``: a pole ledger under a title row;
* ``zones/*.geojson`` (street, community, grid, contract and pilot zones), ``rules.csv``;
* ``profiles/*.toml``: mapping profiles for the non-standard files;
* ``roads.geojson`` (reference only), ``units.csv`` (the units the demo registers), ``README.txt``.

Every file is byte-for-byte reproducible from the seed (no timestamps inside), so a second run
writes identical files and the loader can tell from their hashes that nothing changed.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import re
import zipfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import openpyxl
import pyogrio.raw
import shapely
from openpyxl.styles import Font
from shapely.geometry.base import BaseGeometry

from gis.dms import Axis
from importers.demo.world import (
    COUNTY,
    DATA_SOURCE,
    DEFAULT_SEED,
    SHORT_NOTE,
    SYNTHETIC_NOTE,
    AssetSpec,
    World,
    build_world,
)

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
# Fixed instants written where formats want a date of their own (DBF header, xlsx properties, zip
# entries): the files must not change with the day they were generated on.
_FIXED_DATE = dt.datetime(2026, 1, 1, 0, 0, 0)
_WGS84_DECIMALS = 7  # ~1 cm
_METRIC_DECIMALS = 3  # 1 mm
_CRS84 = {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}

POWER_SHAPEFILE = "power/PS_GD_BJ.shp"
LAMPS_FILE = "lamps.geojson"
CABLES_FILE = "cables.geojson"
COVERS_FILE = "manhole_covers.csv"
POLES_FILE = "poles.xlsx"
RULES_FILE = "rules.csv"
ROADS_FILE = "roads.geojson"
UNITS_FILE = "units.csv"
ZONE_FILES = {
    level: f"zones/{level}.geojson" for level in ("street", "community", "grid", "contract", "pilot")
}
# Zones files name their fields in Chinese, as a district's GIS office would.
ZONE_NAME_FIELD, ZONE_CODE_FIELD, ZONE_UNIT_FIELD = "名称", "编码", "责任单位"


@dataclass(frozen=True, slots=True)
class DemoStep:
    """One import the loader runs: what kind, which file (relative to the folder), with which options."""

    kind: str  # "zones" | "rules" | "assets"
    file: str
    options: dict[str, Any]
    label: str


@dataclass(slots=True)
class DemoFiles:
    """What the generator wrote: the folder, the seed, the import steps and each file's SHA-256."""

    folder: Path
    seed: int
    steps: list[DemoStep]
    hashes: dict[str, str]
    expected: dict[str, Any] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """One hash over every file and the seed: equal fingerprints mean identical demo data."""
        digest = hashlib.sha256(f"seed={self.seed}\n".encode())
        for name in sorted(self.hashes):
            digest.update(f"{name}={self.hashes[name]}\n".encode())
        return digest.hexdigest()

    def path(self, relative: str) -> Path:
        """The absolute path of a file of the demo."""
        return self.folder / relative

    def as_dict(self) -> dict[str, Any]:
        """The manifest as JSON-ready data."""
        return {
            "manifest_version": MANIFEST_VERSION,
            "synthetic": True,
            "note": SYNTHETIC_NOTE,
            "county": COUNTY,
            "seed": self.seed,
            "fingerprint": self.fingerprint,
            "steps": [
                {"kind": s.kind, "file": s.file, "options": s.options, "label": s.label} for s in self.steps
            ],
            "files": dict(sorted(self.hashes.items())),
            "expected": self.expected,
        }


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def generate_demo(folder: Path, seed: int = DEFAULT_SEED) -> DemoFiles:
    """Write the synthetic pilot for ``seed`` into ``folder`` (created if needed) and return its manifest."""
    world = build_world(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[str] = []

    def out(relative: str) -> Path:
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        written.append(relative)
        return path

    _write_readme(out("README.txt"), seed)
    _write_units(out(UNITS_FILE), world)
    _write_roads(out(ROADS_FILE), world)
    for level, relative in ZONE_FILES.items():
        _write_zones(out(relative), world, level)
    _write_rules(out(RULES_FILE), world)
    for name, text in PROFILES.items():
        out(f"profiles/{name}.toml").write_text(text, encoding="utf-8")
    written.extend(_write_power_shapefile(folder / POWER_SHAPEFILE, world))
    _write_lamps(out(LAMPS_FILE), world)
    _write_cables(out(CABLES_FILE), world)
    _write_covers(out(COVERS_FILE), world)
    _write_poles(out(POLES_FILE), world)

    files = DemoFiles(
        folder=folder,
        seed=seed,
        steps=_steps(),
        hashes={relative: sha256_file(folder / relative) for relative in sorted(set(written))},
        expected=expected_counts(world),
    )
    (folder / MANIFEST).write_text(
        json.dumps(files.as_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    return files


def read_manifest(folder: Path) -> DemoFiles | None:
    """The manifest a previous ``generate_demo`` left in ``folder``, or None when there is none."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("manifest_version") != MANIFEST_VERSION:
        return None
    return DemoFiles(
        folder=folder,
        seed=int(data["seed"]),
        steps=[DemoStep(s["kind"], s["file"], dict(s["options"]), s["label"]) for s in data["steps"]],
        hashes=dict(data["files"]),
        expected=dict(data.get("expected", {})),
    )


def expected_counts(world: World) -> dict[str, Any]:
    """What loading the world should give: assets per class and per file, zones per level, units, rules."""
    return {
        "assets": len(world.assets),
        "assets_per_class": dict(sorted(Counter(a.class_code for a in world.assets).items())),
        "assets_per_file": {
            _DATASET_FILES[name]: count
            for name, count in sorted(Counter(a.dataset for a in world.assets).items())
        },
        "prefilled_codes": sum(1 for a in world.assets if a.code),
        "zones_per_level": dict(sorted(Counter(z.level for z in world.zones).items())),
        "units": len(world.units),
        "rules": len(world.rules),
    }


_DATASET_FILES = {
    "power": POWER_SHAPEFILE,
    "lamps": LAMPS_FILE,
    "cables": CABLES_FILE,
    "covers": COVERS_FILE,
    "poles": POLES_FILE,
}


def _steps() -> list[DemoStep]:
    """The imports in the order the loader runs them: zones first, then rules, then inventories."""
    steps = [
        DemoStep(
            "zones",
            ZONE_FILES[level],
            {
                "level": level,
                "name_field": ZONE_NAME_FIELD,
                "code_field": ZONE_CODE_FIELD,
                "unit_field": ZONE_UNIT_FIELD if level in ("street", "pilot", "contract") else None,
            },
            label,
        )
        for level, label in (
            ("street", "街道 street zones"),
            ("community", "社区 community zones"),
            ("grid", "单元网格 grid zones"),
            ("contract", "养护合同片区 maintenance-contract zone"),
            ("pilot", "试点区域 pilot zones"),
        )
    ]
    steps.append(DemoStep("rules", RULES_FILE, {}, "职责清单 responsibility rules"))
    steps.extend(
        [
            DemoStep(
                "assets",
                POWER_SHAPEFILE,
                {"profile": "szcg"},
                "供电局 数字城管 shapefile (EPSG:4547, GBK, no .cpg)",
            ),
            DemoStep("assets", LAMPS_FILE, {"profile": "profiles/lamps.toml"}, "路灯 street lamps (GeoJSON)"),
            DemoStep(
                "assets",
                COVERS_FILE,
                {"profile": "profiles/covers.toml", "crs": "wgs84"},
                "井盖 manhole covers (CSV, DMS coordinates)",
            ),
            DemoStep(
                "assets",
                POLES_FILE,
                {"profile": "profiles/poles.toml"},
                "立杆 poles (Excel ledger, coordinate system detected)",
            ),
            DemoStep(
                "assets",
                CABLES_FILE,
                {"profile": "profiles/cables.toml"},
                "架空线缆 overhead cables (GeoJSON)",
            ),
        ]
    )
    return steps


# --------------------------------------------------------------------------------------------------
# Mapping profiles for the non-standard files (the shapefile uses the built-in szcg profile)

_PROFILE_HEAD = """\
# Mapping profile of the smartcode demo (合成演示数据, SYNTHETIC).
name = "{name}"
title = "{title}"
extends = "szcg"

"""
PROFILES: dict[str, str] = {
    "lamps": _PROFILE_HEAD.format(name="demo-lamps", title="坪山区路灯台账 (合成演示数据)")
    + """\
[fields]
source_id = ["路灯编号"]
class_name = ["设施类型"]
owner = ["权属单位"]
maintainer = ["养护单位"]
supervisor = ["主管部门"]
state = ["状态"]
installed = ["建设日期"]
note = ["备注"]

[fixed]
data_source = "合成演示数据"

[attributes]
keep = ["所在道路", "功率W", "灯杆高度m", "光源"]
""",
    "covers": _PROFILE_HEAD.format(name="demo-covers", title="坪山区井盖普查表 (合成演示数据)")
    + """\
[fields]
source_id = ["井盖编号"]
class_name = ["井盖类型"]
owner = ["权属单位"]
state = ["状态"]
installed = ["建设日期"]
note = ["备注"]
x = ["经度"]
y = ["纬度"]

[fixed]
data_source = "合成演示数据"

[attributes]
keep = ["所在道路", "井盖材质", "说明"]
""",
    "poles": _PROFILE_HEAD.format(name="demo-poles", title="坪山区杆路台账 (合成演示数据)")
    + """\
[fields]
source_id = ["杆号"]
class_name = ["设施类型"]
owner = ["产权单位"]
state = ["状态"]
installed = ["建设日期"]
note = ["备注"]
x = ["经度"]
y = ["纬度"]

# The ledger's own names for poles.
[classes]
"电杆" = "0117"
"通信杆" = "0117"

[fixed]
data_source = "合成演示数据"

[attributes]
keep = ["所在道路", "杆高m", "材质"]
""",
    "cables": _PROFILE_HEAD.format(name="demo-cables", title="坪山区架空线缆台账 (合成演示数据)")
    + """\
[fields]
source_id = ["线路编号"]
owner = ["权属单位"]
state = ["状态"]
installed = ["建设日期"]
note = ["备注"]

[fixed]
class_code = "2105"
data_source = "合成演示数据"

[attributes]
keep = ["所在道路", "线缆类型"]
""",
}


# --------------------------------------------------------------------------------------------------
# Writers


def _round_coords(geom: BaseGeometry, decimals: int) -> BaseGeometry:
    # Rounding (not snapping to a precision grid) keeps every vertex and ring orientation as built.
    return shapely.transform(geom, lambda coords: np.round(coords, decimals))


def _wgs84(world: World, geom: BaseGeometry) -> BaseGeometry:
    return _round_coords(world.to_wgs84(geom), _WGS84_DECIMALS)


def _write_geojson(path: Path, name: str, features: Iterable[dict[str, Any]]) -> None:
    """A FeatureCollection with a CRS84 member and one feature per line (diff-friendly, deterministic)."""
    head = {"type": "FeatureCollection", "name": name, "note": SYNTHETIC_NOTE, "crs": _CRS84}
    lines = [json.dumps(f, ensure_ascii=False, separators=(",", ":")) for f in features]
    text = json.dumps(head, ensure_ascii=False, separators=(",", ":"))[:-1]
    body = ",\n".join(lines)
    path.write_text(f'{text},"features":[\n{body}\n]}}\n', encoding="utf-8")


def _feature(geom: BaseGeometry, properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Feature", "properties": properties, "geometry": shapely.geometry.mapping(geom)}


def _write_readme(path: Path, seed: int) -> None:
    path.write_text(
        "SYNTHETIC DEMO DATA / 合成演示数据 — 深圳市坪山区 (440310) pilot for smartcode\n"
        "\n"
        "Everything in this folder is invented: boundaries, roads, assets, units, credit codes\n"
        "(their body reads DEM...), phone numbers (0755-0000xxxx cannot be dialled). It is not a\n"
        "survey and must never be mixed with a real registry.\n"
        f"\nGenerated by `smartcode demo` with seed {seed}. manifest.json lists the import steps and\n"
        "the SHA-256 of every file; profiles/ holds the mapping profiles of the non-standard files.\n",
        encoding="utf-8",
    )


def _write_units(path: Path, world: World) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "kind", "credit_code", "phone", "aliases", "parent", "note"])
    by_key = {u.key: u for u in world.units}
    for unit in world.units:
        parent = by_key[unit.parent].name if unit.parent else ""
        writer.writerow(
            [unit.name, unit.kind, unit.credit_code, unit.phone, "|".join(unit.aliases), parent, DATA_SOURCE]
        )
    path.write_text(buffer.getvalue(), encoding="utf-8")


def _write_roads(path: Path, world: World) -> None:
    _write_geojson(
        path,
        "roads",
        (
            _feature(
                _wgs84(world, road.geom),
                {"名称": road.name, "等级": "主干道" if road.arterial else "次干道", "备注": SHORT_NOTE},
            )
            for road in world.roads
        ),
    )


# Zone edges are straight in metres; vertices every 50 m keep neighbouring zones' shared edges
# together once converted to lon/lat (a 6 km straight edge would otherwise bow by centimetres).
_ZONE_VERTEX_SPACING_M = 50.0


def _write_zones(path: Path, world: World, level: str) -> None:
    _write_geojson(
        path,
        f"zones_{level}",
        (
            _feature(
                _wgs84(world, shapely.segmentize(zone.geom, _ZONE_VERTEX_SPACING_M)),
                {
                    ZONE_NAME_FIELD: zone.name,
                    ZONE_CODE_FIELD: zone.code,
                    ZONE_UNIT_FIELD: zone.unit,
                    "备注": SHORT_NOTE,
                },
            )
            for zone in world.zones
            if zone.level == level
        ),
    )


def _write_rules(path: Path, world: World) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["zone", "level", "class", "category", "unit", "priority", "note"])
    for rule in world.rules:
        row = [rule.zone, rule.level, rule.class_code, rule.category, rule.unit, rule.priority, SHORT_NOTE]
        writer.writerow(row)
    path.write_text(buffer.getvalue(), encoding="utf-8")


def _of(world: World, dataset: str) -> list[AssetSpec]:
    return [a for a in world.assets if a.dataset == dataset]


def _iso(day: dt.date | None) -> str | None:
    return day.isoformat() if day else None


def _write_power_shapefile(path: Path, world: World) -> list[str]:
    """The power utility's 数字城管 export: EPSG:4547, GBK DBF, no .cpg, as older ArcGIS exports are."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assets = _of(world, "power")
    for old in path.parent.glob(f"{path.stem}.*"):
        old.unlink()
    geometry = np.array(
        [shapely.to_wkb(_round_coords(world.to_epsg4547(a.geom), _METRIC_DECIMALS)) for a in assets],
        dtype=object,
    )
    columns: dict[str, list[Any]] = {
        "OBJCODE": [a.code or "" for a in assets],
        "OBJNAME": [a.class_name for a in assets],
        "DEPTNAME1": [a.supervisor or "" for a in assets],
        "DEPTNAME2": [a.owner or "" for a in assets],
        "DEPTNAME3": [a.maintainer or "" for a in assets],
        "BGID": [a.grid_code or "" for a in assets],
        "OBJSTATE": [a.state for a in assets],
        "OBJUPTODAT": ["在用" for _ in assets],
        "DATASOURCE": [DATA_SOURCE for _ in assets],
        "NOTE_": [f"{a.road} {SYNTHETIC_NOTE}" for a in assets],
        "ZCBH": [a.source_id for a in assets],
    }
    field_data = [np.array(values, dtype=object) for values in columns.values()]
    field_data.append(np.array([np.datetime64(a.installed_on, "D") for a in assets], dtype="datetime64[D]"))
    names = [*columns, "ORDATE"]
    pyogrio.raw.write(
        str(path),
        geometry,
        field_data,
        names,
        driver="ESRI Shapefile",
        geometry_type="Point",
        crs="EPSG:4547",
        encoding="GBK",
    )
    # No .cpg, as the exports this imitates have none: the importer must recognise GBK by itself.
    path.with_suffix(".cpg").unlink(missing_ok=True)
    _normalise_dbf_header(path.with_suffix(".dbf"))
    return [f"{Path(POWER_SHAPEFILE).parent}/{path.stem}{ext}" for ext in (".shp", ".shx", ".dbf", ".prj")]


def _normalise_dbf_header(dbf: Path) -> None:
    """Fix the DBF's "last update" date (bytes 1-3) and set its language driver to 0x57 ("ANSI")."""
    data = bytearray(dbf.read_bytes())
    data[1:4] = bytes([_FIXED_DATE.year - 1900, _FIXED_DATE.month, _FIXED_DATE.day])
    # 0x57 is what ArcMap writes whatever the code page: it declares nothing about GBK.
    data[29] = 0x57
    dbf.write_bytes(bytes(data))


def _write_lamps(path: Path, world: World) -> None:
    _write_geojson(
        path,
        "lamps",
        (
            _feature(
                _wgs84(world, a.geom),
                {
                    "路灯编号": a.source_id,
                    "设施类型": a.class_name,
                    "权属单位": a.owner,
                    "养护单位": a.maintainer,
                    "主管部门": a.supervisor,
                    "状态": a.state,
                    "建设日期": _iso(a.installed_on),
                    "所在道路": a.road,
                    **a.attributes,
                    "备注": SHORT_NOTE,
                },
            )
            for a in _of(world, "lamps")
        ),
    )


def _write_cables(path: Path, world: World) -> None:
    _write_geojson(
        path,
        "cables",
        (
            _feature(
                _wgs84(world, a.geom),
                {
                    "线路编号": a.source_id,
                    "权属单位": a.owner,
                    "状态": a.state,
                    "建设日期": _iso(a.installed_on),
                    "所在道路": a.road,
                    **a.attributes,
                    "备注": SHORT_NOTE,
                },
            )
            for a in _of(world, "cables")
        ),
    )


def format_dms(value: float, axis: Axis) -> str:
    """Degrees-minutes-seconds text as survey sheets write it, e.g. ``114°20'42.123"E``."""
    hemisphere = ("E" if value >= 0 else "W") if axis == "lon" else ("N" if value >= 0 else "S")
    milliseconds = round(abs(value) * 3_600_000)
    degrees, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds = rest / 1000
    return f"{degrees}°{minutes:02d}'{seconds:06.3f}\"{hemisphere}"


# Older sheets say 正常/损坏 instead of the standard's 完好/破损; the szcg value map translates them.
_OLD_STATE = {"完好": "正常", "破损": "损坏"}


def _write_covers(path: Path, world: World) -> None:
    """Manhole covers as a UTF-8 CSV (with BOM, as Excel saves it), coordinates as DMS text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(
        [
            "井盖编号",
            "井盖类型",
            "权属单位",
            "经度",
            "纬度",
            "所在道路",
            "状态",
            "建设日期",
            "井盖材质",
            "说明",
            "备注",
        ]
    )
    for index, a in enumerate(_of(world, "covers")):
        point = world.to_wgs84(a.geom)
        state = _OLD_STATE[a.state] if index % 3 == 0 and a.state in _OLD_STATE else a.state
        installed = (
            f"{a.installed_on.year}/{a.installed_on.month}/{a.installed_on.day}" if a.installed_on else ""
        )
        writer.writerow(
            [
                a.source_id,
                a.class_name,
                a.owner or "",
                format_dms(point.x, "lon"),
                format_dms(point.y, "lat"),
                a.road or "",
                state,
                installed,
                a.attributes.get("井盖材质", ""),
                a.attributes.get("说明", ""),
                SHORT_NOTE,
            ]
        )
    path.write_bytes("\ufeff".encode() + buffer.getvalue().encode("utf-8"))


def _write_poles(path: Path, world: World) -> None:
    """A pole ledger as Excel keeps it: a title row, then the header, then one pole per row."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "杆路台账"
    sheet.append(["坪山区杆路台账 (合成演示数据 SYNTHETIC, 不是真实数据)"])
    sheet["A1"].font = Font(bold=True)
    header = [
        "序号",
        "杆号",
        "设施类型",
        "产权单位",
        "经度",
        "纬度",
        "所在道路",
        "杆高m",
        "材质",
        "状态",
        "建设日期",
        "备注",
    ]
    sheet.append(header)
    for index, a in enumerate(_of(world, "poles"), start=1):
        point = _wgs84(world, a.geom)
        # Power poles are "电杆" in the power ledger, telecom ones "通信杆": both map to 0117 立杆.
        local_name = "电杆" if "供电" in (a.owner or "") else "通信杆" if index % 2 else a.class_name
        sheet.append(
            [
                index,
                a.source_id,
                local_name,
                a.owner,
                point.x,
                point.y,
                a.road,
                a.attributes["杆高m"],
                a.attributes["材质"],
                a.state,
                a.installed_on,
                SHORT_NOTE,
            ]
        )
    for column, width in zip("ABCDEFGHIJKL", (6, 12, 10, 36, 13, 12, 12, 7, 8, 6, 12, 14), strict=True):
        sheet.column_dimensions[column].width = width
    workbook.properties.creator = "smartcode demo (合成演示数据)"
    workbook.properties.created = _FIXED_DATE
    workbook.properties.modified = _FIXED_DATE
    buffer = io.BytesIO()
    workbook.save(buffer)
    path.write_bytes(_deterministic_zip(buffer.getvalue()))


_CORE_DATES = re.compile(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*(</dcterms:)")


def _deterministic_zip(data: bytes) -> bytes:
    """Rewrite an xlsx archive with fixed entry times (and fixed document dates) so its bytes repeat."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    stamp = _FIXED_DATE.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            content = source.read(item.filename)
            if item.filename == "docProps/core.xml":
                content = _CORE_DATES.sub(rb"\g<1>" + stamp + rb"\g<2>", content)
            info = zipfile.ZipInfo(item.filename, date_time=_FIXED_DATE.timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            target.writestr(info, content)
    return out.getvalue()
