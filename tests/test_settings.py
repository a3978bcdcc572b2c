"""Settings: grouped per concern, read from SMARTCODE_* variables; a bad value is refused by its name."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import create_engine, text

from common.errors import ConfigurationError
from common.settings import ApiSettings, DatabaseSettings, Settings, get_settings, sqlalchemy_url


@pytest.mark.parametrize(
    "written",
    [
        "postgresql://u:p@db.example/registry",
        "postgres://u:p@db.example/registry",
        "postgresql+psycopg2://u:p@db.example/registry",
        "postgresql+psycopg://u:p@db.example/registry",
    ],
)
def test_every_usual_postgres_url_is_served_by_psycopg3(written: str) -> None:
    assert sqlalchemy_url(written) == "postgresql+psycopg://u:p@db.example/registry"


def test_a_plain_postgresql_url_connects(monkeypatch: pytest.MonkeyPatch, migrated_url: str) -> None:
    # What a deployer writes (libpq form) must reach the database, not fail on a missing psycopg2.
    plain = migrated_url.replace("postgresql+psycopg://", "postgresql://", 1)
    monkeypatch.setenv("SMARTCODE_DATABASE_URL", plain)
    url = DatabaseSettings().url
    assert url is not None
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


def test_groups_read_their_own_prefixed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMARTCODE_RESOLVE_POINT_TOLERANCE_M", "12.5")
    monkeypatch.setenv("SMARTCODE_IMPORT_DIRECT_MIN_BYTES", "-1")
    monkeypatch.setenv("SMARTCODE_COUNTY_CODE", "440307")
    monkeypatch.setenv("SMARTCODE_READ_DATABASE_URL", "postgres://r@replica/registry")
    s = Settings()
    assert s.resolve.point_tolerance_m == 12.5
    assert s.imports.direct_min_bytes == -1
    assert s.area.county_code == "440307"
    assert s.database.read_url == "postgresql+psycopg://r@replica/registry"


@pytest.mark.parametrize("weak", ["x", "password", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "令牌" * 20])
def test_a_weak_admin_token_is_refused(weak: str) -> None:
    with pytest.raises(ValueError, match="too weak"):
        ApiSettings(api_token=weak)


def test_a_bad_variable_is_named_in_one_readable_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMARTCODE_API_TOKEN", "short")
    monkeypatch.setenv("SMARTCODE_COUNTY_CODE", "44031")
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigurationError) as caught:
            get_settings()
    finally:
        get_settings.cache_clear()
    # Settings are read group by group: the first unusable group is reported with the variable's name.
    assert "SMARTCODE_" in caught.value.message
    assert "Traceback" not in caught.value.message


def test_a_read_url_may_name_several_hosts_as_libpq_allows(monkeypatch: pytest.MonkeyPatch) -> None:
    from registry.resolution import conninfo_from_url

    hosts = "postgresql://app:pw@replica1:5432,replica2:5433/registry?target_session_attrs=prefer-standby"
    monkeypatch.setenv("SMARTCODE_READ_DATABASE_URL", hosts)
    read_url = Settings().database.read_url
    assert read_url is not None
    conninfo = psycopg.conninfo.conninfo_to_dict(conninfo_from_url(read_url))
    assert conninfo["host"] == "replica1,replica2" and conninfo["port"] == "5432,5433"
    assert conninfo["target_session_attrs"] == "prefer-standby" and conninfo["dbname"] == "registry"
