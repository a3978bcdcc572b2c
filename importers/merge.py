"""Staging and merging: validated rows go into a temporary table by COPY, then into ``assets`` set-based.

Everything here runs inside the import's single transaction. The staging table has no index and
is temporary (never WAL-logged), so COPY runs at full speed; the checks that need the registry's
state (file-internal duplicates, codes already taken, which rows are new, changed or unchanged)
are then one ``CREATE TABLE AS`` over the staged rows, and the writes one ``INSERT ... SELECT`` and
one ``UPDATE ... FROM``, whose statement-level triggers record history for every row.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
from sqlalchemy import text
from sqlalchemy.orm import Session

from importers.source import RowProblem
from importers.validate import STAGE_COLUMNS, ValidChunk
from registry.codes import check_digits
from registry.messages import split
from registry.serials import allocate_serials, reserve_serial

_ARROW_TYPES: dict[str, pa.DataType] = {
    "integer": pa.int64(),
    "bigint": pa.int64(),
    "text": pa.string(),
    "double precision": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "jsonb": pa.string(),
}
_CSV_OPTIONS = pa_csv.WriteOptions(include_header=False)
_COLUMN_LIST = ", ".join(name for name, _ in STAGE_COLUMNS)


def create_stage(session: Session) -> None:
    """The staging table of this transaction (temporary, unindexed, dropped at commit or rollback)."""
    session.execute(text("DROP TABLE IF EXISTS import_stage"))
    columns = ", ".join(f"{name} {kind}" for name, kind in STAGE_COLUMNS)
    session.execute(text(f"CREATE TEMP TABLE import_stage ({columns}) ON COMMIT DROP"))


def copy_chunk(connection: Any, chunk: ValidChunk) -> None:
    """Append a validated chunk to the staging table with one COPY (CSV written by Arrow, in C).

    ``connection`` is the import transaction's psycopg connection (see ``importers.stage_writer``).
    """
    n = len(chunk)
    if n == 0:
        return
    arrays = []
    for name, kind in STAGE_COLUMNS:
        values = chunk.columns[name]
        arrow_type = _ARROW_TYPES[kind]
        if values is None:
            arrays.append(pa.nulls(n, arrow_type))
        else:
            # from_pandas: None (and NaN in float columns) become NULL, without a Python-level pass.
            arrays.append(pa.array(values, type=arrow_type, from_pandas=True))
    table = pa.Table.from_arrays(arrays, names=[name for name, _ in STAGE_COLUMNS])
    buffer = io.BytesIO()
    pa_csv.write_csv(table, buffer, _CSV_OPTIONS)
    with (
        connection.cursor() as cursor,
        cursor.copy(f"COPY import_stage ({_COLUMN_LIST}) FROM STDIN (FORMAT csv)") as copy,
    ):
        copy.write(buffer.getbuffer())


# The plan: every staged row with the asset it matches and what will happen to it. A row matches
# the asset that carries its source id; a row with a code that no source id matched adopts the
# asset registered under that code if that asset has no real source id of its own (registered
# through the API or by hand, or known so far only by class and position: a 'geom:' key). Reasons
# are checked in order; the first that applies rejects the row.


def _stand_in(source_id: str) -> str:
    """SQL: the asset's source id is only a stand-in, not an identity of its own (none, a position
    key, or one set aside by the rollback of its batch), so a row naming its code may take it."""
    return f"({source_id} IS NULL OR {source_id} LIKE 'geom:%' OR {source_id} LIKE 'rolledback:%')"


_PLAN = f"""
CREATE TEMP TABLE import_plan ON COMMIT DROP AS
WITH repeated_source AS (
  -- Keys that occur more than once, with their first row: narrow aggregates, so the wide staged
  -- rows are never sorted (a window over them sorted a million rows twice).
  SELECT source_id, min(row) AS first_row FROM import_stage WHERE source_id IS NOT NULL
  GROUP BY source_id HAVING count(*) > 1
), repeated_code AS (
  SELECT code, min(row) AS first_row FROM import_stage WHERE code IS NOT NULL
  GROUP BY code HAVING count(*) > 1
), matched AS (
  SELECT s.row, s.source_id, s.code, s.serial, s.class_code,
         CASE WHEN s.wkb IS NULL THEN ST_SetSRID(ST_MakePoint(s.lon, s.lat), 4326)
              ELSE ST_SetSRID(ST_GeomFromWKB(decode(s.wkb, 'hex')), 4326) END AS geom,
         s.owner_id, s.maintainer_id, s.supervisor_id, s.state, s.in_use, s.changed_on, s.grid_code,
         s.data_source, s.note, s.installed_on, s.attributes,
         m.id AS m_id, m.code AS m_code, c.id AS c_id, c.source_id AS c_source,
         rs.first_row AS first_source_row, rc.first_row AS first_code_row
  FROM import_stage s
  LEFT JOIN repeated_source rs ON rs.source_id = s.source_id
  LEFT JOIN repeated_code rc ON rc.code = s.code
  LEFT JOIN (SELECT DISTINCT ON (a.source_id) a.source_id, a.id, a.code FROM assets a
             WHERE a.source_id IN (SELECT source_id FROM import_stage)
             ORDER BY a.source_id, a.id) m ON m.source_id = s.source_id
  LEFT JOIN assets c ON c.code = s.code
), flagged AS (
  -- The asset under the row's code may be taken when its source id is only a stand-in, or was
  -- the code itself as written before source ids were normalised (17 digits, dashes...).
  SELECT y.*,
         {_stand_in("y.c_source")}
         OR coalesce(y.c_source ~ '^[0-9[:space:]-]+$'
                     AND left(regexp_replace(y.c_source, '[^0-9]', '', 'g'), 16) = left(y.code, 16),
                     false) AS c_adoptable
  FROM matched y
), judged AS (
  SELECT x.*,
         CASE WHEN x.m_id IS NOT NULL THEN x.m_id
              WHEN x.c_id IS NOT NULL AND x.c_adoptable THEN x.c_id
         END AS asset_id,
         CASE
           WHEN x.first_code_row < x.row THEN
             '智慧码 ' || x.code || ' 重复出现：首次在第 ' || x.first_code_row || ' 行' || chr(31)
             || 'code ' || x.code || ' appears again: first at row ' || x.first_code_row
           WHEN x.source_id IS NOT NULL AND x.first_source_row < x.row THEN
             CASE WHEN x.source_id LIKE 'geom:%'
                  THEN '与第 ' || x.first_source_row || ' 行是同一设施类型、同一位置，且两行都没有编号'
                       || chr(31) || 'the same class at the same position as row ' || x.first_source_row
                       || ', and neither has an identifier'
                  ELSE '原编号 ' || x.source_id || ' 重复出现：首次在第 ' || x.first_source_row || ' 行'
                       || chr(31) || 'source id ' || x.source_id || ' appears again: first at row '
                       || x.first_source_row
             END
           WHEN x.m_id IS NOT NULL AND x.code IS NOT NULL AND x.code <> x.m_code THEN
             '原编号 ' || x.source_id || ' 已登记为智慧码 ' || x.m_code || '，文件现在给出 ' || x.code
             || '：智慧码一经分配永不改变' || chr(31)
             || 'source id ' || x.source_id || ' is registered as code ' || x.m_code
             || ', the file now gives ' || x.code || ': a smart code never changes'
           WHEN x.m_id IS NULL AND x.c_id IS NOT NULL AND NOT x.c_adoptable THEN
             '智慧码 ' || x.code || ' 已登记给另一设施（原编号 ' || x.c_source || '）' || chr(31)
             || 'code ' || x.code || ' is already registered to another asset (source id '
             || x.c_source || ')'
         END AS reject_reason
  FROM flagged x
)
SELECT j.row, j.source_id, j.code, j.serial, j.class_code, j.geom, j.owner_id, j.maintainer_id,
       j.supervisor_id, j.state, j.in_use, j.changed_on, j.grid_code, j.data_source, j.note,
       j.installed_on, j.attributes, j.asset_id,
       coalesce(j.reject_reason,
         CASE WHEN CAST(:actor_unit AS bigint) IS NOT NULL
                   AND a.owner_id IS DISTINCT FROM CAST(:actor_unit AS bigint)
           THEN '设施 ' || a.code || ' 属于其他单位：单位令牌只能导入本单位的设施' || chr(31)
                || 'asset ' || a.code || ' belongs to another unit: '
                || 'a unit token may only import assets of its own unit'
         END,
         -- The class is part of the smart code, and a code never changes.
         CASE WHEN a.class_code <> j.class_code
           THEN '设施类型 ' || j.class_code || ' 与设施 ' || a.code || ' 登记的类别 ' || a.class_code
                || ' 不同：类别是智慧码的一部分，永不改变（请注销该设施，再不带其编号导入新设施）' || chr(31)
                || 'class ' || j.class_code || ' given, but asset ' || a.code || ' is registered as class '
                || a.class_code || ': the class is part of the smart code and never changes '
                || '(decommission the asset and import the new one without its identifier)'
         END) AS reject_reason,
       CASE
         WHEN j.reject_reason IS NOT NULL OR (CAST(:actor_unit AS bigint) IS NOT NULL AND a.id IS NOT NULL
                                              AND a.owner_id IS DISTINCT FROM CAST(:actor_unit AS bigint))
              OR a.class_code <> j.class_code
           THEN 'reject'
         WHEN a.id IS NULL THEN 'create'
         WHEN a.geom IS DISTINCT FROM j.geom
           OR (j.owner_id IS NOT NULL AND j.owner_id IS DISTINCT FROM a.owner_id)
           OR (j.maintainer_id IS NOT NULL AND j.maintainer_id IS DISTINCT FROM a.maintainer_id)
           OR (j.supervisor_id IS NOT NULL AND j.supervisor_id IS DISTINCT FROM a.supervisor_id)
           OR (j.state IS NOT NULL AND j.state IS DISTINCT FROM a.state)
           OR (j.in_use IS NOT NULL AND j.in_use IS DISTINCT FROM a.in_use)
           OR (j.grid_code IS NOT NULL AND j.grid_code IS DISTINCT FROM a.grid_code)
           OR (j.data_source IS NOT NULL AND j.data_source IS DISTINCT FROM a.data_source)
           OR (j.note IS NOT NULL AND j.note IS DISTINCT FROM a.note)
           OR (j.installed_on IS NOT NULL AND j.installed_on IS DISTINCT FROM a.installed_on)
           OR (j.attributes IS NOT NULL AND a.attributes || j.attributes <> a.attributes)
           OR ({_stand_in("a.source_id")} AND j.source_id IS DISTINCT FROM a.source_id)
           THEN 'update'
         ELSE 'unchanged'
       END AS action
FROM judged j LEFT JOIN assets a ON a.id = j.asset_id
"""

# The day a row marked out of use (作废) was changed, read as local midnight; else now.
_DECOMMISSIONED_AT = "coalesce(p.changed_on::timestamp AT TIME ZONE CAST(:tz AS text), now())"

_INSERT = f"""
INSERT INTO assets (code, county_code, class_code, serial, geom, owner_id, maintainer_id, supervisor_id,
                    state, in_use, decommissioned_at, decommission_reason, grid_code, data_source, note,
                    installed_on, attributes, source_id, batch_id)
SELECT coalesce(p.code, CAST(:county AS text) || p.class_code || lpad((al.first + n.k)::text, 6, '0')
                        || get_byte(CAST(:checks AS bytea), al.offset_ + n.k::int)::text),
       CAST(:county AS text), p.class_code, coalesce(p.serial, al.first + n.k), p.geom,
       p.owner_id, p.maintainer_id, p.supervisor_id, coalesce(p.state, '完好'), coalesce(p.in_use, true),
       CASE WHEN p.in_use = false THEN {_DECOMMISSIONED_AT} END,
       CASE WHEN p.in_use = false THEN CAST(:reason AS text) END,
       p.grid_code, p.data_source, p.note, p.installed_on, coalesce(p.attributes, '{{}}'), p.source_id,
       CAST(:batch AS bigint)
FROM import_plan p
-- The k-th code-less new row of a class (file order) gets the k-th serial of the class's range.
-- Numbered in a narrow subquery, so only (row, class) pairs are sorted, not the planned rows.
LEFT JOIN (SELECT n.row, row_number() OVER (PARTITION BY n.class_code ORDER BY n.row) - 1 AS k
           FROM import_plan n WHERE n.action = 'create' AND n.code IS NULL) n ON n.row = p.row
LEFT JOIN import_alloc al ON al.class_code = p.class_code AND p.code IS NULL
WHERE p.action = 'create'
"""

# Whether the asset is in use after the update. An asset decommissioned by the rollback of its
# import batch (its source id set aside as 'rolledback:...') and named again by its code is the
# same asset coming back: it is in use again unless the row says otherwise.
_IN_USE = (
    "(CASE WHEN a.source_id LIKE 'rolledback:%' THEN coalesce(p.in_use, true) "
    "ELSE coalesce(p.in_use, a.in_use) END)"
)

_UPDATE = f"""
UPDATE assets a SET
  geom = p.geom,
  owner_id = coalesce(p.owner_id, a.owner_id),
  maintainer_id = coalesce(p.maintainer_id, a.maintainer_id),
  supervisor_id = coalesce(p.supervisor_id, a.supervisor_id),
  state = coalesce(p.state, a.state),
  in_use = {_IN_USE},
  decommissioned_at = CASE WHEN {_IN_USE} = a.in_use THEN a.decommissioned_at
                           WHEN {_IN_USE} THEN NULL ELSE {_DECOMMISSIONED_AT} END,
  decommission_reason = CASE WHEN {_IN_USE} = a.in_use THEN a.decommission_reason
                             WHEN {_IN_USE} THEN NULL ELSE CAST(:reason AS text) END,
  grid_code = coalesce(p.grid_code, a.grid_code),
  data_source = coalesce(p.data_source, a.data_source),
  note = coalesce(p.note, a.note),
  installed_on = coalesce(p.installed_on, a.installed_on),
  attributes = a.attributes || coalesce(p.attributes, '{{}}'),
  source_id = CASE WHEN {_stand_in("a.source_id")} THEN coalesce(p.source_id, a.source_id)
                   ELSE a.source_id END,
  batch_id = CAST(:batch AS bigint)
FROM import_plan p
WHERE p.action = 'update' AND a.id = p.asset_id
"""


@dataclass
class MergeResult:
    """What the merge did (or, for a dry run, would do)."""

    created: int
    updated: int
    unchanged: int
    rejected: int
    problems: list[RowProblem]
    allocated: dict[str, int]


def reject_field(reason: str, fields: dict[str, str]) -> str:
    """The source field a plan rejection is about (the first words of its English half say which)."""
    reason = getattr(reason, "en", reason)
    if reason.startswith("code"):
        return fields.get("code", "code")
    if reason.startswith("source id"):
        return fields.get("source_id", fields.get("code", "source_id"))
    if reason.startswith("asset"):
        return fields.get("owner", "owner")
    if reason.startswith("class"):
        return fields.get("class_name", fields.get("class_code", "class"))
    return "geometry"


def plan(session: Session, actor_unit: int | None, problem_cap: int, fields: dict[str, str]) -> MergeResult:
    """Match staged rows to assets and decide create / update / unchanged / reject for each."""
    session.execute(text("ANALYZE import_stage"))
    session.execute(text(_PLAN), {"actor_unit": actor_unit})
    counts = dict(
        session.execute(text("SELECT action, count(*) FROM import_plan GROUP BY action")).tuples().all()
    )
    rows = session.execute(
        text(
            "SELECT row, reject_reason, coalesce(source_id, code) FROM import_plan "
            "WHERE action = 'reject' ORDER BY row LIMIT :cap"
        ),
        {"cap": problem_cap},
    ).all()
    problems = [
        RowProblem(row, reject_field(bilingual, fields), bilingual, value)
        for row, reason, value in rows
        for bilingual in (split(reason),)
    ]
    to_allocate = dict(
        session.execute(
            text(
                "SELECT class_code, count(*) FROM import_plan WHERE action = 'create' AND code IS NULL "
                "GROUP BY class_code ORDER BY class_code"
            )
        )
        .tuples()
        .all()
    )
    return MergeResult(
        created=counts.get("create", 0),
        updated=counts.get("update", 0),
        unchanged=counts.get("unchanged", 0),
        rejected=counts.get("reject", 0),
        problems=problems,
        allocated=to_allocate,
    )


def allocate(session: Session, county: str, allocated: dict[str, int]) -> bytes:
    """Reserve the explicit serials, then allocate one range per class for rows without a code.

    Returns the check digits of all ranges, one per byte, class after class; ``import_alloc``
    says where each class's range starts in it. The insert reads them with ``get_byte`` from
    this one bind parameter (in memory, so each read is O(1); a bytea stored in a table row is
    TOASTed and was decompressed whole for every row), so the database never computes MOD 11,10.
    """
    explicit = session.execute(
        text(
            "SELECT class_code, max(serial) FROM import_plan WHERE action = 'create' AND code IS NOT NULL "
            "GROUP BY class_code"
        )
    ).all()
    for class_code, top in explicit:
        reserve_serial(session, county, class_code, int(top))
    session.execute(text("DROP TABLE IF EXISTS import_alloc"))
    session.execute(
        text(
            "CREATE TEMP TABLE import_alloc (class_code text, first integer, offset_ integer) ON COMMIT DROP"
        )
    )
    digits = []
    offset = 0
    for class_code, count in allocated.items():
        serials = allocate_serials(session, county, class_code, count)
        digits.append(check_digits(county + class_code, np.arange(serials.start, serials.stop)).tobytes())
        session.execute(
            text("INSERT INTO import_alloc VALUES (:c, :f, :o)"),
            {"c": class_code, "f": serials.start, "o": offset},
        )
        offset += count
    return b"".join(digits)


def write_created(session: Session, params: dict[str, Any]) -> int:
    """Insert the new assets; returns how many."""
    return int(session.execute(text(_INSERT), params).rowcount)  # type: ignore[attr-defined]


def write_updated(session: Session, params: dict[str, Any]) -> int:
    """Update the changed assets; returns how many."""
    return int(session.execute(text(_UPDATE), params).rowcount)  # type: ignore[attr-defined]
