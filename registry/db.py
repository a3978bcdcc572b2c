"""Database access: the engine, sessions, the transaction's change context and migrations."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from alembic.config import Config
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from common.errors import DatabaseUnavailable
from common.settings import PROJECT_ROOT, Settings, get_settings

# Re-exported: the actor lives with the access policy.
from registry.access import Actor as Actor


def database_url(settings: Settings) -> str:
    """The owner's URL (migrations, the CLI): ``SMARTCODE_DATABASE_URL`` or the embedded cluster (started
    on demand)."""
    if settings.database.url:
        return settings.database.url
    from registry.embedded import ensure_database_url

    return ensure_database_url(settings)


def service_url(settings: Settings) -> str:
    """The URL the API connects with: ``SMARTCODE_DATABASE_URL``, or the embedded cluster's app role.

    Unlike :func:`database_url` (the owner, who migrates), the embedded cluster's app role may append
    to history and the audit log but never change or delete them.
    """
    if settings.database.url:
        return settings.database.url
    from registry.embedded import ensure_service_url

    return ensure_service_url(settings)


def make_engine(
    url: str, *, pool_size: int = 10, connect_timeout_s: int = 2, options: str | None = None
) -> Engine:
    """A SQLAlchemy engine for ``url`` with a connection pool sized for the API (``options``: libpq's)."""
    connect_args: dict[str, object] = {"connect_timeout": connect_timeout_s}
    if options:
        connect_args["options"] = options
    # pool_pre_ping replaces connections that died with the server, so the engine serves again by
    # itself once the database is back; connect_timeout keeps an unreachable host from holding a
    # request (or a pool slot) for libpq's default of forever.
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        connect_args=connect_args,
    )


@lru_cache(maxsize=4)
def _engine_for(url: str, pool_size: int) -> Engine:
    return make_engine(url, pool_size=pool_size)


def get_engine(settings: Settings | None = None) -> Engine:
    """The process-wide engine for the configured database."""
    settings = settings or get_settings()
    return _engine_for(database_url(settings), settings.database.pool_size)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session maker bound to ``engine``; objects stay usable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def transaction(engine: Engine, *, failure: str = "database error") -> Iterator[Session]:
    """One unit of work: commits when the block succeeds, rolls everything back when it raises.

    A lost or unusable connection becomes ``DatabaseUnavailable`` with ``failure`` in front of the
    driver's message (an import says that nothing was written).
    """
    session = session_factory(engine)()
    try:
        yield session
        session.commit()
    except OperationalError as exc:
        session.rollback()
        raise DatabaseUnavailable(f"{failure}: {exc.orig}") from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def set_change_context(
    session: Session,
    actor: Actor,
    reason: str | None = None,
    *,
    action: str | None = None,
    effective_at: dt.datetime | None = None,
    batch_id: int | None = None,
    dispute_id: int | None = None,
) -> None:
    """Tell the history triggers who changes what, why and on which upheld dispute, for this transaction."""
    # set_config(..., true) is transaction-local, so a pooled connection never leaks the context.
    session.execute(
        text(
            "SELECT set_config('smartcode.actor', :a, true), set_config('smartcode.reason', :r, true),"
            " set_config('smartcode.action', :c, true), set_config('smartcode.effective_at', :e, true),"
            " set_config('smartcode.batch_id', :b, true), set_config('smartcode.dispute_id', :d, true)"
        ),
        {
            "a": actor.name,
            "r": reason or "",
            "c": action or "",
            "e": effective_at.isoformat() if effective_at else "",
            "b": str(batch_id) if batch_id is not None else "",
            "d": str(dispute_id) if dispute_id is not None else "",
        },
    )


def alembic_config(url: str, settings: Settings | None = None) -> Config:
    """An Alembic config pointing at the project's migrations and ``url``."""

    settings = settings or get_settings()
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "alembic"))
    config.attributes["database_url"] = url
    config.attributes["metric_srid"] = settings.area.metric_srid
    return config


def migrate(url: str, revision: str = "head", settings: Settings | None = None) -> None:
    """Upgrade the database at ``url`` to ``revision`` (default: the newest)."""
    from alembic import command

    command.upgrade(alembic_config(url, settings), revision)


def downgrade(url: str, revision: str, settings: Settings | None = None) -> None:
    """Downgrade the database at ``url`` to ``revision`` (``base`` removes every table)."""
    from alembic import command

    command.downgrade(alembic_config(url, settings), revision)


def current_revision(url: str) -> str | None:
    """The migration revision the database is at, or None when it was never migrated."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            exists = connection.execute(text("SELECT to_regclass('alembic_version')")).scalar()
            if exists is None:
                return None
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()
