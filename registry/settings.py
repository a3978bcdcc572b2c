"""All configuration in one place, read from the environment (prefix ``SMARTCODE_``) or a ``.env`` file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# A rectangle around 深圳市坪山区 (county 440310) in WGS84 lon/lat; the district spans roughly
# 114.28-114.45 E and 22.63-22.78 N, so this leaves a little room around the boundary.
DEFAULT_SERVICE_AREA_WKT = "POLYGON((114.25 22.60, 114.50 22.60, 114.50 22.82, 114.25 22.82, 114.25 22.60))"


class Settings(BaseSettings):
    """Deployment settings; every field can be set as ``SMARTCODE_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="SMARTCODE_", env_file=".env", extra="ignore")

    # --- database -------------------------------------------------------------------------------
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of an external PostGIS; when unset the embedded cluster is used.",
    )
    data_dir: Path = Field(
        default=PROJECT_ROOT / "var" / "pgdata",
        description="Data directory of the embedded PostgreSQL cluster.",
    )
    db_name: str = "smartcode"
    server_user: str = Field(
        default="smartcode",
        description="Unprivileged OS account that runs the embedded server when invoked as root.",
    )
    pool_size: int = 10

    # --- deployment area --------------------------------------------------------------------------
    county_code: str = Field(default="440310", description="GB/T 2260 county code of this deployment.")
    service_area_wkt: str = Field(
        default=DEFAULT_SERVICE_AREA_WKT,
        description="Service area polygon in WGS84 lon/lat WKT; points outside it (plus margin) are refused.",
    )
    service_area_margin_m: float = 2000.0
    metric_srid: int = Field(
        default=4547,
        description="Projected CRS (metres) used for distances; CGCS2000 3-degree GK CM 114E fits Shenzhen.",
    )

    # --- web service ----------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000
    api_token: str | None = Field(
        default=None,
        description="Bearer token for writes; when unset a random one is kept in <data_dir>/../api-token.",
    )

    timezone: str = Field(
        default="Asia/Shanghai",
        description="Local time zone: complaint times given without a zone are read in it, and dates "
        "such as installed_on are days in it.",
    )

    # --- ownership resolution -------------------------------------------------------------------------
    resolve_point_tolerance_m: float = Field(
        default=30.0,
        description="A point asset qualifies as 'the asset complained about' within this distance.",
    )
    resolve_line_tolerance_m: float = Field(
        default=10.0, description="A line asset (cable, pipe, railing) qualifies within this narrower band."
    )
    resolve_polygon_tolerance_m: float = Field(
        default=15.0, description="A polygon asset qualifies inside it (0 m) or within this distance of it."
    )
    resolve_ambiguity_m: float = Field(
        default=3.0,
        description="Assets of other owners at most this many metres farther than the nearest make the "
        "answer 'ambiguous' ...",
    )
    resolve_ambiguity_ratio: float = Field(
        default=1.25,
        description="... or at most this many times as far (whichever allows more): nearly equally close.",
    )
    resolve_candidates: int = Field(default=8, description="Nearest assets examined and listed per query.")
    resolution_log_mode: Literal["batch", "sync"] = Field(
        default="batch",
        description="'batch': the API queues log rows and writes them in one INSERT every few ms (rows "
        "queued at a crash are lost); 'sync': each answer is written before it is sent.",
    )
    resolution_log_flush_ms: float = 50.0
    resolution_log_batch_rows: int = 1000
    resolve_pool_size: int = Field(
        default=4,
        description="Connections of the async pool behind /resolve; beyond twice the cores they only add "
        "context switches (measured on 2 cores: 4 beat 8).",
    )
    import_direct_min_bytes: int = Field(
        default=8_000_000,
        description="An inventory file at least this big, imported into an empty registry, is written "
        "straight into assets while it is read, with the indexes built at the end (-1: never).",
    )
    import_lock_timeout_ms: int = Field(
        default=2000,
        description="How long such an import waits for the exclusive lock on assets before taking "
        "the usual path (lookups wait for the rest of the import once it has it).",
    )
    import_maintenance_work_mem_mb: int = Field(
        default=1024, description="Memory for building the indexes of assets after a direct load."
    )
    token_cache_seconds: float = Field(
        default=30.0, description="How long /resolve trusts a checked token (a revocation takes this long)."
    )

    @field_validator("county_code")
    @classmethod
    def _six_digits(cls, value: str) -> str:
        if len(value) != 6 or not value.isdigit():
            raise ValueError("county_code must be 6 digits (GB/T 2260), e.g. 440310")
        return value

    @property
    def var_dir(self) -> Path:
        """Folder beside the data directory for runtime files (token, uploads, logs)."""
        return self.data_dir.parent


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
