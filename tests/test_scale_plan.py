"""docs/scale.md, the sharding plan, agrees with the schema: every table planned, every key accounted for."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import Engine, text

from common.settings import PROJECT_ROOT

KINDS = {"distributed", "reference", "coordinator"}


@dataclass(frozen=True)
class Planned:
    """One row of the plan's table."""

    kind: str
    column: str
    to_add: bool
    keys_today: str
    change: str


def _plan() -> dict[str, Planned]:
    rows: dict[str, Planned] = {}
    for line in (PROJECT_ROOT / "docs" / "scale.md").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\| `(\w+)` \|(.*)\|\s*$", line)
        if not match:
            continue
        kind, column, keys, change = (cell.strip() for cell in match.group(2).split("|"))
        name = re.search(r"`(\w+)`", column)
        rows[match.group(1)] = Planned(
            kind, name.group(1) if name else "", "(to add)" in column, keys, change
        )
    return rows


def _keys(conn: object, table: str) -> list[tuple[str, list[str]]]:
    """Every primary and unique key of a table (constraints and unique indexes) as (kind, columns)."""
    rows = conn.execute(  # type: ignore[attr-defined]
        text(
            """
            SELECT i.indisprimary, array_agg(a.attname ORDER BY k.ord)
            FROM pg_index i
            CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
            WHERE i.indrelid = CAST(:t AS regclass) AND i.indisunique
            GROUP BY i.indexrelid, i.indisprimary
            """
        ),
        {"t": table},
    )
    return [("PK" if primary else "UNIQUE", list(columns)) for primary, columns in rows]


def _columns(conn: object, table: str) -> dict[str, bool]:
    rows = conn.execute(  # type: ignore[attr-defined]
        text(
            "SELECT column_name, is_nullable = 'NO' FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = :t"
        ),
        {"t": table},
    )
    return {name: not_null for name, not_null in rows}


def test_every_table_has_a_plan_and_every_distributed_key_is_accounted_for(db: Engine) -> None:
    plan = _plan()
    with db.connect() as conn:
        tables = set(
            conn.execute(
                text(
                    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
                )
            ).scalars()
        )
        assert sorted(tables - plan.keys()) == [], "tables without a line in docs/scale.md"
        assert sorted(plan.keys() - tables) == [], "docs/scale.md plans tables that do not exist"
        problems: list[str] = []
        for table, row in sorted(plan.items()):
            if row.kind not in KINDS:
                problems.append(f"{table}: unknown kind {row.kind!r}")
            if row.kind != "distributed":
                continue
            columns = _columns(conn, table)
            if row.to_add:
                if row.column in columns:
                    problems.append(f"{table}: {row.column} exists now; drop '(to add)'")
            elif not columns.get(row.column):
                problems.append(f"{table}: distribution column {row.column!r} missing or nullable")
            for kind, cols in _keys(conn, table):
                if row.column in cols:
                    continue
                written = f"{kind} ({', '.join(cols)})"
                if written not in row.keys_today:
                    problems.append(f"{table}: {written} lacks the county and is not listed under keys today")
                elif not row.change:
                    problems.append(f"{table}: {written} listed without what it becomes")
    assert problems == []
