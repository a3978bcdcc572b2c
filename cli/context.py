"""What commands share: the settings, the database URL (embedded cluster started on demand), sessions."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from common.settings import Settings, get_settings
from registry.db import Actor, current_revision, database_url, make_engine, migrate, transaction

if TYPE_CHECKING:  # the cluster module is imported only by the commands that use it
    from registry.embedded import EmbeddedCluster


def settings() -> Settings:
    """The process settings."""
    return get_settings()


@lru_cache(maxsize=1)
def ready_url() -> str:
    """The database URL, with the schema migrated to the newest revision."""
    url = database_url(settings())
    migrate(url, settings=settings())
    return url


@lru_cache(maxsize=1)
def engine() -> Engine:
    """An engine on the migrated database."""
    return make_engine(ready_url(), pool_size=4)


@contextmanager
def session() -> Iterator[Session]:
    """A committed-or-rolled-back transaction on the migrated database."""
    with transaction(engine()) as s:
        yield s


def cli_actor() -> Actor:
    """The person at the terminal: an administrator, recorded by OS user name."""
    return Actor(name=f"cli:{getpass.getuser()}", admin=True)


def revision() -> str | None:
    """The schema revision of the configured database, without migrating it."""
    return current_revision(database_url(settings()))


def embedded_cluster() -> EmbeddedCluster:
    """The embedded cluster as the settings describe it (nothing starts here)."""
    from registry.embedded import EmbeddedCluster

    return EmbeddedCluster.from_settings(settings())
