"""The resolution log, partitioned by month, so old months can be dropped whole.

Revision ID: 0023_partitioned_resolution_log
Revises: 0016_event_outbox
Create Date: 2026-12-06

Every lookup appends a row (a busy city: tens of millions a month). A plain table can only shed old
rows by DELETE, which leaves bloat and vacuum work behind; a month's partition is dropped in an
instant. The existing table is not copied: it becomes the first partition (everything before the
first day of next month, UTC), so the migration costs one new index and one validation scan, not a
rewrite. From then on ``smartcode_resolution_log_partitions(months_ahead)`` adds the coming months
(the service calls it at start and daily; it is SECURITY DEFINER because the service role may not
create tables). A DEFAULT partition catches rows of a month that has no partition yet, so a missed
maintenance never fails a lookup; the function moves such rows into their month when it creates it.
Dropping old months (retention) is the owner's job (``smartcode db log``): the service role can
never remove history.

The primary key becomes (id, at): PostgreSQL needs the partition key in every unique key. Ids still
come from the one sequence, so an id alone still finds one row.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0023_partitioned_resolution_log"
down_revision: str | None = "0016_event_outbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "smartcode_app"

# The partitions of the log with their bounds (NULL lower bound: from the beginning of time).
_BOUNDS_FUNCTION = r"""
CREATE FUNCTION smartcode_resolution_log_bounds(
  OUT part regclass, OUT is_default boolean, OUT lower_bound timestamptz, OUT upper_bound timestamptz)
RETURNS SETOF record LANGUAGE sql STABLE SET search_path = public, pg_temp AS $fn$
  SELECT c.oid::regclass, b = 'DEFAULT',
         substring(b FROM 'FROM \(''([^'']+)''\)')::timestamptz,
         substring(b FROM 'TO \(''([^'']+)''\)')::timestamptz
  FROM pg_inherits i
  JOIN pg_class c ON c.oid = i.inhrelid
  CROSS JOIN LATERAL pg_get_expr(c.relpartbound, c.oid) AS b
  WHERE i.inhparent = 'resolution_log'::regclass
$fn$;
"""

_PARTITIONS_FUNCTION = r"""
CREATE FUNCTION smartcode_resolution_log_partitions(months_ahead integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $fn$
DECLARE
  first_month timestamp := date_trunc('month', now() AT TIME ZONE 'UTC');
  m timestamp;
  lo timestamptz;
  hi timestamptz;
  part text;
  created integer := 0;
BEGIN
  FOR i IN 0 .. least(greatest(months_ahead, 0), 24) LOOP
    m := first_month + make_interval(months => i);
    lo := m AT TIME ZONE 'UTC';
    hi := (m + interval '1 month') AT TIME ZONE 'UTC';
    part := format('resolution_log_y%sm%s', to_char(m, 'YYYY'), to_char(m, 'MM'));
    -- A month already covered (also by the first partition, the table from before) is left alone.
    CONTINUE WHEN EXISTS (
      SELECT FROM smartcode_resolution_log_bounds() b
      WHERE NOT b.is_default AND (b.lower_bound IS NULL OR b.lower_bound <= lo) AND b.upper_bound > lo);
    EXECUTE format('CREATE TABLE %I (LIKE resolution_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
    -- Rows that arrived before their month had a partition wait in the default one: move them.
    EXECUTE format(
      'WITH moved AS (DELETE FROM resolution_log_default WHERE at >= %L AND at < %L RETURNING *) '
      'INSERT INTO %I SELECT * FROM moved', lo, hi, part);
    EXECUTE format(
      'ALTER TABLE resolution_log ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'APP_ROLE') THEN
      -- Reached only through the parent, where the service may read and append, never delete.
      EXECUTE format('REVOKE ALL ON TABLE %I FROM APP_ROLE', part);
    END IF;
    created := created + 1;
  END LOOP;
  RETURN created;
END $fn$;
""".replace("APP_ROLE", APP_ROLE)


def upgrade() -> None:
    op.execute(
        f"""
        ALTER TABLE resolution_log RENAME TO resolution_log_before;
        ALTER INDEX resolution_log_at_brin RENAME TO resolution_log_before_at_brin;
        ALTER INDEX resolution_log_asset_idx RENAME TO resolution_log_before_asset_idx;
        ALTER TABLE resolution_log_before DROP CONSTRAINT resolution_log_pkey;
        ALTER TABLE resolution_log_before ADD CONSTRAINT resolution_log_before_pkey PRIMARY KEY (id, at);

        CREATE TABLE resolution_log (LIKE resolution_log_before INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
          PARTITION BY RANGE (at);
        ALTER TABLE resolution_log ADD CONSTRAINT resolution_log_pkey PRIMARY KEY (id, at);
        CREATE INDEX resolution_log_at_brin ON resolution_log USING brin (at);
        CREATE INDEX resolution_log_asset_idx ON resolution_log (asset_code);
        ALTER SEQUENCE resolution_log_id_seq OWNED BY resolution_log.id;

        DO $attach$
        BEGIN
          EXECUTE format(
            'ALTER TABLE resolution_log ATTACH PARTITION resolution_log_before '
            'FOR VALUES FROM (MINVALUE) TO (%L)',
            (date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC');
        END $attach$;
        CREATE TABLE resolution_log_default PARTITION OF resolution_log DEFAULT;

        DO $grants$
        BEGIN
          IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
            REVOKE ALL ON TABLE resolution_log, resolution_log_before, resolution_log_default FROM {APP_ROLE};
            GRANT SELECT, INSERT ON TABLE resolution_log TO {APP_ROLE};
          END IF;
        END $grants$;
        """
    )
    op.execute(_BOUNDS_FUNCTION)
    op.execute(_PARTITIONS_FUNCTION)
    op.execute(
        f"""
        DO $grants$
        BEGIN
          REVOKE ALL ON FUNCTION smartcode_resolution_log_partitions(integer) FROM PUBLIC;
          IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
            GRANT EXECUTE ON FUNCTION smartcode_resolution_log_partitions(integer) TO {APP_ROLE};
          END IF;
        END $grants$
        """
    )
    op.execute("SELECT smartcode_resolution_log_partitions(2)")


def downgrade() -> None:
    op.execute("DROP FUNCTION smartcode_resolution_log_partitions(integer)")
    op.execute("DROP FUNCTION smartcode_resolution_log_bounds()")
    op.execute(
        f"""
        CREATE TABLE resolution_log_plain (LIKE resolution_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
        INSERT INTO resolution_log_plain SELECT * FROM resolution_log;
        ALTER SEQUENCE resolution_log_id_seq OWNED BY resolution_log_plain.id;
        DROP TABLE resolution_log;
        ALTER TABLE resolution_log_plain RENAME TO resolution_log;
        ALTER TABLE resolution_log ADD CONSTRAINT resolution_log_pkey PRIMARY KEY (id);
        CREATE INDEX resolution_log_at_brin ON resolution_log USING brin (at);
        CREATE INDEX resolution_log_asset_idx ON resolution_log (asset_code);
        DO $grants$
        BEGIN
          IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
            REVOKE ALL ON TABLE resolution_log FROM {APP_ROLE};
            GRANT SELECT, INSERT ON TABLE resolution_log TO {APP_ROLE};
          END IF;
        END $grants$;
        """
    )
