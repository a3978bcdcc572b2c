"""Validating mapped rows, column by column: geometry, area, zone, class, code, units.

Input is a :class:`importers.mapping.DraftChunk` (registry fields, geometry still in the source
CRS); output is a :class:`ValidChunk`, the rows that passed as columns ready to stage, plus one
:class:`RowProblem` per rejected row and reason. Everything runs on whole columns (numpy, shapely
vectorised, per-distinct-value lookups) because inventories reach millions of rows. What needs
the registry's current state (codes already taken, source ids already imported) is checked
afterwards in SQL, on the staged rows (see :mod:`importers.merge`).
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.area import ServiceArea
from gis.crs import WGS84, Crs, to_wgs84_arrays
from importers.mapping import DraftChunk, has_value
from importers.profiles import Profile
from importers.source import RowProblem
from registry import audit
from registry.access import Action, Actor, authorize
from registry.classes import ALLOWED_GEOMETRIES, ClassNames
from registry.codes import InvalidCode, check_digits, parse_code
from registry.limits import MAX_ATTRIBUTES_BYTES, MAX_VERTICES
from registry.messages import Bilingual, both
from registry.names import fold
from registry.units import match_unit_ids, near_misses

ObjectArray = npt.NDArray[np.object_]
BoolArray = npt.NDArray[np.bool_]


# shapely type ids allowed for each class geometry kind (see registry.classes.ALLOWED_GEOMETRIES).
_TYPE_IDS = {
    "Point": 0,
    "LineString": 1,
    "Polygon": 3,
    "MultiPoint": 4,
    "MultiLineString": 5,
    "MultiPolygon": 6,
}
_ALLOWED_IDS = {kind: {_TYPE_IDS[name] for name in names} for kind, names in ALLOWED_GEOMETRIES.items()}
_TYPE_NAMES = {v: k for k, v in _TYPE_IDS.items()} | {2: "LinearRing", 7: "GeometryCollection"}
# Rows without any identifier are recognised on re-import by class and position, to about 1 cm.
_DERIVED_SCALE = 1e7
DERIVED_PREFIX = "geom:"


# --------------------------------------------------------------------------------------------------
# Reference data, loaded once per import


@dataclass(frozen=True)
class ClassInfo:
    """What validation needs of a component class."""

    code: str
    name: str
    geometry_type: str
    active: bool


@dataclass
class ClassTable:
    """Classes by code, and the class lookup (:class:`registry.classes.ClassNames`) with the profile's
    local variants added."""

    by_code: dict[str, ClassInfo]
    names: ClassNames

    @classmethod
    def load(cls, session: Session, profile: Profile) -> ClassTable:
        """Read the class table, adding the profile's local names (local name -> national code)."""
        rows = session.execute(
            text("SELECT code, name, geometry_type, active, aliases FROM component_classes")
        ).all()
        by_code = {r.code: ClassInfo(r.code, r.name, r.geometry_type, r.active) for r in rows}
        names = ClassNames.from_rows((r.code, r.name, r.aliases, r.active) for r in rows)
        for label, code in profile.classes.items():
            names.by_name[fold(label)] = code
        return cls(by_code, names)

    def resolve(self, code: str | None, name: str | None) -> tuple[str | None, str | None]:
        """(class code, None) or (None, reason): a known code wins, then a known name or alias."""
        if code is not None:
            mapped = self.names.code_for(code)
            if mapped is not None:
                return mapped, None
        if name is not None:
            mapped = self.names.code_for(name)
            if mapped is not None:
                return mapped, None
            return None, both("imp.class.unknown", name=name)
        if code is not None:
            return None, both("imp.class.unknown_code", code=code)
        return None, None


class UnitResolver:
    """Unit names to unit ids, set-based: one query per chunk for the names not seen before.

    Names, aliases and credit codes match as in :func:`registry.units.find_unit`; names that match
    nothing become new unverified units (as :func:`registry.units.ensure_unit` would make them),
    created in the import's transaction and listed in the report, when the actor may create units
    (administrators); for other actors such rows are rejected with the closest registered names.

    A near miss of a registered unit (中国铁塔深圳分公司 beside 中国铁塔股份有限公司深圳市分公司, a
    mistyped character) is not created even for an administrator: it is held, its rows rejected with
    the closest names, until an alias settles it or ``create_near_misses`` (``--create-units``) says
    it really is another unit. A typo would otherwise become a made-up owner of real assets.
    """

    _CREATE = text(
        """
        INSERT INTO units (name, kind, aliases, verified, county_code)
        SELECT n, 'other', '{}', false, :county FROM unnest(CAST(:names AS text[])) AS n
        ON CONFLICT (name) DO NOTHING
        RETURNING id, name
        """
    )

    def __init__(
        self, session: Session, actor: Actor, county: str, *, create_near_misses: bool = False
    ) -> None:
        self.session = session
        self.actor = actor
        self.county = county
        self.ids: dict[str, int] = {}
        self.created: list[str] = []
        self.held: dict[str, list[str]] = {}  # near misses not created -> closest registered names
        self.create_near_misses = create_near_misses
        self.may_create = authorize(actor, Action.CREATE_UNIT)
        self._names: dict[str, str] | None = None  # folded name or alias -> registered name
        self._suggested: dict[str, list[str]] = {}

    def suggestions(self, name: str, limit: int = 3) -> list[str]:
        """The registered unit names closest to ``name`` (names and aliases compared folded)."""
        if name in self._suggested:
            return self._suggested[name]
        if self._names is None:
            rows = self.session.execute(text("SELECT name, aliases FROM units")).all()
            self._names = {}
            for unit_name, aliases in rows:
                for label in (unit_name, *(aliases or ())):
                    self._names.setdefault(fold(label), unit_name)
        close = difflib.get_close_matches(fold(name), list(self._names), n=limit * 2, cutoff=0.5)
        found = self._suggested[name] = list(dict.fromkeys(self._names[key] for key in close))[:limit]
        return found

    def resolve(self, names: Sequence[str], *, create: bool = True) -> None:
        """Look up every name in ``names`` into ``self.ids``, creating the unknown ones if ``create``."""
        todo = [n for n in dict.fromkeys(names) if n not in self.ids]
        if not todo:
            return
        missing: list[str] = []
        for name, unit_id in zip(todo, match_unit_ids(self.session, todo), strict=True):
            if unit_id is None:
                missing.append(name)
            else:
                self.ids[name] = unit_id
        if missing and create and not self.create_near_misses:
            for name in missing:
                close = near_misses(name, self.suggestions(name))
                if close:
                    self.held[name] = close
            missing = [n for n in missing if n not in self.held]
        if missing and create:
            created = self.session.execute(self._CREATE, {"names": missing, "county": self.county}).all()
            for unit_id, name in created:
                self.ids[name] = unit_id
                self.created.append(name)
                audit.record(
                    self.session,
                    self.actor,
                    "create",
                    "unit",
                    unit_id,
                    reason=both("imp.unit_created"),
                )
            # A name that differs from an existing one only by spacing is found on a second look.
            rest = [n for n in missing if n not in self.ids]
            if rest:
                for name, unit_id in zip(rest, match_unit_ids(self.session, rest), strict=True):
                    if unit_id is not None:
                        self.ids[name] = unit_id

    def unknown_reason(self, target: str, name: str) -> str:
        """Why a row naming an unregistered unit is rejected, with the closest registered names."""
        held = self.held.get(name)
        field_label = both(f"field.{target}")
        if held is not None:
            return both("imp.unit.held", target=field_label, name=name, close=_names(held), first=held[0])
        close = self.suggestions(name)
        hint = both("imp.unit.hint", close=_names(close)) if close else ""
        return both("imp.unit.unknown", target=field_label, name=name, hint=hint)

    def ids_for(self, names: ObjectArray, *, create: bool = True) -> ObjectArray:
        """Unit ids (or None) for a column of names."""
        present = [n for n in dict.fromkeys(names.tolist()) if n is not None]
        self.resolve(present, create=create)
        lookup = self.ids.get
        out = np.empty(len(names), dtype=object)
        out[:] = [None if n is None else lookup(n) for n in names.tolist()]
        return out


@dataclass(frozen=True)
class Zone:
    """A zone the import is restricted to: rows outside it are rejected."""

    id: int
    name: str
    level: str
    geometry: shapely.Geometry


@dataclass
class ValidationContext:
    """What validation of every chunk of one import shares."""

    county: str
    area: ServiceArea
    crs: Crs
    swapped: bool
    classes: ClassTable
    units: UnitResolver
    scope: str
    field_names: dict[str, str] = field(default_factory=dict)  # target -> source field, for reports
    zone: Zone | None = None
    actor_unit: int | None = None
    actor_unit_name: str | None = None

    @property
    def actor(self) -> Actor:
        """Who imports (the policy decides what its rows may do)."""
        return self.units.actor

    @property
    def session(self) -> Session:
        """The import's transaction."""
        return self.units.session


# --------------------------------------------------------------------------------------------------
# The result


@dataclass
class ValidChunk:
    """Rows that passed, as columns in the staging table's order, and the problems of the others."""

    columns: dict[str, Any]
    problems: list[RowProblem]
    rejected_rows: int
    read_rows: int

    def __len__(self) -> int:
        return len(self.columns["row"])


STAGE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("row", "integer"),
    ("source_id", "text"),
    ("code", "text"),
    ("serial", "integer"),
    ("class_code", "text"),
    ("lon", "double precision"),
    ("lat", "double precision"),
    ("wkb", "text"),
    ("owner_id", "bigint"),
    ("maintainer_id", "bigint"),
    ("supervisor_id", "bigint"),
    ("state", "text"),
    ("in_use", "boolean"),
    ("changed_on", "date"),
    ("grid_code", "text"),
    ("data_source", "text"),
    ("note", "text"),
    ("installed_on", "date"),
    ("attributes", "jsonb"),
)


def _names(names: Sequence[str]) -> Bilingual:
    """Registered names listed as each language lists them."""
    return Bilingual("、".join(names), " / ".join(names))


class _Rejections:
    """Collects row problems; a row with any problem is rejected."""

    def __init__(self, draft: DraftChunk, ctx: ValidationContext) -> None:
        self.rows = draft.rows
        self.ctx = ctx
        self.bad = np.zeros(len(draft), dtype=bool)
        self.problems: list[RowProblem] = list(draft.problems)
        if draft.problems:
            where = np.isin(self.rows, np.fromiter((p.row for p in draft.problems), dtype=np.int64))
            self.bad |= where

    def add(
        self, mask: BoolArray, target: str, reason: Callable[[int], str], value: Callable[[int], Any]
    ) -> None:
        """Reject the rows in ``mask`` (those not rejected yet), each with its own reason."""
        fresh = np.flatnonzero(mask & ~self.bad)
        field_name = self.ctx.field_names.get(target, target)
        for i in fresh.tolist():
            raw = value(i)
            self.problems.append(
                RowProblem(int(self.rows[i]), field_name, reason(i), None if raw is None else str(raw)[:200])
            )
        self.bad[fresh] = True


# --------------------------------------------------------------------------------------------------
# Validation


def validate_chunk(draft: DraftChunk, ctx: ValidationContext) -> ValidChunk:
    """Check every row of ``draft``; the rows that pass come back as stage columns."""
    n = len(draft)
    rej = _Rejections(draft, ctx)

    class_codes = _classes(draft, ctx, rej)
    codes, serials = _codes(draft, ctx, rej, class_codes)
    lon, lat, wkb, key_coords = _geometry(draft, ctx, rej, class_codes)
    attributes = _attributes_json(draft)
    _check_attribute_sizes(attributes, rej)
    owner, maintainer, supervisor = _units(draft, ctx, rej)

    source_ids = _source_ids(draft, ctx, codes, class_codes, key_coords)
    if not authorize(ctx.actor, Action.HAND_OVER_DIRECT):
        _refuse_foreign_maintainer(draft, ctx, rej, maintainer, source_ids, codes)
    keep = ~rej.bad
    columns: dict[str, Any] = {
        "row": draft.rows[keep],
        "source_id": source_ids[keep],
        "code": codes[keep],
        "serial": serials[keep],
        "class_code": class_codes[keep],
        "lon": lon[keep] if lon is not None else None,
        "lat": lat[keep] if lat is not None else None,
        "wkb": wkb[keep] if wkb is not None else None,
        "owner_id": owner[keep],
        "maintainer_id": maintainer[keep],
        "supervisor_id": supervisor[keep],
        "state": draft.state[keep],
        "in_use": draft.in_use[keep],
        "changed_on": draft.changed[keep],
        "grid_code": draft.grid[keep],
        "data_source": draft.data_source[keep],
        "note": draft.note[keep],
        "installed_on": draft.installed[keep],
        "attributes": attributes[keep],
    }
    rej.problems.sort(key=lambda p: p.row)
    return ValidChunk(columns, rej.problems, int(rej.bad.sum()), n)


def _classes(draft: DraftChunk, ctx: ValidationContext, rej: _Rejections) -> ObjectArray:
    """The 4-digit class of every row (None where unknown: the row is rejected)."""
    n = len(draft)
    out = np.empty(n, dtype=object)
    memo: dict[tuple[str | None, str | None], tuple[str | None, str | None]] = {}
    reasons: dict[int, str] = {}
    codes = draft.class_code.tolist()
    names = draft.class_name.tolist()
    own_codes = draft.code.tolist()
    for i in range(n):
        pair = (codes[i], names[i])
        hit = memo.get(pair)
        if hit is None:
            hit = memo[pair] = ctx.classes.resolve(*pair)
        code, reason = hit
        if code is None and reason is None:
            # No class in the file: the class part of the row's smart code, if it has one.
            own = own_codes[i]
            code = (
                own[6:10] if own is not None and len(own) >= 10 and own[6:10] in ctx.classes.by_code else None
            )
            if code is None:
                reason = both("imp.class.none")
        if reason is not None:
            reasons[i] = reason
        out[i] = code
    if reasons:
        mask = np.zeros(n, dtype=bool)
        mask[list(reasons)] = True
        rej.add(mask, "class_name", reasons.__getitem__, lambda i: names[i] or codes[i])
    retired = np.array(
        [c is not None and not ctx.classes.by_code[c].active for c in out.tolist()], dtype=bool
    )
    if retired.any():
        rej.add(
            retired,
            "class_name",
            lambda i: both("imp.class.retired", code=out[i], name=ctx.classes.by_code[out[i]].name),
            lambda i: names[i] or codes[i],
        )
    return out


def _codes(
    draft: DraftChunk, ctx: ValidationContext, rej: _Rejections, class_codes: ObjectArray
) -> tuple[ObjectArray, npt.NDArray[np.object_]]:
    """17-digit codes (16-digit identifiers gain their check digit) and serials; None to allocate."""
    n = len(draft)
    codes = np.full(n, None, dtype=object)
    serials = np.full(n, None, dtype=object)
    given = draft.code.tolist()
    present = [i for i in range(n) if given[i] is not None]
    if not present:
        return codes, serials
    reasons: dict[int, str] = {}
    # Fast path: plain 16/17 digits; anything else goes through parse_code for its exact message.
    by_prefix: dict[str, list[int]] = {}
    for i in present:
        text_code = given[i]
        if not (text_code.isdigit() and text_code.isascii() and len(text_code) in (16, 17)):
            try:
                parsed = parse_code(text_code)
            except InvalidCode as exc:
                reasons[i] = exc.message
                continue
            text_code = str(parsed)
        by_prefix.setdefault(text_code[:10], []).append(i)
        codes[i] = text_code
    for prefix, members in by_prefix.items():
        serial_values = np.array([int(codes[i][10:16]) for i in members], dtype=np.int64)
        checks = check_digits(prefix, serial_values)
        for i, serial, check in zip(members, serial_values.tolist(), checks.tolist(), strict=True):
            code = codes[i]
            if len(code) == 17 and int(code[16]) != check:
                reasons[i] = both("imp.code.check", code=code, expected=check, got=code[16])
                codes[i] = None
                continue
            if prefix[:6] != ctx.county:
                reasons[i] = both("imp.code.county", code=code, county=prefix[:6], here=ctx.county)
                codes[i] = None
                continue
            cls = class_codes[i]
            if cls is not None and prefix[6:10] != cls:
                reasons[i] = both("imp.code.class", code=code, named=prefix[6:10], cls=cls)
                codes[i] = None
                continue
            codes[i] = code[:16] + str(check)
            serials[i] = serial
    if not authorize(ctx.actor, Action.REGISTER_WITH_CODE):
        _refuse_adoption(ctx, codes, serials, reasons)
    if reasons:
        mask = np.zeros(n, dtype=bool)
        mask[list(reasons)] = True
        rej.add(mask, "code", reasons.__getitem__, lambda i: given[i])
    return codes, serials


def _refuse_adoption(
    ctx: ValidationContext, codes: ObjectArray, serials: ObjectArray, reasons: dict[int, str]
) -> None:
    """Reject rows whose code is not registered: adopting an identifier is for administrators only.

    As with ``POST /assets`` and a code: an adopted serial moves the class's counter, so a unit
    token could use up a class's codes for everyone. A registered code (the unit's own asset,
    updated) is fine; the owner check comes later (``importers.merge``).
    """
    given = [i for i, code in enumerate(codes.tolist()) if code is not None]
    if not given:
        return
    registered = set(
        ctx.session.execute(
            text("SELECT code FROM assets WHERE code = ANY(CAST(:codes AS text[]))"),
            {"codes": [codes[i] for i in given]},
        ).scalars()
    )
    for i in given:
        if codes[i] not in registered:
            reasons[i] = both("imp.code.unregistered", code=codes[i])
            codes[i] = None
            serials[i] = None


def _geometry(
    draft: DraftChunk, ctx: ValidationContext, rej: _Rejections, class_codes: ObjectArray
) -> tuple[
    npt.NDArray[np.float64] | None,
    npt.NDArray[np.float64] | None,
    ObjectArray | None,
    npt.NDArray[np.float64],
]:
    """WGS84 lon/lat (points) or hex WKB (other shapes), and a key coordinate per row."""
    n = len(draft)
    kinds = np.array(
        [ctx.classes.by_code[c].geometry_type if c is not None else None for c in class_codes.tolist()],
        dtype=object,
    )
    if draft.geometry is None:
        xs = draft.xs if draft.xs is not None else np.full(n, np.nan)
        ys = draft.ys if draft.ys is not None else np.full(n, np.nan)
        return _points(xs, ys, ctx, rej, kinds)
    geoms = np.asarray(draft.geometry, dtype=object)
    missing = np.array([g is None for g in geoms.tolist()], dtype=bool)
    if not missing.any():
        missing = shapely.is_empty(geoms)
    else:
        missing[~missing] = shapely.is_empty(geoms[~missing])
    rej.add(missing, "geometry", lambda i: both("imp.geom.none"), lambda i: None)
    ok = ~missing
    types = np.full(n, -1, dtype=np.int64)
    types[ok] = shapely.get_type_id(geoms[ok])
    geoms = _single_points(geoms, types)
    if (types > 0).any():  # a Point has one vertex: files of points skip the count
        _check_vertices(geoms, ok, rej)
    if ok.any() and (types[ok] == 0).all() and ok.all():
        coords = shapely.get_coordinates(geoms)
        return _points(coords[:, 0].copy(), coords[:, 1].copy(), ctx, rej, kinds)
    out = np.full(n, None, dtype=object)
    if ok.any():
        out[ok] = _to_wgs84_geometries(geoms[ok], ctx)
        if shapely.get_coordinate_dimension(out[ok]).max(initial=2) > 2:
            out[ok] = shapely.force_2d(out[ok])
    _check_types(types, kinds, ctx, rej)
    live = ok & ~rej.bad
    if live.any():
        valid = np.zeros(n, dtype=bool)
        valid[live] = shapely.is_valid(out[live])
        rej.add(
            live & ~valid,
            "geometry",
            lambda i: both("imp.geom.invalid", why=shapely.is_valid_reason(out[i])),
            lambda i: None,
        )
    live = ok & ~rej.bad
    inside = np.zeros(n, dtype=bool)
    if live.any():
        inside[live] = shapely.covers(ctx.area.accepted_region, out[live])
    rej.add(live & ~inside, "geometry", lambda i: _outside_reason(ctx, out[i]), lambda i: None)
    if ctx.zone is not None:
        live = ok & ~rej.bad
        in_zone = np.zeros(n, dtype=bool)
        if live.any():
            in_zone[live] = shapely.covers(ctx.zone.geometry, out[live])
        rej.add(live & ~in_zone, "geometry", lambda i: _zone_reason(ctx), lambda i: None)
    live = ok & ~rej.bad
    wkb = np.full(n, None, dtype=object)
    # Points are keyed by their WGS84 position here too, exactly as in the all-points fast path,
    # so a point's identity never depends on what else is in its chunk.
    key = np.full((n, 2), np.nan)
    if live.any():
        wkb[live] = shapely.to_wkb(out[live], hex=True)
    single = ok & (types == 0)
    if single.any():
        key[single] = shapely.get_coordinates(out[single])[:, :2]
    return None, None, wkb, key


def _single_points(geoms: ObjectArray, types: npt.NDArray[np.int64]) -> ObjectArray:
    """MultiPoints of one point as Points (shapefiles often store points so); ``types`` updated."""
    multi = np.flatnonzero(types == _TYPE_IDS["MultiPoint"])
    if len(multi) == 0:
        return geoms
    one = multi[shapely.get_num_geometries(geoms[multi]) == 1]
    if len(one) == 0:
        return geoms
    geoms = geoms.copy()
    geoms[one] = shapely.get_geometry(geoms[one], 0)
    types[one] = _TYPE_IDS["Point"]
    return geoms


def _check_vertices(geoms: ObjectArray, ok: BoolArray, rej: _Rejections) -> None:
    """Reject geometries with more than MAX_VERTICES coordinates."""
    counts = np.zeros(len(geoms), dtype=np.int64)
    counts[ok] = shapely.get_num_coordinates(geoms[ok])
    rej.add(
        counts > MAX_VERTICES,
        "geometry",
        lambda i: both("imp.geom.vertices", count=int(counts[i]), most=MAX_VERTICES),
        lambda i: None,
    )


def _check_attribute_sizes(attributes: ObjectArray, rej: _Rejections) -> None:
    """Reject rows whose attribute bag is over MAX_ATTRIBUTES_BYTES as JSON."""
    # Characters first (cheap); a bag that might be over in UTF-8 bytes is measured exactly.
    quarter = MAX_ATTRIBUTES_BYTES // 4
    sizes = np.array(
        [0 if a is None else (len(a) if len(a) <= quarter else len(a.encode())) for a in attributes.tolist()],
        dtype=np.int64,
    )
    rej.add(
        sizes > MAX_ATTRIBUTES_BYTES,
        "attributes",
        lambda i: both("imp.attributes.size", size=int(sizes[i]), most=MAX_ATTRIBUTES_BYTES // 1024),
        lambda i: None,
    )


def _to_wgs84_geometries(geoms: ObjectArray, ctx: ValidationContext) -> ObjectArray:
    crs, swapped = ctx.crs, ctx.swapped
    if crs == WGS84 and not swapped:
        return geoms

    def convert(coords: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        x, y = (coords[:, 1], coords[:, 0]) if swapped else (coords[:, 0], coords[:, 1])
        lon, lat = to_wgs84_arrays(x, y, crs)
        return np.column_stack([lon, lat])

    result: ObjectArray = shapely.transform(geoms, convert)
    return result


def _points(
    xs: npt.NDArray[np.float64],
    ys: npt.NDArray[np.float64],
    ctx: ValidationContext,
    rej: _Rejections,
    kinds: ObjectArray,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], None, npt.NDArray[np.float64]]:
    n = len(xs)
    if ctx.swapped:
        xs, ys = ys, xs
    missing = ~(np.isfinite(xs) & np.isfinite(ys))
    rej.add(missing, "geometry", lambda i: both("imp.geom.no_numbers"), lambda i: None)
    lon, lat = to_wgs84_arrays(xs, ys, ctx.crs)
    types = np.where(missing, -1, 0)
    _check_types(types, kinds, ctx, rej)
    live = ~rej.bad
    inside = np.zeros(n, dtype=bool)
    inside[live] = ctx.area.inside_mask(lon[live], lat[live])
    outside = live & ~inside
    if outside.any():
        swapped = np.zeros(n, dtype=bool)
        swapped[outside] = ctx.area.inside_mask(lat[outside], lon[outside])
        rej.add(
            outside & swapped,
            "geometry",
            lambda i: both("imp.geom.swapped_point", lon=lon[i], lat=lat[i]),
            lambda i: f"{xs[i]}, {ys[i]}",
        )
        rej.add(
            outside,
            "geometry",
            lambda i: _outside_point_reason(ctx, float(lon[i]), float(lat[i])),
            lambda i: f"{xs[i]}, {ys[i]}",
        )
    if ctx.zone is not None:
        live = ~rej.bad
        in_zone = np.zeros(n, dtype=bool)
        if live.any():
            in_zone[live] = shapely.intersects_xy(ctx.zone.geometry, lon[live], lat[live])
        rej.add(
            live & ~in_zone, "geometry", lambda i: _zone_reason(ctx), lambda i: f"{lon[i]:.6f}, {lat[i]:.6f}"
        )
    return lon, lat, None, np.column_stack([lon, lat])


def _check_types(
    types: npt.NDArray[np.int64], kinds: ObjectArray, ctx: ValidationContext, rej: _Rejections
) -> None:
    """Reject rows whose geometry type does not suit their class (a lamp must be a point...)."""
    wrong = np.zeros(len(types), dtype=bool)
    for kind, allowed in _ALLOWED_IDS.items():
        of_kind = (kinds == kind) & (types >= 0)
        if of_kind.any():
            wrong |= of_kind & ~np.isin(types, list(allowed))
    if wrong.any():
        rej.add(
            wrong,
            "geometry",
            lambda i: both(
                "imp.geom.kind",
                kind=both(f"geometry.{kinds[i]}"),
                allowed=Bilingual(
                    "、".join(ALLOWED_GEOMETRIES[kinds[i]]), " or ".join(ALLOWED_GEOMETRIES[kinds[i]])
                ),
                got=_TYPE_NAMES.get(int(types[i]), "?"),
            ),
            lambda i: None,
        )


def _outside_point_reason(ctx: ValidationContext, lon: float, lat: float) -> str:
    if not (abs(lon) <= 180 and abs(lat) <= 90):
        return both("imp.geom.not_degrees", lon=lon, lat=lat, crs=ctx.crs.name)
    km = ctx.area.distance_outside_m(lon, lat) / 1000.0
    return both("imp.geom.outside", lon=lon, lat=lat, km=km, margin=ctx.area.margin_m / 1000.0)


def _outside_reason(ctx: ValidationContext, geom: shapely.Geometry) -> str:
    flipped = shapely.transform(geom, lambda c: c[:, ::-1])
    if shapely.covers(ctx.area.accepted_region, flipped):
        return both("imp.geom.swapped_shape", kind=geom.geom_type)
    point = shapely.get_coordinates(geom)[0]
    return both("imp.geom.leaves", first=_outside_point_reason(ctx, *map(float, point)))


def _zone_reason(ctx: ValidationContext) -> str:
    assert ctx.zone is not None
    return both("imp.geom.zone", zone=ctx.zone.name, level=both(f"level.{ctx.zone.level}"))


def _units(
    draft: DraftChunk, ctx: ValidationContext, rej: _Rejections
) -> tuple[ObjectArray, ObjectArray, ObjectArray]:
    """Unit ids of owner, maintainer and supervisor; units are only ever created for rows that pass."""
    if ctx.actor_unit is not None:
        # A unit token imports its own assets: an empty owner is the token's unit, another owner
        # is refused row by row (and never created).
        owner = ctx.units.ids_for(_live(draft.owner, ~rej.bad), create=False)
        owner[~has_value(draft.owner)] = ctx.actor_unit
        foreign = np.not_equal(owner, ctx.actor_unit)
        rej.add(
            foreign,
            "owner",
            lambda i: both("imp.owner.foreign", owner=draft.owner[i], unit=ctx.actor_unit_name),
            lambda i: draft.owner[i],
        )
    else:
        owner = ctx.units.ids_for(_live(draft.owner, ~rej.bad))
        _refuse_unknown(draft.owner, owner, "owner", ctx, rej)
    create = ctx.units.may_create
    maintainer = ctx.units.ids_for(_live(draft.maintainer, ~rej.bad), create=create)
    _refuse_unknown(draft.maintainer, maintainer, "maintainer", ctx, rej)
    supervisor = ctx.units.ids_for(_live(draft.supervisor, ~rej.bad), create=create)
    _refuse_unknown(draft.supervisor, supervisor, "supervisor", ctx, rej)
    return owner, maintainer, supervisor


def _refuse_unknown(
    names: ObjectArray, ids: ObjectArray, target: str, ctx: ValidationContext, rej: _Rejections
) -> None:
    """Reject rows naming a unit that is not registered (and was not created: not an administrator,
    or a near miss of a registered unit)."""
    unknown = has_value(names) & np.array([i is None for i in ids.tolist()], dtype=bool) & ~rej.bad
    if not unknown.any():
        return
    rej.add(unknown, target, lambda i: ctx.units.unknown_reason(target, str(names[i])), lambda i: names[i])


def _refuse_foreign_maintainer(
    draft: DraftChunk,
    ctx: ValidationContext,
    rej: _Rejections,
    maintainer: ObjectArray,
    source_ids: ObjectArray,
    codes: ObjectArray,
) -> None:
    """Reject a unit's rows that make another unit the maintainer: that needs the other unit's consent.

    Through the API such a change becomes a proposal (registry.proposals); an import has no one to
    ask, so the row is refused, unless the registry already records that maintainer for the asset
    (the file was exported after the other unit accepted).
    """
    ids = maintainer.tolist()
    foreign = [i for i, m in enumerate(ids) if m is not None and m != ctx.actor_unit and not rej.bad[i]]
    if not foreign:
        return
    known = set(
        ctx.session.execute(
            text(
                "SELECT source_id, code, maintainer_id FROM assets "
                "WHERE source_id = ANY(CAST(:s AS text[])) OR code = ANY(CAST(:c AS text[]))"
            ),
            {
                "s": [source_ids[i] for i in foreign if source_ids[i] is not None],
                "c": [codes[i] for i in foreign if codes[i] is not None],
            },
        ).tuples()
    )
    agreed = {(key, m) for source_id, code, m in known for key in (source_id, code) if key is not None}
    mask = np.zeros(len(ids), dtype=bool)
    for i in foreign:
        if (source_ids[i], ids[i]) not in agreed and (codes[i], ids[i]) not in agreed:
            mask[i] = True
    rej.add(
        mask,
        "maintainer",
        lambda i: both("imp.maintainer.foreign", unit=draft.maintainer[i]),
        lambda i: draft.maintainer[i],
    )


def _live(names: ObjectArray, live: BoolArray) -> ObjectArray:
    """The names of the rows still in play (None for rejected rows, so no unit is made for them)."""
    out = names.copy()
    out[~live] = None
    return out


def _source_ids(
    draft: DraftChunk,
    ctx: ValidationContext,
    codes: ObjectArray,
    class_codes: ObjectArray,
    key_coords: npt.NDArray[np.float64],
) -> ObjectArray:
    """What identifies each row across imports: the profile's source id (scoped), else the row's
    16-digit component identifier (however the code was written: with or without its check digit,
    with dashes or spaces), else class + position (``geom:<class>:<lon e7>:<lat e7>``, or a hash of
    the shape)."""
    scope = ctx.scope + ":"
    code_list = codes.tolist()
    out = np.empty(len(draft), dtype=object)
    # ``codes`` holds the normalised 17-digit code of every row whose code passed (None otherwise),
    # so its first 16 digits are the identifier parse_code(...).identifier gives.
    out[:] = [
        scope + given if given is not None else (code[:16] if code is not None else None)
        for given, code in zip(draft.source_id.tolist(), code_list, strict=True)
    ]
    need = np.flatnonzero(~has_value(out))
    if need.size == 0:
        return out
    classes = class_codes[need].tolist()
    # Points: the WGS84 position in units of 1e-7 degree (about 1 cm), formatted without floats.
    scaled = np.round(key_coords[need] * _DERIVED_SCALE)
    finite: BoolArray = np.asarray(np.isfinite(scaled).all(axis=1))
    xs = np.where(finite, scaled[:, 0], 0).astype(np.int64).tolist()
    ys = np.where(finite, scaled[:, 1], 0).astype(np.int64).tolist()
    out[need] = [
        f"{DERIVED_PREFIX}{c}:{x}:{y}" if ok else None
        for c, x, y, ok in zip(classes, xs, ys, finite.tolist(), strict=True)
    ]
    if draft.geometry is not None and not finite.all():
        # Other shapes: a hash of the shape as read.
        shaped = need[~finite]
        shapes = draft.geometry[shaped]
        present = has_value(shapes)
        blobs = np.full(len(shaped), None, dtype=object)
        blobs[present] = shapely.to_wkb(shapes[present])
        out[shaped] = [
            None if blob is None else f"{DERIVED_PREFIX}{c}:{hashlib.sha1(blob).hexdigest()[:24]}"
            for c, blob in zip(class_codes[shaped].tolist(), blobs.tolist(), strict=True)
        ]
    return out


def _attributes_json(draft: DraftChunk) -> ObjectArray:
    """The attribute bag as JSON text per row (None when empty), with the source's change date."""
    n = len(draft)
    out = np.full(n, None, dtype=object)
    changed = draft.changed.tolist()
    if not draft.attributes:
        memo: dict[date, str] = {}
        for i, day in enumerate(changed):
            if day is not None:
                hit = memo.get(day)
                if hit is None:
                    hit = memo[day] = orjson.dumps({"changed_on": day.isoformat()}).decode()
                out[i] = hit
        return out
    for i, bag in enumerate(draft.attribute_dicts()):
        if changed[i] is not None:
            bag["changed_on"] = changed[i].isoformat()
        if bag:
            out[i] = orjson.dumps(bag, default=str).decode()
    return out
