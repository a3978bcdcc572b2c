"""Migrations upgrade an empty database to head and downgrade it back cleanly."""

from __future__ import annotations

import psycopg
from sqlalchemy import create_engine, text

from common.settings import Settings
from registry.db import current_revision, downgrade, migrate
from registry.embedded import EmbeddedCluster


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = (
            conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars().all()
        )
    engine.dispose()
    return set(rows) - {"spatial_ref_sys"}


def test_upgrade_from_empty_and_downgrade_cleanly(cluster: EmbeddedCluster, settings: Settings) -> None:
    with psycopg.connect(cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS migration_check")
        conn.execute("CREATE DATABASE migration_check")
    url = cluster.url().replace("/smartcode_test?", "/migration_check?")
    assert current_revision(url) is None
    migrate(url, settings=settings)
    assert {"assets", "units", "component_classes", "asset_history", "asset_responsibility"} <= _tables(url)
    assert current_revision(url) is not None
    downgrade(url, "base", settings=settings)
    assert _tables(url) <= {"alembic_version"}
    migrate(url, settings=settings)  # and up again, from a downgraded database
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM component_classes")).scalar() >= 84
    engine.dispose()
