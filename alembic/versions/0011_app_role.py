"""The service's own database role: it appends to history and audit, and can never change or delete them.

Revision ID: 0011_app_role
Revises: 0008_batch_digest_when_read
Create Date: 2026-12-06

Migrations run as the owner of the tables; the API connects as ``smartcode_app``, which may read and
write the working tables but only read and append to the tables that are the registry's memory:
``asset_history``, ``asset_responsibility``, ``audit_log`` and ``resolution_log`` (the history
triggers run as the caller, so the role needs INSERT there; UPDATE, DELETE and TRUNCATE are refused).
It owns nothing, so it cannot alter a table, drop a trigger or disable one either.

The role is created (NOLOGIN) when the migrating user may create roles; the embedded cluster creates
it with LOGIN before migrating. On an external database where the migrating user may not, the
administrator creates it first (docs/database-roles.md); the grants follow whenever it exists.
Tables added by later migrations get the working-table grants by default (ALTER DEFAULT PRIVILEGES).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011_app_role"
down_revision: str | None = "0010_access_proposals"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "smartcode_app"
APPEND_ONLY = ("asset_history", "asset_responsibility", "audit_log", "resolution_log")
# Read by the service, written only by migrations (or owned by PostGIS).
READ_ONLY = ("alembic_version", "spatial_ref_sys")

_GRANTS = f"""
DO $grants$
DECLARE
  t record;
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = current_user AND (rolsuper OR rolcreaterole)) THEN
      CREATE ROLE {APP_ROLE} NOLOGIN;
    ELSE
      RAISE WARNING 'role {APP_ROLE} does not exist and % may not create it: create it and migrate again '
                    '(docs/database-roles.md)', current_user;
      RETURN;
    END IF;
  END IF;
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO {APP_ROLE}', current_database());
  GRANT USAGE ON SCHEMA public TO {APP_ROLE};
  FOR t IN
    SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
      AND c.relname <> ALL (ARRAY{list(READ_ONLY)})
      AND pg_has_role(current_user, c.relowner, 'USAGE')
  LOOP
    EXECUTE format('REVOKE ALL ON TABLE public.%I FROM {APP_ROLE}', t.relname);
    IF t.relname = ANY (ARRAY{list(APPEND_ONLY)}) THEN
      EXECUTE format('GRANT SELECT, INSERT ON TABLE public.%I TO {APP_ROLE}', t.relname);
    ELSE
      EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE public.%I TO {APP_ROLE}', t.relname);
    END IF;
  END LOOP;
  GRANT SELECT ON TABLE alembic_version TO {APP_ROLE};
  GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE};
  ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {APP_ROLE};
  ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {APP_ROLE};
END $grants$
"""

_REVOKES = f"""
DO $revokes$
BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
    ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM {APP_ROLE};
    ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM {APP_ROLE};
    REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {APP_ROLE};
    REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {APP_ROLE};
    REVOKE USAGE ON SCHEMA public FROM {APP_ROLE};
    EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM {APP_ROLE}', current_database());
  END IF;
END $revokes$
"""


def upgrade() -> None:
    op.execute(_GRANTS)


def downgrade() -> None:
    # The role itself stays: it is cluster-wide, and other databases of the cluster may use it.
    op.execute(_REVOKES)
