"""Shared fixtures: one throwaway PostGIS cluster per test session, a clean registry per test."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine, text

from common.settings import (
    ApiSettings,
    DatabaseSettings,
    EmbeddedSettings,
    LabelSettings,
    Settings,
    WebhookSettings,
)
from registry.db import Actor, make_engine, migrate
from registry.embedded import EmbeddedCluster

ADMIN_TOKEN = "test-admin-token-0123456789-abcdefgh"

# Property tests draw the same cases on every run, so a CI run goes red for a change and never for the
# luck of the draw (the schemathesis test already does so). SMARTCODE_FUZZ_RANDOM=1 draws new cases
# each run, for a longer hunt. Loaded here, before the test modules build their @settings on it.
hypothesis_settings.register_profile("smartcode-fixed", derandomize=True, database=None)
hypothesis_settings.register_profile("smartcode-random", derandomize=False)
hypothesis_settings.load_profile(
    "smartcode-random" if os.environ.get("SMARTCODE_FUZZ_RANDOM") == "1" else "smartcode-fixed"
)
# Reference data that migrations seed; every other table is emptied between tests.
_KEEP = {"alembic_version", "spatial_ref_sys", "component_classes", "complaint_categories"}


@pytest.fixture(scope="session")
def cluster() -> Iterator[EmbeddedCluster]:
    """A PostgreSQL + PostGIS cluster in a fresh /tmp directory, never the demo's data directory."""
    with throwaway_cluster("smartcode_test") as started:
        yield started


@contextmanager
def throwaway_cluster(db_name: str) -> Iterator[EmbeddedCluster]:
    """A started cluster in a fresh /tmp directory, removed afterwards (the session's, or a test's own)."""
    base = Path(tempfile.mkdtemp(prefix="smartcode-test-"))
    base.chmod(0o755)  # the unprivileged server account must reach it when tests run as root
    cluster = EmbeddedCluster(base / "pgdata", db_name=db_name, fast_unsafe=True)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(cluster: EmbeddedCluster, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings of the test deployment (Pingshan defaults, a fixed admin token, the test cluster)."""
    var = tmp_path_factory.mktemp("var")
    return Settings(
        database=DatabaseSettings(url=cluster.url()),
        api=ApiSettings(api_token=ADMIN_TOKEN),
        embedded=EmbeddedSettings(data_dir=var / "pgdata"),
        labels=LabelSettings(key_file=var / "label-keys"),
        # The app of the tests delivers no webhooks: tests/test_webhooks.py runs its own workers.
        webhooks=WebhookSettings(worker="off"),
    )


@pytest.fixture(scope="session")
def owner_url(cluster: EmbeddedCluster, settings: Settings) -> str:
    """The test database URL as the tables' owner, with the schema at head (migrations, clean-up)."""
    migrate(cluster.url(), settings=settings)
    return cluster.url()


@pytest.fixture(scope="session")
def migrated_url(cluster: EmbeddedCluster, owner_url: str) -> str:
    """The migrated test database as the service's role, which the app and the services use."""
    return cluster.app_url()


@pytest.fixture(scope="session")
def engine(migrated_url: str) -> Iterator[Engine]:
    """A session-wide engine on the migrated test database, as the service's role."""
    eng = make_engine(migrated_url, pool_size=5)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def owner_engine(owner_url: str) -> Iterator[Engine]:
    """An engine as the tables' owner: for emptying the registry between tests, never for the code tested."""
    eng = make_engine(owner_url, pool_size=2)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def _seeded_at(owner_engine: Engine) -> str:
    with owner_engine.connect() as conn:
        return str(conn.execute(text("SELECT max(created_at) FROM component_classes")).scalar())


@pytest.fixture
def db(engine: Engine, owner_engine: Engine, _seeded_at: str) -> Engine:
    """The engine, on a registry emptied of everything but the seeded class table."""
    with owner_engine.begin() as conn:
        tables = (
            conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars().all()
        )
        data_tables = [t for t in tables if t not in _KEEP]
        if data_tables:
            conn.execute(text(f"TRUNCATE {', '.join(data_tables)} RESTART IDENTITY CASCADE"))
        conn.execute(text("DELETE FROM component_classes WHERE created_at > :t"), {"t": _seeded_at})
    return engine


@pytest.fixture
def admin() -> Actor:
    """An administrator actor for service-level tests."""
    return Actor(name="test-admin", admin=True)


@pytest.fixture
def client(db: Engine, settings: Settings, migrated_url: str) -> Iterator[TestClient]:
    """An HTTP client on the real app and the real test database."""
    from api.app import create_app

    with TestClient(create_app(settings, url=migrated_url)) as test_client:
        yield test_client


@pytest.fixture
def auth() -> dict[str, str]:
    """Headers carrying the administrator token."""
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def pytest_configure(config: pytest.Config) -> None:
    """Keep the tests off any developer database configured in the environment."""
    os.environ.pop("SMARTCODE_DATABASE_URL", None)
