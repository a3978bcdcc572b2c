"""Current-row versioning, set-based reference checks, one spatial index: a new asset is one row.

Revision ID: 0004_current_row_versions
Revises: 0003_imports
Create Date: 2026-11-22

Until 0003 every new asset cost three rows (the asset, a first ``asset_history`` version and an
open ``asset_responsibility`` period), four row-level foreign-key checks and three GiST entries:
a million-row import spent 144 s in its one INSERT (docs/benchmarks.md). From here on:

* **The current version lives in the asset row** (as in SQL:2011 system-versioned tables): who
  recorded it, when, why, in which action and batch (``changed_by``, ``changed_at``,
  ``change_reason``, ``change_action``, ``batch_id``), and since when its units are responsible
  (``responsible_since``; NULL means "since installation", or since ever while the installation
  date is unknown). ``asset_history`` keeps the superseded versions and ``asset_responsibility``
  the closed periods, both written by the update trigger from the rows being replaced. Creating
  an asset writes one row.
* **References are checked per statement, not per row.** The foreign keys from ``assets`` to
  ``units`` and ``component_classes`` become one statement-level trigger that locks the distinct
  referenced keys (``FOR KEY SHARE``, as a foreign key would) and looks for missing ones with one
  anti-join; deleting a unit or class that an asset names, or renumbering it, is refused.
* **The check digit is checked in the database** (``assets_check_digit``), which makes the unique
  index on (county, class, serial) redundant: the code is unique and its first 16 digits are those.
* **One spatial index**: a GiST on (class number, metric geometry), ``(class_code::smallint,
  geom_m)``. It answers "the nearest assets of class c" inside the index, as the composite
  (class_code, geom_m) GiST of 0002 did, and also serves searches over every class and bounding
  boxes; the class as a smallint costs 8 microseconds a row to index where the text key cost 19.
  It replaces ``assets_geom_gist``, ``assets_geom_m_gist`` and ``assets_class_geom_m_gist``.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic.script import ScriptDirectory

from alembic import context, op

revision: str = "0004_current_row_versions"
down_revision: str | None = "0003_imports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UNIT_COLUMNS = ("owner_id", "maintainer_id", "supervisor_id")


def _metric_srid() -> int:
    srid = context.config.attributes.get("metric_srid")
    if srid is None:
        from common.settings import get_settings

        srid = get_settings().area.metric_srid
    return int(srid)


def _metric_envelope_function(srid: int) -> str:
    # Any WGS84 area (a bounding box, say) as a box in the metric SRID of geom_m. Only the part
    # within the metric CRS's area of use (3 degrees of margin) can hold assets, and projecting a
    # world-wide box is meaningless, so the area is clipped to it first; its edges are then
    # densified (0.01 degree), because a parallel is curved in Gauss-Kruger and the projected
    # corners alone miss the bulge; 10 m of margin cover what is left.
    import pyproj

    bounds = pyproj.CRS.from_epsg(srid).area_of_use
    if bounds is None:
        west, south, east, north = -180.0, -85.0, 180.0, 85.0
    else:
        west, south = max(bounds.west - 3, -180.0), max(bounds.south - 3, -85.0)
        east, north = min(bounds.east + 3, 180.0), min(bounds.north + 3, 85.0)
    return f"""
CREATE FUNCTION smartcode_metric_envelope(area geometry) RETURNS geometry
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT ST_Expand(ST_Envelope(ST_Transform(ST_Segmentize(
           ST_Intersection(area, ST_MakeEnvelope({west}, {south}, {east}, {north}, 4326)), 0.01),
           {srid})), 10)
$$
"""


def _check_digit_function() -> str:
    # ISO 7064 MOD 11,10 over the 16 digits, unrolled into one arithmetic expression so that it is
    # inlined: about 0.6 microseconds a row, where the unique btree it replaces cost several.
    # Step per digit d: p = (2 * ((p + d - 1) mod 10 + 1)) mod 11, from p = 10; check = (11 - p) mod 10.
    state = "10"
    for position in range(1, 17):
        state = f"(2 * (({state} + ascii(substr(code, {position}, 1)) - 49) % 10 + 1)) % 11"
    return f"""
CREATE FUNCTION smartcode_check_digit_ok(code text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT (11 - {state}) % 10 = ascii(substr(code, 17, 1)) - 48
$$
"""


_FUNCTIONS = """
-- The start of an asset's current responsibility period: set when its units last changed, else
-- its installation (local midnight), else since ever.
CREATE FUNCTION smartcode_period_start(since timestamptz, installed date) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
  SELECT coalesce(since, installed::timestamp AT TIME ZONE 'Asia/Shanghai', '-infinity'::timestamptz)
$$;

"""

_BEFORE_UPDATE = """
CREATE OR REPLACE FUNCTION assets_before_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  started timestamptz;
BEGIN
  IF NEW.code <> OLD.code OR NEW.id <> OLD.id THEN
    RAISE EXCEPTION 'the smart code of asset % never changes', OLD.code
      USING ERRCODE = 'check_violation';
  END IF;
  NEW.version := OLD.version + 1;
  NEW.changed_at := now();
  NEW.changed_by := coalesce(smartcode_ctx('actor'), session_user);
  NEW.change_reason := smartcode_ctx('reason');
  NEW.change_action := coalesce(smartcode_ctx('action'), 'update');
  NEW.batch_id := smartcode_ctx('batch_id')::bigint;
  started := smartcode_period_start(OLD.responsible_since, OLD.installed_on);
  IF (NEW.owner_id, NEW.maintainer_id, NEW.supervisor_id)
     IS DISTINCT FROM (OLD.owner_id, OLD.maintainer_id, OLD.supervisor_id) THEN
    -- The old units' period ends when the change takes effect; one that starts later (a legacy
    -- future installation date) ends just after its start, so periods stay ordered.
    NEW.responsible_since := greatest(coalesce(smartcode_ctx('effective_at')::timestamptz, now()),
                                      started + interval '1 microsecond');
  ELSIF OLD.responsible_since IS NULL AND OLD.installed_on IS NOT NULL THEN
    -- Fixed from now on: a later edit of the installation date does not move the period.
    NEW.responsible_since := started;
  ELSE
    NEW.responsible_since := OLD.responsible_since;
  END IF;
  RETURN NEW;
END $$
"""

# The before-update body of 0001, restored on downgrade.
_BEFORE_UPDATE_0001 = """
CREATE OR REPLACE FUNCTION assets_before_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.code <> OLD.code OR NEW.id <> OLD.id THEN
    RAISE EXCEPTION 'the smart code of asset % never changes', OLD.code
      USING ERRCODE = 'check_violation';
  END IF;
  NEW.version := OLD.version + 1;
  NEW.changed_at := now();
  RETURN NEW;
END $$
"""

_AFTER_UPDATE = """
CREATE OR REPLACE FUNCTION assets_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- The replaced versions, as they were recorded (their own who, when, why).
  EXECUTE format($q$
    INSERT INTO asset_history
           (asset_id, version, recorded_at, actor, reason, action, batch_id, data, geom)
    SELECT n.id, n.version, n.changed_at, n.changed_by, n.change_reason, n.change_action, n.batch_id,
           %s, n.geom
    FROM old_rows n $q$, assets_history_data_sql());
  -- The closed periods of the assets whose units changed, recorded with the change that closed them.
  INSERT INTO asset_responsibility
         (asset_id, owner_id, maintainer_id, supervisor_id, valid_from, valid_to, recorded_at, actor, reason)
  SELECT o.id, o.owner_id, o.maintainer_id, o.supervisor_id,
         smartcode_period_start(o.responsible_since, o.installed_on), n.responsible_since,
         n.changed_at, n.changed_by, n.change_reason
  FROM new_rows n JOIN old_rows o ON o.id = n.id
  WHERE (n.owner_id, n.maintainer_id, n.supervisor_id)
        IS DISTINCT FROM (o.owner_id, o.maintainer_id, o.supervisor_id);
  RETURN NULL;
END $$
"""

_CHECK_REFERENCES = """
CREATE FUNCTION assets_check_references() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  classes text[];
  owners bigint[];
  maintainers bigint[];
  supervisors bigint[];
  col text;
  missing text;
  example text;
BEGIN
  -- What a foreign key does per row, once per statement: one pass collects the distinct references
  -- (a batch names a handful of units and classes), the referenced rows are locked against
  -- deletion until this transaction ends, and any reference without a row is refused.
  SELECT array_agg(DISTINCT r.class_code),
         array_agg(DISTINCT r.owner_id) FILTER (WHERE r.owner_id IS NOT NULL),
         array_agg(DISTINCT r.maintainer_id) FILTER (WHERE r.maintainer_id IS NOT NULL),
         array_agg(DISTINCT r.supervisor_id) FILTER (WHERE r.supervisor_id IS NOT NULL)
  INTO classes, owners, maintainers, supervisors
  FROM (SELECT DISTINCT class_code, owner_id, maintainer_id, supervisor_id FROM new_rows) r;
  PERFORM 1 FROM units u WHERE u.id = ANY(owners || maintainers || supervisors) FOR KEY SHARE;
  PERFORM 1 FROM component_classes c WHERE c.code = ANY(classes) FOR KEY SHARE;
  SELECT m.col, m.val INTO col, missing
  FROM (SELECT 'owner_id' AS col, x::text AS val FROM unnest(owners) x
        WHERE NOT EXISTS (SELECT FROM units u WHERE u.id = x)
        UNION ALL
        SELECT 'maintainer_id', x::text FROM unnest(maintainers) x
        WHERE NOT EXISTS (SELECT FROM units u WHERE u.id = x)
        UNION ALL
        SELECT 'supervisor_id', x::text FROM unnest(supervisors) x
        WHERE NOT EXISTS (SELECT FROM units u WHERE u.id = x)
        UNION ALL
        SELECT 'class_code', x FROM unnest(classes) x
        WHERE NOT EXISTS (SELECT FROM component_classes c WHERE c.code = x)) m
  LIMIT 1;
  IF col IS NOT NULL THEN
    EXECUTE format('SELECT code FROM new_rows WHERE %I::text = $1 LIMIT 1', col) INTO example USING missing;
    RAISE EXCEPTION 'insert or update on table "assets" violates foreign key constraint "assets_%_fkey"', col
      USING ERRCODE = 'foreign_key_violation',
            DETAIL = format('Key (%s)=(%s) of asset %s is not present in table "%s".', col, missing,
                            example, CASE WHEN col = 'class_code' THEN 'component_classes' ELSE 'units' END);
  END IF;
  RETURN NULL;
END $$;

CREATE FUNCTION units_keep_referenced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND NEW.id = OLD.id THEN
    RETURN NEW;
  END IF;
  -- The check below sees assets committed while this statement waited for their lock only with a
  -- fresh snapshot, which READ COMMITTED takes and stricter levels do not.
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION 'units are deleted or renumbered only at READ COMMITTED isolation'
      USING ERRCODE = 'serialization_failure';
  END IF;
  IF EXISTS (SELECT FROM assets a WHERE a.owner_id = OLD.id)
     OR EXISTS (SELECT FROM assets a WHERE a.maintainer_id = OLD.id)
     OR EXISTS (SELECT FROM assets a WHERE a.supervisor_id = OLD.id) THEN
    RAISE EXCEPTION 'unit % (%) is named by assets: it cannot be deleted or renumbered', OLD.id, OLD.name
      USING ERRCODE = 'foreign_key_violation';
  END IF;
  RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;

CREATE FUNCTION classes_keep_referenced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND NEW.code = OLD.code THEN
    RETURN NEW;
  END IF;
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION 'classes are deleted or renumbered only at READ COMMITTED isolation'
      USING ERRCODE = 'serialization_failure';
  END IF;
  IF EXISTS (SELECT FROM assets a WHERE a.class_code = OLD.code) THEN
    RAISE EXCEPTION 'class % (%) has assets: it cannot be deleted or renumbered (retire it)',
                    OLD.code, OLD.name
      USING ERRCODE = 'foreign_key_violation';
  END IF;
  RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;
"""


def upgrade() -> None:
    op.execute("DROP TRIGGER assets_after_insert ON assets")
    op.execute("DROP TRIGGER assets_after_update ON assets")
    op.execute("DROP TRIGGER assets_before_update ON assets")
    op.execute("DROP FUNCTION assets_after_insert()")
    op.execute(_FUNCTIONS)
    op.execute(_metric_envelope_function(_metric_srid()))

    # The current version's record moves into the asset row; history keeps the replaced ones.
    op.execute(
        "ALTER TABLE assets ADD COLUMN changed_by text, ADD COLUMN change_reason text, "
        "ADD COLUMN change_action text, ADD COLUMN responsible_since timestamptz"
    )
    op.execute(
        """
        UPDATE assets a SET changed_by = h.actor, change_reason = h.reason, change_action = h.action,
               batch_id = h.batch_id, changed_at = h.recorded_at
        FROM asset_history h WHERE h.asset_id = a.id AND h.version = a.version
        """
    )
    op.execute(
        "UPDATE assets SET changed_by = coalesce(changed_by, session_user), "
        "change_action = coalesce(change_action, 'create')"
    )
    op.execute(
        """
        UPDATE assets a SET responsible_since = nullif(r.valid_from, '-infinity')
        FROM asset_responsibility r WHERE r.asset_id = a.id AND r.valid_to IS NULL
        """
    )
    op.execute("DELETE FROM asset_history h USING assets a WHERE h.asset_id = a.id AND h.version = a.version")
    # 0003 recorded on each period the change that opened it; from here on a closed period records
    # the change that closed it, which is the one that opened the next period.
    op.execute(
        """
        UPDATE asset_responsibility r SET recorded_at = n.recorded_at, actor = n.actor, reason = n.reason
        FROM (SELECT id, lead(recorded_at) OVER w AS recorded_at, lead(actor) OVER w AS actor,
                     lead(reason) OVER w AS reason
              FROM asset_responsibility WINDOW w AS (PARTITION BY asset_id ORDER BY valid_from)) n
        WHERE n.id = r.id AND r.valid_to IS NOT NULL
        """
    )
    op.execute("DELETE FROM asset_responsibility WHERE valid_to IS NULL")
    op.execute("DROP INDEX asset_responsibility_open")
    op.execute(
        "ALTER TABLE asset_responsibility "
        "ADD CONSTRAINT asset_responsibility_closed CHECK (valid_to IS NOT NULL)"
    )
    op.execute(
        """
        ALTER TABLE assets
          ALTER COLUMN changed_by SET DEFAULT coalesce(smartcode_ctx('actor'), session_user),
          ALTER COLUMN changed_by SET NOT NULL,
          ALTER COLUMN change_reason SET DEFAULT smartcode_ctx('reason'),
          ALTER COLUMN change_action SET DEFAULT coalesce(smartcode_ctx('action'), 'create'),
          ALTER COLUMN change_action SET NOT NULL,
          ALTER COLUMN batch_id SET DEFAULT smartcode_ctx('batch_id')::bigint,
          ALTER COLUMN responsible_since SET DEFAULT smartcode_ctx('effective_at')::timestamptz
        """
    )
    op.execute(_BEFORE_UPDATE)
    op.execute(_AFTER_UPDATE)
    op.execute(
        "CREATE TRIGGER assets_before_update BEFORE UPDATE ON assets "
        "FOR EACH ROW EXECUTE FUNCTION assets_before_update()"
    )
    op.execute(
        "CREATE TRIGGER assets_after_update AFTER UPDATE ON assets "
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION assets_after_update()"
    )

    # Foreign keys of assets -> one check per statement.
    for column in _UNIT_COLUMNS:
        op.execute(f"ALTER TABLE assets DROP CONSTRAINT assets_{column}_fkey")
    op.execute("ALTER TABLE assets DROP CONSTRAINT assets_class_code_fkey")
    op.execute(_CHECK_REFERENCES)
    for event in ("INSERT", "UPDATE"):
        op.execute(
            f"CREATE TRIGGER assets_check_references_{event.lower()} AFTER {event} ON assets "
            "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION assets_check_references()"
        )
    op.execute(
        "CREATE TRIGGER units_keep_referenced BEFORE DELETE OR UPDATE OF id ON units "
        "FOR EACH ROW EXECUTE FUNCTION units_keep_referenced()"
    )
    op.execute(
        "CREATE TRIGGER classes_keep_referenced BEFORE DELETE OR UPDATE OF code ON component_classes "
        "FOR EACH ROW EXECUTE FUNCTION classes_keep_referenced()"
    )

    # The 17th digit is checked in the database; with the unique code and the check that the first
    # 16 digits are county, class and serial, that makes (county, class, serial) unique without a
    # second unique index.
    op.execute(_check_digit_function())
    op.execute("ALTER TABLE assets DROP CONSTRAINT assets_county_class_serial_key")
    op.execute("ALTER TABLE assets ADD CONSTRAINT assets_check_digit CHECK (smartcode_check_digit_ok(code))")

    # Three GiST indexes -> one.
    op.execute("DROP INDEX assets_geom_gist")
    op.execute("DROP INDEX assets_geom_m_gist")
    op.execute("DROP INDEX assets_class_geom_m_gist")
    op.execute(
        "CREATE INDEX assets_class_no_geom_m_gist ON assets USING gist ((class_code::smallint), geom_m)"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE assets DROP CONSTRAINT assets_check_digit")
    op.execute("DROP FUNCTION smartcode_check_digit_ok(text)")
    op.execute(
        "ALTER TABLE assets ADD CONSTRAINT assets_county_class_serial_key "
        "UNIQUE (county_code, class_code, serial)"
    )
    op.execute("DROP INDEX assets_class_no_geom_m_gist")
    op.execute("CREATE INDEX assets_geom_gist ON assets USING gist (geom)")
    op.execute("CREATE INDEX assets_geom_m_gist ON assets USING gist (geom_m)")
    op.execute("CREATE INDEX assets_class_geom_m_gist ON assets USING gist (class_code, geom_m)")

    op.execute("DROP TRIGGER classes_keep_referenced ON component_classes")
    op.execute("DROP TRIGGER units_keep_referenced ON units")
    op.execute("DROP TRIGGER assets_check_references_insert ON assets")
    op.execute("DROP TRIGGER assets_check_references_update ON assets")
    op.execute("DROP FUNCTION classes_keep_referenced(), units_keep_referenced(), assets_check_references()")
    op.execute(
        "ALTER TABLE assets ADD CONSTRAINT assets_class_code_fkey FOREIGN KEY (class_code) "
        "REFERENCES component_classes(code)"
    )
    for column in _UNIT_COLUMNS:
        op.execute(
            f"ALTER TABLE assets ADD CONSTRAINT assets_{column}_fkey "
            f"FOREIGN KEY ({column}) REFERENCES units(id)"
        )

    op.execute("DROP TRIGGER assets_after_update ON assets")
    op.execute("DROP TRIGGER assets_before_update ON assets")
    # Back to one history row per version and an open period per asset.
    op.execute(
        """
        DO $$ BEGIN
          EXECUTE format($q$
            INSERT INTO asset_history
                   (asset_id, version, recorded_at, actor, reason, action, batch_id, data, geom)
            SELECT n.id, n.version, n.changed_at, n.changed_by, n.change_reason, n.change_action,
                   n.batch_id, %s, n.geom
            FROM assets n $q$, assets_history_data_sql());
        END $$
        """
    )
    op.execute("ALTER TABLE asset_responsibility DROP CONSTRAINT asset_responsibility_closed")
    # Back to 0003's meaning: each period records the change that opened it, i.e. the change that
    # closed the period before (or the asset's first version for the first period).
    op.execute(
        """
        CREATE TEMP TABLE first_versions ON COMMIT DROP AS
        SELECT DISTINCT ON (asset_id) asset_id, recorded_at, actor, reason
        FROM asset_history ORDER BY asset_id, version
        """
    )
    op.execute(
        """
        INSERT INTO asset_responsibility
               (asset_id, owner_id, maintainer_id, supervisor_id, valid_from, recorded_at, actor, reason)
        SELECT a.id, a.owner_id, a.maintainer_id, a.supervisor_id,
               smartcode_period_start(a.responsible_since, a.installed_on),
               coalesce(last.recorded_at, f.recorded_at), coalesce(last.actor, f.actor),
               CASE WHEN last.asset_id IS NOT NULL THEN last.reason ELSE f.reason END
        FROM assets a
        JOIN first_versions f ON f.asset_id = a.id
        LEFT JOIN (SELECT DISTINCT ON (asset_id) asset_id, recorded_at, actor, reason
                   FROM asset_responsibility ORDER BY asset_id, valid_from DESC) last
               ON last.asset_id = a.id
        """
    )
    op.execute(
        """
        UPDATE asset_responsibility r
        SET recorded_at = coalesce(p.recorded_at, f.recorded_at), actor = coalesce(p.actor, f.actor),
            reason = CASE WHEN p.has_previous THEN p.reason ELSE f.reason END
        FROM (SELECT id, asset_id, lag(recorded_at) OVER w AS recorded_at, lag(actor) OVER w AS actor,
                     lag(reason) OVER w AS reason, lag(id) OVER w IS NOT NULL AS has_previous
              FROM asset_responsibility WHERE valid_to IS NOT NULL
              WINDOW w AS (PARTITION BY asset_id ORDER BY valid_from)) p
        JOIN first_versions f ON f.asset_id = p.asset_id
        WHERE p.id = r.id
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX asset_responsibility_open ON asset_responsibility (asset_id) "
        "WHERE valid_to IS NULL"
    )
    op.execute(
        "ALTER TABLE assets DROP COLUMN changed_by, DROP COLUMN change_reason, DROP COLUMN change_action, "
        "DROP COLUMN responsible_since, ALTER COLUMN batch_id DROP DEFAULT"
    )
    op.execute("DROP FUNCTION smartcode_metric_envelope(geometry)")
    op.execute("DROP FUNCTION smartcode_period_start(timestamptz, date)")
    # The trigger bodies as 0003 left them (that file is their source of truth).
    previous = ScriptDirectory.from_config(context.config).get_revision("0003_imports").module
    op.execute(_BEFORE_UPDATE_0001)
    op.execute(previous._AFTER_INSERT)
    op.execute(previous._AFTER_UPDATE)
    op.execute(
        "CREATE TRIGGER assets_before_update BEFORE UPDATE ON assets "
        "FOR EACH ROW EXECUTE FUNCTION assets_before_update()"
    )
    op.execute(
        "CREATE TRIGGER assets_after_insert AFTER INSERT ON assets REFERENCING NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION assets_after_insert()"
    )
    op.execute(
        "CREATE TRIGGER assets_after_update AFTER UPDATE ON assets "
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION assets_after_update()"
    )
