"""The binary COPY encoder: what PostgreSQL reads back is what the Arrow columns held, NULLs included."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import shapely
from sqlalchemy import Engine

from importers.pg_binary import Kind, encode
from registry.db import session_factory

UTC = dt.UTC


def test_every_kind_round_trips_through_postgresql(db: Engine) -> None:
    point = shapely.set_srid(shapely.Point(114.35, 22.7), 4326)
    line = shapely.set_srid(shapely.LineString([(114.0, 22.0), (114.1, 22.1)]), 4326)
    # Sliced arrays (offset 1) as the encoder gets them from filtered chunks.
    arrays = [
        (pa.array(["skip", "坪山路灯", None, "", "x" * 300]).slice(1), Kind.TEXT),
        (pa.array([-1, 7, None, 2**31 - 1, -(2**31)]).slice(1), Kind.INT4),
        (pa.array([0, 2**40, -5, None, 2**63 - 1]).slice(1), Kind.INT8),
        (pa.array([None, True, False, None, True]).slice(1), Kind.BOOL),
        (
            pa.array([None, dt.date(2019, 3, 1), dt.date(1999, 12, 31), None, dt.date(2000, 1, 1)]).slice(1),
            Kind.DATE,
        ),
        (
            pa.array(
                [
                    None,
                    dt.datetime(2026, 11, 22, 3, 4, 5, 123456, UTC),
                    None,
                    dt.datetime(1970, 1, 1, tzinfo=UTC),
                    None,
                ],
                type=pa.timestamp("us", tz="UTC"),
            ).slice(1),
            Kind.TIMESTAMPTZ,
        ),
        (pa.array([None, '{"a": [1, "二"]}', "{}", None, "null"]).slice(1), Kind.JSONB),
        (
            pa.array(
                [
                    None,
                    shapely.to_wkb(point, include_srid=True),
                    None,
                    shapely.to_wkb(line, include_srid=True),
                    None,
                ],
                type=pa.binary(),
            ).slice(1),
            Kind.BYTES,
        ),
    ]
    with session_factory(db)() as session, session.begin():
        raw = session.connection().connection.driver_connection
        raw.execute(
            "CREATE TEMP TABLE t (s text, i int4, b int8, f bool, d date, t timestamptz, j jsonb, "
            "g geometry) ON COMMIT DROP"
        )
        copy_in(raw, "t", encode(arrays))
        rows = raw.execute("SELECT s, i, b, f, d, t, j::text, ST_AsEWKT(g) FROM t").fetchall()
    assert [r[:6] for r in rows] == [
        ("坪山路灯", 7, 2**40, True, dt.date(2019, 3, 1), dt.datetime(2026, 11, 22, 3, 4, 5, 123456, UTC)),
        (None, None, -5, False, dt.date(1999, 12, 31), None),
        ("", 2**31 - 1, None, None, None, dt.datetime(1970, 1, 1, tzinfo=UTC)),
        ("x" * 300, -(2**31), 2**63 - 1, True, dt.date(2000, 1, 1), None),
    ]
    assert [r[6] for r in rows] == ['{"a": [1, "二"]}', "{}", None, "null"]
    assert [r[7] for r in rows] == [
        "SRID=4326;POINT(114.35 22.7)",
        None,
        "SRID=4326;LINESTRING(114 22,114.1 22.1)",
        None,
    ]


def test_a_chunk_with_no_rows_is_a_valid_empty_stream(db: Engine) -> None:
    with session_factory(db)() as session, session.begin():
        raw = session.connection().connection.driver_connection
        raw.execute("CREATE TEMP TABLE t (s text, i int8) ON COMMIT DROP")
        copy_in(
            raw, "t", encode([(pa.array([], pa.string()), Kind.TEXT), (pa.array([], pa.int64()), Kind.INT8)])
        )
        assert raw.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_rows_alike_in_every_field_and_rows_that_differ_come_back_the_same(db: Engine) -> None:
    # Every field the same length in every row (written as one dense block), and the same with a
    # field whose length varies (each field placed row by row).
    n = 1000
    alike = [
        (pa.array([f"4403100118{i:06d}7" for i in range(n)]), Kind.TEXT),
        (pa.array(range(n)), Kind.INT4),
        (pa.array(["完好"] * n), Kind.TEXT),
        (pa.array(["{}"] * n), Kind.JSONB),
        (pa.nulls(n, pa.timestamp("us", tz="UTC")), Kind.TIMESTAMPTZ),
    ]
    notes = [None if i % 3 else "备注" * (i % 7) for i in range(n)]
    for last, expected_notes in (
        ((pa.nulls(n, pa.string()), Kind.TEXT), [None] * n),
        ((pa.array(notes), Kind.TEXT), notes),
    ):
        with session_factory(db)() as session, session.begin():
            raw = session.connection().connection.driver_connection
            raw.execute(
                "CREATE TEMP TABLE t (code text, serial int4, state text, attrs jsonb, gone timestamptz, "
                "note text) ON COMMIT DROP"
            )
            copy_in(raw, "t", encode([*alike, last]))
            rows = raw.execute("SELECT code, serial, state, attrs::text, gone, note FROM t").fetchall()
        assert rows == [(f"4403100118{i:06d}7", i, "完好", "{}", None, expected_notes[i]) for i in range(n)]


def copy_in(raw: Any, table: str, stream: bytes) -> None:
    """COPY a binary stream into ``table``."""
    with raw.cursor() as cursor, cursor.copy(f"COPY {table} FROM STDIN (FORMAT binary)") as copy:
        copy.write(stream)
