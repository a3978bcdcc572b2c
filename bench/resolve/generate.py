# ruff: noqa: E501  (SQL reads better unwrapped)
"""City-scale synthetic data for the resolution benchmark, generated in SQL (no per-row service path).

Over the 坪山 district rectangle: point assets of 20 classes (uniformly spread, ~3 per 1,000 m² at 1M),
overhead cables (class 2105, 2-vertex lines of 20-120 m), 10,000 zones (6 streets, 30 communities,
9,000 grids, 900 contract areas, 64 pilot zones) with units, and a few hundred responsibility rules. Each
asset's current responsibility period is implied by its row (migration 0004: ``responsible_since`` NULL,
i.e. since installation); ``asset_responsibility`` holds only closed periods and ``asset_history`` only
replaced versions, so a fresh load writes neither. Triggers (among them the statement-level reference
check that replaced the foreign keys) are off while loading (``session_replication_role = replica``) and
the big indexes are dropped and rebuilt, as a real bulk load would do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import psycopg

COUNTY = "440310"
# The district rectangle (WGS84): the service area's core.
MIN_LON, MAX_LON = 114.28, 114.45
MIN_LAT, MAX_LAT = 22.63, 22.78
POINT_CLASSES = (
    "0101", "0102", "0103", "0104", "0105", "0106", "0107", "0111", "0113", "0114",
    "0115", "0116", "0117", "0118", "0134", "0203", "0209", "0210", "0305", "2104",
)  # fmt: skip
CABLE_CLASS = "2105"
OWNERS = 40
STREETS = ("坪山街道", "马峦街道", "碧岭街道", "石井街道", "坑梓街道", "龙田街道")

Say = Callable[[str], None]


def _state_after(prefix: str) -> int:
    """The MOD 11,10 running state after ``prefix`` (so SQL only folds in the serial's 6 digits)."""
    product = 10
    for char in prefix:
        total = (product + int(char)) % 10 or 10
        product = (total * 2) % 11
    return product


FUNCTIONS = """
CREATE OR REPLACE FUNCTION bench_check(state int, digits text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE t int; i int;
BEGIN
  FOR i IN 1..length(digits) LOOP
    t := (state + ascii(substr(digits, i, 1)) - 48) % 10;
    IF t = 0 THEN t := 10; END IF;
    state := (t * 2) % 11;
  END LOOP;
  RETURN ((11 - state) % 10)::text;
END $$;
CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS bench_class_state (class_code text PRIMARY KEY, idx int NOT NULL, state int NOT NULL);
"""


def _timed(
    say: Say, label: str, conn: psycopg.Connection, sql: str, params: Mapping[str, Any] | None = None
) -> None:
    started = time.perf_counter()
    conn.execute(sql, params)
    say(f"  {label}: {time.perf_counter() - started:.1f} s")


def meta(conn: psycopg.Connection, key: str) -> str | None:
    """A value recorded by an earlier generation run."""
    if conn.execute("SELECT to_regclass('bench_meta')").fetchone() == (None,):
        return None
    row = conn.execute("SELECT value FROM bench_meta WHERE key = %s", (key,)).fetchone()
    return row[0] if row else None


def set_meta(conn: psycopg.Connection, key: str, value: object) -> None:
    """Record a value for later generation runs (``bench_meta`` exists once reference data do)."""
    conn.execute(
        "INSERT INTO bench_meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        (key, str(value)),
    )


def reference_data(conn: psycopg.Connection, say: Say) -> None:
    """Units, zones and rules (small: through ordinary inserts, zone triggers on)."""
    conn.execute(FUNCTIONS)
    for i, code in enumerate((*POINT_CLASSES, CABLE_CLASS)):
        conn.execute(
            "INSERT INTO bench_class_state VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            (code, i, _state_after(COUNTY + code)),
        )
    if meta(conn, "reference") == "done":
        return
    started = time.perf_counter()
    with conn.transaction():
        _reference_rows(conn)
    say(f"  units, 10,000 zones and rules: {time.perf_counter() - started:.1f} s")


def _reference_rows(conn: psycopg.Connection) -> None:
    conn.execute(
        "INSERT INTO units (name, kind, county_code, phone, verified) "
        "SELECT '基准权属单位' || lpad(g::text, 3, '0'), (ARRAY['utility','telecom','government','enterprise'])"
        "[1 + g %% 4], %s, '0755-' || (80000000 + g)::text, true FROM generate_series(1, %s) g",
        (COUNTY, OWNERS),
    )
    conn.execute(
        "INSERT INTO units (name, kind, county_code, phone, verified) "
        "SELECT '基准养护单位' || lpad(g::text, 3, '0'), 'contractor', %s, '0755-' || (81000000 + g)::text, true "
        "FROM generate_series(1, 20) g",
        (COUNTY,),
    )
    conn.execute(
        "INSERT INTO units (name, kind, county_code, phone, verified) "
        "SELECT s || '办事处', 'street_office', %s, '0755-' || (82000000 + i)::text, true "
        "FROM unnest(%s::text[]) WITH ORDINALITY AS t(s, i)",
        (COUNTY, list(STREETS)),
    )
    conn.execute(
        "INSERT INTO units (name, kind, county_code, verified) "
        "SELECT '基准社区' || lpad(g::text, 2, '0') || '工作站', 'community', %s, true FROM generate_series(1, 30) g",
        (COUNTY,),
    )
    dlon, dlat = MAX_LON - MIN_LON, MAX_LAT - MIN_LAT

    def grid(level: str, nx: int, ny: int, name: str, unit: str | None) -> None:
        conn.execute(
            f"""
            INSERT INTO zones (county_code, level, name, code, unit_id, actor, geom)
            SELECT %(c)s, %(level)s, {name}, NULL, {unit or "NULL"}, 'bench',
                   ST_Multi(ST_MakeEnvelope(%(x0)s + i * %(sx)s, %(y0)s + j * %(sy)s,
                                            %(x0)s + (i + 1) * %(sx)s, %(y0)s + (j + 1) * %(sy)s, 4326))
            FROM generate_series(0, %(nx)s - 1) i, generate_series(0, %(ny)s - 1) j
            """,
            {
                "c": COUNTY,
                "level": level,
                "x0": MIN_LON,
                "y0": MIN_LAT,
                "sx": dlon / nx,
                "sy": dlat / ny,
                "nx": nx,
                "ny": ny,
                "streets": list(STREETS),
            },
        )

    grid(
        "street",
        6,
        1,
        "(%(streets)s::text[])[i + 1]",
        "(SELECT id FROM units WHERE name = (%(streets)s::text[])[i + 1] || '办事处')",
    )
    grid(
        "community",
        6,
        5,
        "'基准社区' || lpad((i * 5 + j + 1)::text, 2, '0')",
        "(SELECT id FROM units WHERE name = '基准社区' || lpad((i * 5 + j + 1)::text, 2, '0') || '工作站')",
    )
    grid("grid", 100, 90, "'4403100' || lpad((i * 90 + j)::text, 8, '0')", None)
    grid(
        "contract",
        30,
        30,
        "'基准养护片区' || lpad((i * 30 + j)::text, 3, '0')",
        "(SELECT id FROM units WHERE name = '基准养护单位' || lpad((1 + (i * 30 + j) %% 20)::text, 3, '0'))",
    )
    grid("pilot", 8, 8, "'基准试点' || lpad((i * 8 + j)::text, 2, '0')", None)
    # Rules: ownerless covers and street lamps per community, lamps per contract area, a category rule
    # per street, and district-wide defaults.
    conn.execute(
        """
        INSERT INTO responsibility_rules (county_code, zone_level, zone_name, class_code, category, unit_id,
                                          priority, actor)
        SELECT %(c)s, 'community', z.name, cls, NULL, z.unit_id, 0, 'bench'
        FROM zones z, unnest(ARRAY['0114', '0305']) cls WHERE z.level = 'community'
        UNION ALL
        SELECT %(c)s, 'contract', z.name, '0118', NULL, z.unit_id, 0, 'bench' FROM zones z WHERE z.level = 'contract'
        UNION ALL
        SELECT %(c)s, 'street', z.name, NULL, '占道经营', z.unit_id, 0, 'bench' FROM zones z WHERE z.level = 'street'
        UNION ALL
        SELECT %(c)s, NULL, NULL, '0210', NULL, (SELECT min(id) FROM units WHERE kind = 'government'), 0, 'bench'
        """,
        {"c": COUNTY},
    )
    set_meta(conn, "reference", "done")


def _index_definitions(conn: psycopg.Connection, table: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Plain indexes and exclusion constraints of a table (dropped before a bulk load, rebuilt after)."""
    indexes = [
        r[0]
        for r in conn.execute(
            "SELECT indexdef FROM pg_indexes i WHERE tablename = %s AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
            (table,),
        ).fetchall()
    ]
    exclusions = conn.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'x'",
        (table,),
    ).fetchall()
    return indexes, [(r[0], r[1]) for r in exclusions]


def _index_name(definition: str) -> str:
    """The index name in a ``CREATE [UNIQUE] INDEX name ON ...`` definition."""
    return definition.split(" INDEX ", 1)[1].split(" ON ", 1)[0]


def add_assets(
    conn: psycopg.Connection, points: int, cables: int, say: Say, *, batch: int = 1_000_000
) -> None:
    """Add point assets and cables (numbered after those present), recorded as created by ``bench``."""
    have_points = int(meta(conn, "points") or 0)
    have_cables = int(meta(conn, "cables") or 0)
    new_points, new_cables = max(0, points - have_points), max(0, cables - have_cables)
    if not new_points and not new_cables:
        return
    say(f"  adding {new_points:,} points and {new_cables:,} cables")
    indexes, exclusions = _index_definitions(conn, "assets")
    for name, _ in exclusions:
        conn.execute(f"ALTER TABLE assets DROP CONSTRAINT {name}")
    for definition in indexes:
        conn.execute(f"DROP INDEX {_index_name(definition)}")
    # No triggers while loading: neither the history triggers nor the statement-level reference check
    # (the generator only names units and classes that exist).
    conn.execute("SET session_replication_role = replica")
    # Who recorded the rows (the default of assets.changed_by reads it).
    conn.execute("SELECT set_config('smartcode.actor', 'bench', false)")
    owner0 = conn.execute("SELECT min(id) FROM units WHERE name LIKE '基准权属单位%%'").fetchone()[0]  # type: ignore[index]
    contractor0 = conn.execute("SELECT min(id) FROM units WHERE name LIKE '基准养护单位%%'").fetchone()[0]  # type: ignore[index]
    nclasses = len(POINT_CLASSES)
    done = 0
    while done < new_points:
        size = min(batch, new_points - done)
        first = have_points + done
        # Serial numbers continue per class: asset g has class g % 20 and serial g / 20 + 1.
        _timed(
            say,
            f"points {first + 1:,}-{first + size:,}",
            conn,
            """
            INSERT INTO assets (code, county_code, class_code, serial, geom, owner_id, maintainer_id, supervisor_id,
                                installed_on)
            SELECT %(county)s || s.class_code || lpad(g.serial::text, 6, '0')
                       || bench_check(s.state, lpad(g.serial::text, 6, '0')),
                   %(county)s, s.class_code, g.serial,
                   ST_SetSRID(ST_MakePoint(%(x0)s + random() * %(dx)s, %(y0)s + random() * %(dy)s), 4326),
                   %(owner0)s + (s.idx * 2 + (random() < 0.1)::int) %% %(owners)s,
                   %(contractor0)s + s.idx %% 20,
                   %(owner0)s + (s.idx + 7) %% %(owners)s,
                   date '2015-01-01' + (random() * 3650)::int
            FROM (SELECT n, (n / %(nclasses)s + 1)::int AS serial, (n %% %(nclasses)s)::int AS idx
                  FROM generate_series(%(first)s::bigint, %(last)s::bigint) n) g
            JOIN bench_class_state s ON s.idx = g.idx
            """,
            {
                "county": COUNTY,
                "x0": MIN_LON,
                "dx": MAX_LON - MIN_LON,
                "y0": MIN_LAT,
                "dy": MAX_LAT - MIN_LAT,
                "owner0": owner0,
                "owners": OWNERS,
                "contractor0": contractor0,
                "nclasses": nclasses,
                "first": first,
                "last": first + size - 1,
            },
        )
        done += size
    if new_cables:
        state = _state_after(COUNTY + CABLE_CLASS)
        _timed(
            say,
            f"cables {have_cables + 1:,}-{cables:,}",
            conn,
            """
            INSERT INTO assets (code, county_code, class_code, serial, geom, owner_id, maintainer_id, supervisor_id)
            SELECT %(county)s || %(cls)s || lpad(n::text, 6, '0') || bench_check(%(state)s, lpad(n::text, 6, '0')),
                   %(county)s, %(cls)s, n,
                   ST_SetSRID(ST_MakeLine(ST_MakePoint(x, y),
                                          ST_MakePoint(x + len * cos(a) / 102500.0, y + len * sin(a) / 110800.0)),
                              4326),
                   %(owner0)s + 1 + (n %% 4) * 4, %(contractor0)s + n %% 20, %(owner0)s + 2
            FROM (SELECT n, %(x0)s + random() * %(dx)s AS x, %(y0)s + random() * %(dy)s AS y,
                         20 + random() * 100 AS len, random() * 2 * pi() AS a
                  FROM generate_series(%(first)s::int, %(last)s::int) n) g
            """,
            {
                "county": COUNTY,
                "cls": CABLE_CLASS,
                "state": state,
                "x0": MIN_LON,
                "dx": MAX_LON - MIN_LON - 0.002,
                "y0": MIN_LAT,
                "dy": MAX_LAT - MIN_LAT - 0.002,
                "owner0": owner0,
                "contractor0": contractor0,
                "first": have_cables + 1,
                "last": cables,
            },
        )
    conn.execute("SET session_replication_role = origin")
    conn.execute("RESET smartcode.actor")
    for definition in indexes:
        _timed(say, _index_name(definition), conn, definition)
    for name, definition in exclusions:
        _timed(say, name, conn, f"ALTER TABLE assets ADD CONSTRAINT {name} {definition}")
    _timed(say, "vacuum analyze", conn, "VACUUM (ANALYZE) assets")
    conn.execute("ANALYZE")
    set_meta(conn, "points", points if new_points else have_points)
    set_meta(conn, "cables", cables if new_cables else have_cables)
    set_meta(conn, "clustered", "no")


# The index whose order CLUSTER gives the table: the GiST on the class planes (migration 0005), which
# keeps each class's assets together and, within a class, neighbours together.
CLUSTER_INDEX = "assets_class_plane_gist"
# Every spatial index of assets (migration 0005): the class planes and geom_m over every class.
SPATIAL_INDEXES = (CLUSTER_INDEX, "assets_geom_m_gist")


def cluster(conn: psycopg.Connection, say: Say) -> None:
    """Put the assets in spatial order, as ``CLUSTER`` after a big import would (docs/benchmarks.md).

    The table is rewritten in the order of a scan of the spatial index ``CLUSTER_INDEX`` (a GiST index
    can order a CLUSTER): its leaves hold neighbouring assets of one class, so the assets of a class
    near a point share heap pages and a nearest-asset lookup reads a few pages instead of one per
    candidate; in random insertion order (the generator's) the 10M lookups grew 1.7x instead of 1.5x.
    """
    if meta(conn, "clustered") == "yes":
        return
    conn.execute("SET maintenance_work_mem = '2GB'")
    _timed(say, f"cluster assets by {CLUSTER_INDEX}", conn, f"CLUSTER assets USING {CLUSTER_INDEX}")
    conn.execute("VACUUM (ANALYZE) assets")
    set_meta(conn, "clustered", "yes")
