"""The synthetic 坪山 pilot as plain data: zones, roads, units and assets, built from a seed.

Everything here is SYNTHETIC (合成演示数据): plausible shapes and names for 深圳市坪山区 (county
440310), invented so that a newcomer meets a realistic registry at once. Nothing is surveyed: street
and community boundaries are rectangles with a few bends, the road network is a small grid, the
credit codes are check-valid but carry ``DEM`` in their body, and the phone numbers cannot be dialled.

Geometry is laid out in metres around :data:`ORIGIN` (near the district government on 坪山大道) in
the deployment's metric CRS (EPSG:4547, CGCS2000 3-degree Gauss-Kruger CM 114E) and converted to
WGS84 lon/lat by the writers. The same seed always gives the same world.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry import LineString, Point, Polygon, box
from shapely.geometry.base import BaseGeometry

from gis.metric import MetricProjector, metric_projector
from registry.credit_code import credit_check_character

COUNTY = "440310"
DEFAULT_SEED = 440310
DATA_SOURCE = "合成演示数据"
SYNTHETIC_NOTE = "合成演示数据 SYNTHETIC demo data, not a real inventory"
SHORT_NOTE = "合成演示数据 SYNTHETIC"
# Near the 坪山区 government on 坪山大道 (WGS84): the centre of 坪山中心区.
ORIGIN = (114.345, 22.695)
METRIC_SRID = 4547


# --------------------------------------------------------------------------------------------------
# Units


@dataclass(frozen=True, slots=True)
class UnitSpec:
    """A synthetic unit: registered verified with a check-valid credit code before any import."""

    key: str  # short handle used inside the generator
    name: str
    kind: str
    credit_code: str
    phone: str
    aliases: tuple[str, ...] = ()
    parent: str | None = None  # key of the parent unit


def synthetic_credit_code(authority_type: str, county: str, serial: int) -> str:
    """A check-valid 统一社会信用代码 whose body reads ``DEM`` + serial, so nobody mistakes it for real."""
    first17 = f"{authority_type}{county}DEM{serial:06d}"
    return first17 + credit_check_character(first17)


def _phone(serial: int) -> str:
    # Shenzhen subscriber numbers never start with 0: "0755-0000xxxx" cannot reach anyone.
    return f"0755-0000{serial:04d}"


def _unit(
    serial: int,
    key: str,
    name: str,
    kind: str,
    authority_type: str,
    county: str,
    aliases: tuple[str, ...] = (),
    parent: str | None = None,
) -> UnitSpec:
    return UnitSpec(
        key=key,
        name=name,
        kind=kind,
        credit_code=synthetic_credit_code(authority_type, county, serial),
        phone=_phone(serial),
        aliases=aliases,
        parent=parent,
    )


# Registration authority + organisation type: 11 机关, 12 事业单位, 91 企业 (GB 32100).
# City-level companies carry the city's code 440300; Pingshan bodies 440310. Parents come first.
UNITS: tuple[UnitSpec, ...] = (
    _unit(1, "power_sz", "深圳供电局有限公司", "utility", "91", "440300", ("深圳供电局",)),
    _unit(
        2,
        "power",
        "深圳供电局有限公司坪山供电局",
        "utility",
        "91",
        COUNTY,
        ("坪山供电局", "供电局"),
        parent="power_sz",
    ),
    _unit(3, "telecom", "中国电信股份有限公司深圳分公司", "telecom", "91", "440300", ("深圳电信", "电信")),
    _unit(
        4, "mobile", "中国移动通信集团广东有限公司深圳分公司", "telecom", "91", "440300", ("深圳移动", "移动")
    ),
    _unit(
        5, "unicom", "中国联合网络通信有限公司深圳市分公司", "telecom", "91", "440300", ("深圳联通", "联通")
    ),
    _unit(6, "tower", "中国铁塔股份有限公司深圳市分公司", "telecom", "91", "440300", ("深圳铁塔", "铁塔")),
    _unit(7, "water_bureau", "深圳市坪山区水务局", "government", "11", COUNTY, ("坪山区水务局", "区水务局")),
    # Full-width parentheses are avoided in names on purpose: see the loader's note on name matching.
    _unit(
        8,
        "water",
        "深圳市水务集团有限公司坪山分公司",
        "utility",
        "91",
        COUNTY,
        ("坪山水务", "水务集团坪山分公司"),
    ),
    _unit(9, "gas", "深圳市燃气集团股份有限公司", "utility", "91", "440300", ("深圳燃气", "燃气集团")),
    _unit(
        10,
        "urban",
        "深圳市坪山区城市管理和综合执法局",
        "government",
        "11",
        COUNTY,
        ("坪山区城管局", "区城管局"),
    ),
    _unit(
        11,
        "lighting",
        "深圳市坪山区城市管理和综合执法局路灯管理所",
        "government",
        "12",
        COUNTY,
        ("路灯管理所", "坪山区路灯管理所"),
        parent="urban",
    ),
    _unit(
        12, "drc", "深圳市坪山区发展和改革局", "government", "11", COUNTY, ("坪山区发改局", "区发展和改革局")
    ),
    _unit(
        13,
        "so_pingshan",
        "深圳市坪山区坪山街道办事处",
        "street_office",
        "11",
        COUNTY,
        ("坪山街道办事处", "坪山街道办"),
    ),
    _unit(
        14,
        "so_maluan",
        "深圳市坪山区马峦街道办事处",
        "street_office",
        "11",
        COUNTY,
        ("马峦街道办事处", "马峦街道办"),
    ),
    _unit(
        15,
        "so_biling",
        "深圳市坪山区碧岭街道办事处",
        "street_office",
        "11",
        COUNTY,
        ("碧岭街道办事处", "碧岭街道办"),
    ),
    # Obviously invented: 示例 means "example".
    _unit(
        16,
        "contractor",
        "深圳市示例市政养护有限公司",
        "contractor",
        "91",
        COUNTY,
        ("示例养护公司", "示例市政养护"),
    ),
)
UNITS_BY_KEY: dict[str, UnitSpec] = {u.key: u for u in UNITS}


# --------------------------------------------------------------------------------------------------
# Zones and roads (metres around ORIGIN)


@dataclass(frozen=True, slots=True)
class ZoneSpec:
    """One zone polygon (metres around the origin) of a level, with its code and responsible unit."""

    level: str  # street | community | grid | contract | pilot
    name: str
    code: str | None
    unit: str | None  # the unit's name as the zones file writes it
    geom: Polygon


@dataclass(frozen=True, slots=True)
class RoadSpec:
    """A named road centre line (metres around the origin); arterials are wider and have no poles."""

    name: str
    geom: LineString
    arterial: bool
    power_poles: bool = False  # overhead 10 kV on this road: its poles belong to the power utility


# A shared, slightly bent line splits 坪山街道 (north) from 马峦街道 (south); it crosses the southern
# strip of 坪山中心区 on purpose, so the pilot zone's own rule visibly beats the street fallback.
_SOUTH = [(-4500, -400), (-2500, -480), (-800, -450), (600, -470), (1500, -450), (2500, -430)]
_EAST = [(1500, -450), (1450, 1000), (1550, 2500)]
EXTENT = (-4500.0, -2500.0, 2500.0, 2500.0)

_STREETS: tuple[tuple[str, str, str, list[tuple[float, float]]], ...] = (
    (
        "坪山街道",
        "440310001",
        "so_pingshan",
        [*_SOUTH[:5], *_EAST[1:], (-4500, 2500)],
    ),
    ("马峦街道", "440310002", "so_maluan", [(-4500, -2500), (2500, -2500), *reversed(_SOUTH)]),
    ("碧岭街道", "440310003", "so_biling", [_SOUTH[4], _SOUTH[5], (2500, 2500), *reversed(_EAST[1:])]),
)
# Communities: (street, name, 3-digit code, cutting box in metres).
_BIG = 10_000.0
_COMMUNITIES: tuple[tuple[str, str, str, tuple[float, float, float, float]], ...] = (
    ("坪山街道", "坪环社区", "001", (-_BIG, -_BIG, -1500, _BIG)),
    ("坪山街道", "和平社区", "002", (-1500, -_BIG, 0, 1000)),
    ("坪山街道", "六和社区", "003", (-1500, 1000, 0, _BIG)),
    ("坪山街道", "坪山社区", "004", (0, -_BIG, _BIG, _BIG)),
    ("马峦街道", "马峦社区", "001", (-_BIG, -_BIG, -1000, _BIG)),
    ("马峦街道", "沙坣社区", "002", (-1000, -_BIG, 1000, _BIG)),
    ("马峦街道", "江岭社区", "003", (1000, -_BIG, _BIG, _BIG)),
    ("碧岭街道", "碧岭社区", "001", (-_BIG, -_BIG, _BIG, 1000)),
    ("碧岭街道", "汤坑社区", "002", (-_BIG, 1000, _BIG, _BIG)),
)
CENTRE_PILOT = "坪山中心区"
PINGHUAN_PILOT = "坪环社区"
CONTRACT_ZONE = "坪山中心区路灯养护标段"
_CENTRE_BOX = (-800.0, -700.0, 1000.0, 600.0)
_CONTRACT_BOX = (-900.0, -800.0, 1100.0, 700.0)
GRID_CELL_M = 500.0

ROADS: tuple[RoadSpec, ...] = (
    RoadSpec("坪山大道", LineString([(-4400, 200), (-1500, 60), (0, 0), (2400, -300)]), arterial=True),
    RoadSpec("东纵路", LineString([(15, -1200), (0, 0), (-20, 1200)]), arterial=True),
    RoadSpec("龙兴大道", LineString([(720, -700), (700, 600)]), arterial=True),
    RoadSpec("行政一路", LineString([(-800, 420), (1000, 380)]), arterial=False),
    RoadSpec("金牛路", LineString([(-800, -380), (1000, -420)]), arterial=False),
    RoadSpec("龙勤路", LineString([(-600, -700), (-590, 600)]), arterial=False),
    RoadSpec("坪环路", LineString([(-4000, 800), (-1700, 820)]), arterial=False, power_poles=True),
    RoadSpec("宝山路", LineString([(-3000, -300), (-3020, 2000)]), arterial=False, power_poles=True),
    RoadSpec("环城北路", LineString([(-2200, -300), (-2180, 1600)]), arterial=False),
    RoadSpec("坪环工业路", LineString([(-3600, 1500), (-1700, 1480)]), arterial=False),
)


# --------------------------------------------------------------------------------------------------
# Assets


@dataclass(slots=True)
class AssetSpec:
    """One synthetic asset as an inventory would list it (unit names as the inventory spells them)."""

    dataset: str  # which inventory file it goes to: power, lamps, covers, poles, cables
    source_id: str
    class_code: str
    class_name: str
    geom: BaseGeometry  # metres around the origin
    owner: str | None
    maintainer: str | None = None
    supervisor: str | None = None
    state: str = "完好"
    installed_on: dt.date | None = None
    road: str | None = None
    code: str | None = None  # a 16-digit identifier the inventory already carries
    grid_code: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One row of the rules CSV: ``zone,level,class,category,unit,priority``."""

    zone: str
    level: str
    class_code: str
    category: str
    unit: str
    priority: int


@dataclass(slots=True)
class World:
    """The whole synthetic pilot: what the generator writes and the loader expects back."""

    seed: int
    zones: list[ZoneSpec]
    roads: tuple[RoadSpec, ...]
    units: tuple[UnitSpec, ...]
    assets: list[AssetSpec]
    rules: list[RuleSpec]
    projector: MetricProjector
    origin_m: tuple[float, float]

    def to_wgs84(self, geom: BaseGeometry) -> BaseGeometry:
        """A geometry in metres around the origin -> WGS84 lon/lat."""
        x0, y0 = self.origin_m
        return self.projector.unproject(shapely.transform(geom, lambda c: c + np.array([x0, y0])))

    def to_epsg4547(self, geom: BaseGeometry) -> BaseGeometry:
        """A geometry in metres around the origin -> absolute EPSG:4547 easting/northing."""
        x0, y0 = self.origin_m
        return shapely.transform(geom, lambda c: c + np.array([x0, y0]))

    def zone(self, level: str, name: str) -> ZoneSpec:
        """The zone of this level and name."""
        return next(z for z in self.zones if z.level == level and z.name == name)

    def zone_at(self, level: str, geom: BaseGeometry) -> ZoneSpec | None:
        """The zone of ``level`` covering ``geom``'s representative point, if any."""
        point = geom.representative_point()
        return next((z for z in self.zones if z.level == level and z.geom.covers(point)), None)


def unit_name(key: str) -> str:
    """The registered name of the unit with this generator key."""
    return UNITS_BY_KEY[key].name


def alias(key: str, index: int = 0) -> str:
    """One of the unit's aliases, as an inventory might spell it."""
    return UNITS_BY_KEY[key].aliases[index]


def _build_zones() -> list[ZoneSpec]:
    zones: list[ZoneSpec] = []
    streets: dict[str, tuple[Polygon, str]] = {}
    for name, code, unit_key, ring in _STREETS:
        polygon = Polygon(ring)
        assert polygon.is_valid, name
        streets[name] = (polygon, code)
        zones.append(ZoneSpec("street", name, code, unit_name(unit_key), polygon))
    communities: list[ZoneSpec] = []
    for street, name, suffix, cut in _COMMUNITIES:
        polygon, street_code = streets[street]
        piece = polygon.intersection(box(*cut))
        assert isinstance(piece, Polygon) and not piece.is_empty, name
        communities.append(ZoneSpec("community", name, street_code + suffix, None, piece))
    zones.extend(communities)

    centre = box(*_CENTRE_BOX)
    pinghuan = next(c for c in communities if c.name == PINGHUAN_PILOT).geom
    zones.append(ZoneSpec("pilot", CENTRE_PILOT, None, unit_name("so_pingshan"), centre))
    zones.append(ZoneSpec("pilot", PINGHUAN_PILOT, None, unit_name("so_pingshan"), pinghuan))
    zones.append(ZoneSpec("contract", CONTRACT_ZONE, None, unit_name("contractor"), box(*_CONTRACT_BOX)))
    zones.extend(_build_grids(communities, [centre, pinghuan]))
    return zones


def _build_grids(communities: list[ZoneSpec], pilots: list[Polygon]) -> list[ZoneSpec]:
    """单元网格 over the pilot areas: square cells cut by community, coded community + 3 digits."""
    covered = shapely.union_all(pilots)
    minx, miny, maxx, maxy = covered.bounds
    grids: list[ZoneSpec] = []
    for community in communities:
        index = 0
        y = miny
        while y < maxy:
            x = minx
            while x < maxx:
                cell = box(x, y, x + GRID_CELL_M, y + GRID_CELL_M).intersection(covered)
                piece = cell.intersection(community.geom)
                # Slivers from bent street boundaries are not worth a grid of their own.
                if isinstance(piece, Polygon) and piece.area > 2_000.0:
                    index += 1
                    code = f"{community.code}{index:03d}"  # 15 digits
                    grids.append(ZoneSpec("grid", code, code, None, piece))
                x += GRID_CELL_M
            y += GRID_CELL_M
    return grids


def _stations(
    line: LineString, spacing: float, rng: random.Random, *, margin: float, jitter: float
) -> Iterator[float]:
    """Distances along ``line`` every ``spacing`` metres (± jitter), keeping clear of both ends."""
    distance = margin + rng.uniform(0, spacing / 2)
    while distance < line.length - margin:
        yield distance
        distance += spacing + rng.uniform(-jitter, jitter)


def _offset_point(line: LineString, distance: float, offset: float) -> Point:
    """The point ``offset`` metres left (+) or right (-) of ``line`` at ``distance`` along it."""
    here = line.interpolate(distance)
    ahead = line.interpolate(min(distance + 0.5, line.length))
    behind = line.interpolate(max(distance - 0.5, 0.0))
    dx, dy = ahead.x - behind.x, ahead.y - behind.y
    norm = (dx * dx + dy * dy) ** 0.5
    return Point(here.x - dy / norm * offset, here.y + dx / norm * offset)


def _date(rng: random.Random, first_year: int = 2012, last_year: int = 2024) -> dt.date:
    start = dt.date(first_year, 1, 1).toordinal()
    end = dt.date(last_year, 12, 31).toordinal()
    return dt.date.fromordinal(rng.randint(start, end))


def _state(rng: random.Random, broken: float = 0.04) -> str:
    return "破损" if rng.random() < broken else "完好"


def _either(rng: random.Random, key: str, full_share: float) -> str:
    """The unit's full name or one of its aliases, as inventories mix both."""
    spec = UNITS_BY_KEY[key]
    if not spec.aliases or rng.random() < full_share:
        return spec.name
    return rng.choice(spec.aliases)


# Manhole covers drawn along roads: class, class name, owner key (None: none), weight.
_COVER_KINDS: tuple[tuple[str, str, str | None, float], ...] = (
    ("0101", "上水井盖", "water", 0.22),
    ("0102", "污水井盖", "water", 0.18),
    ("0103", "雨水井盖", "water_bureau", 0.22),
    ("0106", "路灯井盖", "lighting", 0.08),
    ("0107", "通讯井盖", "telecom_any", 0.18),
    ("0111", "燃气井盖", "gas", 0.12),
)
_OPERATORS = ("telecom", "mobile", "unicom")
# Deliberately placed ownerless covers (无主井盖): road, distance along it in metres.
OWNERLESS_SPOTS: tuple[tuple[str, float], ...] = (
    ("东纵路", 820.0),  # 坪山中心区, 坪山街道 part
    ("龙勤路", 180.0),  # 坪山中心区, 马峦街道 strip: the pilot rule wins over the street fallback
    ("金牛路", 1100.0),  # 坪山中心区
    ("坪环路", 700.0),  # 坪环社区: street fallback (坪山街道)
    ("宝山路", 1500.0),  # 坪环社区
    ("坪山大道", 6100.0),  # 碧岭街道, outside the pilots: street fallback (碧岭街道)
)


class _Sequence:
    """Running source ids per dataset (``PS-LD-00001`` ...), as a utility's own numbering."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def __call__(self, prefix: str) -> str:
        value = self._next.get(prefix, 0) + 1
        self._next[prefix] = value
        return f"{prefix}-{value:05d}"


def build_world(seed: int = DEFAULT_SEED) -> World:
    """The synthetic pilot for ``seed``: identical input gives an identical world."""
    rng = random.Random(seed)
    projector = metric_projector(METRIC_SRID)
    origin_m = projector.project_point(*ORIGIN)
    zones = _build_zones()
    world = World(
        seed=seed,
        zones=zones,
        roads=ROADS,
        units=UNITS,
        assets=[],
        rules=_rules(),
        projector=projector,
        origin_m=origin_m,
    )
    ids = _Sequence()
    _place_lamps(world, rng, ids)
    _place_poles_and_cables(world, rng, ids)
    _place_covers(world, rng, ids)
    _place_power(world, rng, ids)
    for asset in world.assets:
        grid = world.zone_at("grid", asset.geom)
        asset.grid_code = grid.code if grid else None
    return world


def _on_crossing_road(world: World, road: RoadSpec, point: Point) -> bool:
    """True when ``point`` would stand in the carriageway of another road (at a crossing)."""
    return any(other is not road and other.geom.distance(point) < 9.0 for other in world.roads)


def _place_lamps(world: World, rng: random.Random, ids: _Sequence) -> None:
    """Street lamps (0118) every ~35 m on both sides of every road."""
    contract = world.zone("contract", CONTRACT_ZONE).geom
    pinghuan = world.zone("pilot", PINGHUAN_PILOT).geom
    for road in world.roads:
        setback = 13.0 if road.arterial else 9.0
        for side in (1, -1):
            for distance in _stations(road.geom, 35.0, rng, margin=15.0, jitter=3.0):
                point = _offset_point(road.geom, distance, side * (setback + rng.uniform(-0.8, 0.8)))
                if _on_crossing_road(world, road, point):
                    continue
                # Lamps on the side roads of the urban village were built by the street office itself.
                village = not road.arterial and pinghuan.covers(point)
                owner = _either(rng, "so_pingshan", 0.5) if village else _either(rng, "lighting", 0.4)
                maintainer = _either(rng, "contractor", 0.5) if contract.covers(point) else owner
                world.assets.append(
                    AssetSpec(
                        dataset="lamps",
                        source_id=ids("PS-LD"),
                        class_code="0118",
                        class_name="路灯",
                        geom=point,
                        owner=owner,
                        maintainer=maintainer,
                        supervisor=_either(rng, "urban", 0.5),
                        state=_state(rng),
                        installed_on=_date(rng),
                        road=road.name,
                        attributes={
                            "功率W": rng.choice((100, 150, 250)),
                            "灯杆高度m": 12 if road.arterial else 8,
                            "光源": rng.choice(("LED", "LED", "高压钠灯")),
                        },
                    )
                )


def _place_poles_and_cables(world: World, rng: random.Random, ids: _Sequence) -> None:
    """Poles (0117) every ~50 m on one side of side roads; overhead cables (2105) span neighbours."""
    for road in world.roads:
        if road.arterial:
            continue  # arterials carry their cables underground
        poles: list[tuple[Point, str]] = []
        for distance in _stations(road.geom, 50.0, rng, margin=20.0, jitter=5.0):
            point = _offset_point(road.geom, distance, 11.0 + rng.uniform(-0.5, 0.5))
            if _on_crossing_road(world, road, point):
                continue
            if road.power_poles:
                owner_key = "power"
            else:
                owner_key = rng.choices(("tower", *_OPERATORS), weights=(5, 2, 1.5, 1.5))[0]
            poles.append((point, owner_key))
            world.assets.append(
                AssetSpec(
                    dataset="poles",
                    source_id=ids("PS-DG"),
                    class_code="0117",
                    class_name="立杆",
                    geom=point,
                    owner=_either(rng, owner_key, 0.6),
                    state=_state(rng, 0.03),
                    installed_on=_date(rng, 2008, 2022),
                    road=road.name,
                    attributes={"杆高m": rng.choice((8, 10, 12)), "材质": rng.choice(("水泥杆", "钢杆"))},
                )
            )
        for (start, start_owner), (end, _) in itertools.pairwise(poles):
            carriers = list(rng.sample(_OPERATORS, rng.randint(1, 3)))
            if start_owner == "power":
                carriers.insert(0, "power")
            for lane, owner_key in enumerate(carriers):
                # A few decimetres apart, as cables hang side by side on the cross-arm.
                shift = 0.3 * lane
                line = LineString([(start.x, start.y + shift), (end.x, end.y + shift)])
                world.assets.append(
                    AssetSpec(
                        dataset="cables",
                        source_id=ids("PS-XL"),
                        class_code="2105",
                        class_name="架空线缆",
                        geom=line,
                        owner=_either(rng, owner_key, 0.5),
                        state=_state(rng, 0.05),
                        installed_on=_date(rng, 2010, 2024),
                        road=road.name,
                        attributes={"线缆类型": "10kV架空线" if owner_key == "power" else "通信光缆"},
                    )
                )


def ownerless_points(world: World) -> list[Point]:
    """Where the ownerless covers lie (metres around the origin), in OWNERLESS_SPOTS order."""
    roads = {road.name: road for road in world.roads}
    return [_offset_point(roads[name].geom, distance, 1.5) for name, distance in OWNERLESS_SPOTS]


def _clear_of(points: list[Point], point: Point, metres: float = 35.0) -> bool:
    """True when ``point`` keeps ``metres`` from every point of ``points``."""
    return all(point.distance(other) >= metres for other in points)


def _place_covers(world: World, rng: random.Random, ids: _Sequence) -> None:
    """Manhole covers near the centre line of every road, plus the deliberately ownerless ones."""
    ownerless = ownerless_points(world)
    weights = [kind[3] for kind in _COVER_KINDS]
    for road in world.roads:
        for distance in _stations(road.geom, 24.0, rng, margin=10.0, jitter=5.0):
            point = _offset_point(road.geom, distance, rng.uniform(-4.0, 4.0))
            # Keep a clear circle around each ownerless cover, so a complaint there finds it alone.
            if not _clear_of(ownerless, point):
                continue
            class_code, class_name, owner_key, _ = rng.choices(_COVER_KINDS, weights=weights)[0]
            if owner_key == "telecom_any":
                owner_key = rng.choice(_OPERATORS)
            assert owner_key is not None
            world.assets.append(
                AssetSpec(
                    dataset="covers",
                    source_id=ids("PS-JG"),
                    class_code=class_code,
                    class_name=class_name,
                    geom=point,
                    owner=_either(rng, owner_key, 0.6),
                    state=_state(rng, 0.06),
                    installed_on=_date(rng),
                    road=road.name,
                    attributes={"井盖材质": rng.choice(("球墨铸铁", "球墨铸铁", "复合材料"))},
                )
            )
    for point, (road_name, _) in zip(ownerless, OWNERLESS_SPOTS, strict=True):
        world.assets.append(
            AssetSpec(
                dataset="covers",
                source_id=ids("PS-JG"),
                class_code="0114",
                class_name="无主井盖",
                geom=point,
                owner=None,
                state="破损" if rng.random() < 0.5 else "完好",
                road=road_name,
                attributes={"井盖材质": "铸铁", "说明": "权属不明 (synthetic)"},
            )
        )


def _place_power(world: World, rng: random.Random, ids: _Sequence) -> None:
    """The power utility's inventory: covers, transformers, distribution boxes and rooms."""
    coded: dict[str, int] = {}
    ownerless = ownerless_points(world)
    for road in world.roads:
        line = road.geom
        if road.arterial:
            for distance in _stations(line, 80.0, rng, margin=30.0, jitter=10.0):
                point = _offset_point(line, distance, -5.5)
                if _clear_of(ownerless, point):
                    _power_asset(world, rng, ids, coded, "0105", "电力井盖", point, road)
            for distance in _stations(line, 600.0, rng, margin=100.0, jitter=50.0):
                point = _offset_point(line, distance, 17.0)
                _power_asset(world, rng, ids, coded, "0134", "变压器(箱)", point, road)
        else:
            for distance in _stations(line, 300.0, rng, margin=40.0, jitter=30.0):
                point = _offset_point(line, distance, -12.0)
                _power_asset(world, rng, ids, coded, "2104", "配电箱", point, road)
    for road_name, distance in (
        ("坪山大道", 4300.0),
        ("东纵路", 300.0),
        ("坪环路", 1200.0),
        ("龙兴大道", 900.0),
    ):
        road = next(r for r in world.roads if r.name == road_name)
        point = _offset_point(road.geom, distance, -25.0)
        _power_asset(world, rng, ids, coded, "2103", "配电房", point, road)


# Identifiers the utility's records already carry (from an older 数字城管 survey) start here, far
# above what the registry allocates for a fresh deployment.
LEGACY_SERIAL_START = 5001


def _power_asset(
    world: World,
    rng: random.Random,
    ids: _Sequence,
    coded: dict[str, int],
    class_code: str,
    class_name: str,
    point: Point,
    road: RoadSpec,
) -> None:
    code = None
    if rng.random() < 0.2:
        serial = coded.get(class_code, LEGACY_SERIAL_START)
        coded[class_code] = serial + 1
        code = f"{COUNTY}{class_code}{serial:06d}"
    world.assets.append(
        AssetSpec(
            dataset="power",
            source_id=ids("PS-GD"),
            class_code=class_code,
            class_name=class_name,
            geom=point,
            # The utility's own export names itself by its short name most of the time.
            owner=_either(rng, "power", 0.3),
            maintainer=unit_name("power"),
            supervisor=unit_name("drc"),
            state=_state(rng, 0.03),
            installed_on=_date(rng, 2005, 2023),
            road=road.name,
            code=code,
        )
    )


def _rules() -> list[RuleSpec]:
    """The responsibility rules of the pilot (职责清单), as the rules CSV lists them.

    There is deliberately no catch-all rule per street: the street zones name their street office,
    so what no asset and no rule decides falls to it through the jurisdiction fallback (属地兜底).
    """
    return [
        # 无主井盖 in the centre pilot go to the 坪山 street office, even in the pilot's 马峦 strip.
        RuleSpec(CENTRE_PILOT, "pilot", "0114", "", alias("so_pingshan"), 100),
        RuleSpec(CENTRE_PILOT, "pilot", "", "路灯不亮", alias("lighting"), 50),
        RuleSpec(PINGHUAN_PILOT, "pilot", "", "路灯不亮", unit_name("so_pingshan"), 50),
        RuleSpec(PINGHUAN_PILOT, "pilot", "", "线缆垂吊", alias("so_pingshan", 1), 50),
        # District-wide (no zone): gas facilities are always the gas company's.
        RuleSpec("", "", "0111", "", alias("gas", 1), 10),
    ]
