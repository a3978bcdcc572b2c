"""The statements a lookup runs, and how their rows become the rule chain's inputs.

Every lookup reads; none writes (the resolution log has its own writer, :mod:`registry.resolution_log`),
so all of these run on the read-only connections of :mod:`registry.resolution`, which may be a
replica's. Rows are read by column name (psycopg's ``namedtuple_row``: one tuple per row, its class
made once per statement): the names are the aliases given here.

Unit columns come in groups of five named ``<prefix>_id, _name, _cc, _phone, _verified``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import Any

from registry.rule_chain import Candidate, CodeRow, Rule, Unit, Zone

# A row as psycopg's namedtuple_row makes it: columns as attributes.
Row = Any

# Reference data (small tables, cached by the resolver).
CLASSES_SQL = "SELECT code, name, geometry_type, aliases FROM component_classes"
CATEGORIES_SQL = "SELECT name, class_codes, aliases FROM complaint_categories WHERE active ORDER BY name"
# Registered codes among the near misses of a code whose check digit is wrong.
KNOWN_CODES_SQL = "SELECT code FROM assets WHERE code = ANY(%s) ORDER BY code LIMIT 5"


def unit_columns(*aliases: str) -> str:
    """The five unit columns of each table alias, named ``<alias>_id``, ``<alias>_name``, ..."""
    return ", ".join(
        f"{a}.id AS {a}_id, {a}.name AS {a}_name, {a}.credit_code AS {a}_cc, {a}.phone AS {a}_phone, "
        f"{a}.verified AS {a}_verified"
        for a in aliases
    )


def _no_unit(prefix: str) -> str:
    return (
        f"NULL::bigint AS {prefix}_id, NULL::text AS {prefix}_name, NULL::text AS {prefix}_cc, "
        f"NULL::text AS {prefix}_phone, NULL::boolean AS {prefix}_verified"
    )


def _unit_reader(prefix: str) -> Callable[[Row], Unit | None]:
    """A reader of the unit in the columns ``<prefix>_*`` (it runs for every row of every lookup)."""
    get_id = attrgetter(f"{prefix}_id")
    get_rest = attrgetter(f"{prefix}_name", f"{prefix}_cc", f"{prefix}_phone", f"{prefix}_verified")

    def read(row: Row) -> Unit | None:
        unit_id = get_id(row)
        if unit_id is None:
            return None
        name, credit_code, phone, verified = get_rest(row)
        return {"id": unit_id, "name": name, "credit_code": credit_code, "phone": phone, "verified": verified}

    return read


# The owner, maintainer and supervisor of an asset (aliases o, m, s); in the location rows a zone's or
# a rule's responsible unit (alias u, which is also the asset's owner there).
_owner, _maintainer, _supervisor, _unit = (_unit_reader(p) for p in ("o", "m", "s", "u"))


# ------------------------------------------------------------------------------------------------
# By code
# ------------------------------------------------------------------------------------------------

_CODE_COLUMNS = (
    "a.code, a.class_code, a.state, a.in_use, a.decommissioned_at, a.decommission_reason, "
    "ST_X(p.pt) AS lon, ST_Y(p.pt) AS lat, a.installed_on"
)

CODE_SQL_NOW = f"""
SELECT {_CODE_COLUMNS}, true AS covered, {unit_columns("o", "m", "s")}
FROM assets a
CROSS JOIN LATERAL (SELECT ST_PointOnSurface(a.geom) AS pt) p
LEFT JOIN units o ON o.id = a.owner_id
LEFT JOIN units m ON m.id = a.maintainer_id
LEFT JOIN units s ON s.id = a.supervisor_id
WHERE a.code = %s
"""

# The parties at a past time: the asset's current units if their period had begun, else the closed
# period covering that time (periods never overlap, so at most one row).
_PARTIES_AT = """
LEFT JOIN LATERAL (
    SELECT true AS found, a.owner_id, a.maintainer_id, a.supervisor_id
    WHERE smartcode_period_start(a.responsible_since, a.installed_on) <= %(at)s
    UNION ALL
    SELECT true, r.owner_id, r.maintainer_id, r.supervisor_id FROM asset_responsibility r
    WHERE r.asset_id = a.id AND r.valid_from <= %(at)s AND r.valid_to > %(at)s
    LIMIT 1
) r ON true"""

CODE_SQL_AT = f"""
SELECT {_CODE_COLUMNS}, r.found IS NOT NULL AS covered, {unit_columns("o", "m", "s")}
FROM assets a
CROSS JOIN LATERAL (SELECT ST_PointOnSurface(a.geom) AS pt) p
{_PARTIES_AT}
LEFT JOIN units o ON o.id = r.owner_id
LEFT JOIN units m ON m.id = r.maintainer_id
LEFT JOIN units s ON s.id = r.supervisor_id
WHERE a.code = %(code)s
"""


def code_row(row: Row) -> CodeRow:
    """The rule chain's view of a row of :data:`CODE_SQL_NOW` or :data:`CODE_SQL_AT`."""
    return CodeRow(
        code=row.code,
        class_code=row.class_code,
        state=row.state,
        in_use=row.in_use,
        decommissioned_at=row.decommissioned_at,
        decommission_reason=row.decommission_reason,
        lon=row.lon,
        lat=row.lat,
        installed_on=row.installed_on,
        covered=row.covered,
        owner=_owner(row),
        maintainer=_maintainer(row),
        supervisor=_supervisor(row),
    )


# ------------------------------------------------------------------------------------------------
# By location
# ------------------------------------------------------------------------------------------------


def nearest_sql(srid: int, *, by_class: bool, at: bool) -> str:
    """Step 1 alone: the nearest assets (code, class_code, state, in_use, dist, then units o, m, s)."""
    point = f"ST_SetSRID(ST_MakePoint(%(x)s, %(y)s), {srid})"
    if at:
        alive = (
            "(a.decommissioned_at IS NULL OR a.decommissioned_at > %(at)s) "
            "AND (a.installed_on IS NULL OR a.installed_on <= (%(at)s AT TIME ZONE %(tz)s)::date)"
        )
        parties = _PARTIES_AT
        holder = "r"
    else:
        alive = "a.in_use"
        parties = ""
        holder = "a"
    columns = (
        "a.id, a.code, a.class_code, a.state, a.in_use, a.owner_id, a.maintainer_id, a.supervisor_id, "
        f"a.responsible_since, a.installed_on, ST_Distance(a.geom_m, {point}) AS dist"
    )
    if by_class:
        # One KNN scan per class, in the class's own plane (migration 0005): the GiST on
        # smartcode_class_plane(class, geom_m) holds each class far from every other, so the scan
        # from the point moved into class c's plane meets only class c, where a scan over all
        # classes would walk past every other class's assets. Moving both keeps the distances.
        plane = "smartcode_class_plane(a.class_code, a.geom_m)"
        target = f"smartcode_class_plane(q.cls, {point})"
        source = f"""
        FROM unnest(%(classes)s::text[], %(tolerances)s::float8[]) AS q(cls, tol)
        CROSS JOIN LATERAL (
            SELECT {columns} FROM assets a
            WHERE a.class_code = q.cls AND {alive} AND ST_DWithin({plane}, {target}, q.tol)
            ORDER BY {plane} <-> {target}
            LIMIT %(k)s
        ) a"""
    else:
        source = f"""
        FROM (
            SELECT {columns} FROM assets a
            WHERE {alive} AND ST_DWithin(a.geom_m, {point}, %(tol)s)
            ORDER BY a.geom_m <-> {point}
            LIMIT %(k)s
        ) a"""
    return f"""
    SELECT a.code, a.class_code, a.state, a.in_use, a.dist, {unit_columns("o", "m", "s")}
    {source}
    {parties}
    LEFT JOIN units o ON o.id = {holder}.owner_id
    LEFT JOIN units m ON m.id = {holder}.maintainer_id
    LEFT JOIN units s ON s.id = {holder}.supervisor_id
    """


# Steps 3-4: the zones containing the point at time %(zt)s and the rules that apply there. Zone,
# rule and asset rows share one layout (a UNION takes its column names from its first branch):
#   kind ('asset' | 'zone' | 'rule'), id, code, class_code, state, in_use, distance,
#   level, name, zone_code, category, priority,
#   u_* (an asset's owner, a zone's or a rule's responsible unit), m_* and s_* (an asset's
#   maintainer and supervisor; empty for zones and rules).
_AREA_CTES = """
z AS MATERIALIZED (
    SELECT DISTINCT z.id, z.level, z.name, z.code, z.unit_id
    FROM zone_pieces p JOIN zones z ON z.id = p.zone_id
    WHERE ST_Covers(p.geom, ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326))
      AND z.county_code = %(county)s AND z.valid_from <= %(zt)s
      AND (z.valid_to IS NULL OR z.valid_to > %(zt)s)
), r AS (
    SELECT r.* FROM responsibility_rules r JOIN z ON z.level = r.zone_level AND z.name = r.zone_name
    UNION ALL
    SELECT r.* FROM responsibility_rules r WHERE r.zone_level IS NULL
)"""
_AREA_ROWS = f"""
SELECT 'zone' AS kind, z.id AS id, NULL::text AS code, NULL::text AS class_code, NULL::text AS state,
       NULL::boolean AS in_use, NULL::float8 AS distance, z.level::text AS level, z.name AS name,
       z.code AS zone_code, NULL::text AS category, NULL::int AS priority,
       {unit_columns("u")}, {_no_unit("m")}, {_no_unit("s")}
FROM z LEFT JOIN units u ON u.id = z.unit_id
UNION ALL
SELECT 'rule', r.id, NULL, r.class_code::text, NULL, NULL, NULL, r.zone_level::text, r.zone_name, NULL,
       r.category, r.priority, {unit_columns("u")}, {_no_unit("m")}, {_no_unit("s")}
FROM r JOIN units u ON u.id = r.unit_id
WHERE r.county_code = %(county)s AND r.valid_from <= %(zt)s AND (r.valid_to IS NULL OR r.valid_to > %(zt)s)
  AND (r.class_code IS NULL OR r.class_code = ANY(%(classes)s::text[]))
  AND (r.category IS NULL OR r.category = %(category)s)
"""
AREA_SQL = f"WITH {_AREA_CTES}\n{_AREA_ROWS}"


def location_sql(srid: int, *, by_class: bool, at: bool) -> str:
    """Steps 1-4 in one statement (one round trip): nearest assets, then zones and rules."""
    return f"""
    WITH near AS ({nearest_sql(srid, by_class=by_class, at=at)}), {_AREA_CTES}
    SELECT 'asset' AS kind, NULL::bigint AS id, n.code::text AS code, n.class_code::text AS class_code,
           n.state AS state, n.in_use AS in_use, n.dist AS distance, NULL::text AS level,
           NULL::text AS name, NULL::text AS zone_code, NULL::text AS category, NULL::int AS priority,
           n.o_id AS u_id, n.o_name AS u_name, n.o_cc::text AS u_cc, n.o_phone AS u_phone,
           n.o_verified AS u_verified,
           n.m_id AS m_id, n.m_name AS m_name, n.m_cc::text AS m_cc, n.m_phone AS m_phone,
           n.m_verified AS m_verified,
           n.s_id AS s_id, n.s_name AS s_name, n.s_cc::text AS s_cc, n.s_phone AS s_phone,
           n.s_verified AS s_verified
    FROM near n
    UNION ALL
    {_AREA_ROWS}
    """


def location_rows(rows: Iterable[Row]) -> tuple[list[Candidate], list[Zone], list[Rule]]:
    """The assets (unfiltered, in row order), zones and rules among the rows of the location queries."""
    candidates: list[Candidate] = []
    zones: list[Zone] = []
    rules: list[Rule] = []
    for row in rows:
        kind = row.kind
        if kind == "asset":
            candidates.append(
                Candidate(
                    code=row.code,
                    class_code=row.class_code,
                    state=row.state,
                    in_use=row.in_use,
                    distance=float(row.distance),
                    owner=_unit(row),
                    maintainer=_maintainer(row),
                    supervisor=_supervisor(row),
                )
            )
        elif kind == "zone":
            zones.append(Zone(id=row.id, level=row.level, name=row.name, code=row.zone_code, unit=_unit(row)))
        elif kind == "rule":
            rules.append(
                Rule(
                    id=row.id,
                    level=row.level,
                    zone=row.name,
                    class_code=row.class_code,
                    category=row.category,
                    priority=row.priority,
                    unit=_unit(row),
                )
            )
    return candidates, zones, rules
