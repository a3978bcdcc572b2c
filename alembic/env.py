"""Alembic environment: runs migrations against the configured or embedded database."""

from __future__ import annotations

from geoalchemy2 import alembic_helpers
from sqlalchemy import create_engine, pool

from alembic import context
from registry.models import Base

config = context.config


def _database_url() -> str:
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    if url:
        return str(url)
    # Imported lazily so `alembic --help` works without a database.
    from common.settings import get_settings
    from registry.embedded import ensure_database_url

    return ensure_database_url(get_settings())


def run_migrations_online() -> None:
    """Run every pending migration in one transaction per revision."""
    connectable = config.attributes.get("connection")
    if connectable is None:
        engine = create_engine(_database_url(), poolclass=pool.NullPool)
        with engine.connect() as connection:
            _run(connection)
        engine.dispose()
    else:
        _run(connectable)


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=Base.metadata,
        include_object=alembic_helpers.include_object,
        process_revision_directives=alembic_helpers.writer,
        render_item=alembic_helpers.render_item,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: the triggers depend on the server")
run_migrations_online()
