"""All configuration in one place, grouped per concern, read from ``SMARTCODE_*`` variables or ``.env``.

Each group is its own settings class with its own prefix under ``SMARTCODE_`` (``SMARTCODE_RESOLVE_*``,
``SMARTCODE_IMPORT_*``, ...); ``Settings`` bundles them. Code receives the group it needs
(``settings.resolve``, ``settings.area``), never reads the environment itself.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.errors import ConfigurationError

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# A rectangle around 深圳市坪山区 (county 440310) in WGS84 lon/lat; the district spans roughly
# 114.28-114.45 E and 22.63-22.78 N, so this leaves a little room around the boundary.
DEFAULT_SERVICE_AREA_WKT = "POLYGON((114.25 22.60, 114.50 22.60, 114.50 22.82, 114.25 22.82, 114.25 22.60))"

# The schemes people write for PostgreSQL; all of them are served by psycopg 3 here.
_POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg2://", "postgresql+psycopg://")


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=prefix, env_file=".env", extra="ignore", populate_by_name=True, frozen=True
    )


def sqlalchemy_url(url: str) -> str:
    """``url`` with the driver SQLAlchemy must use (psycopg 3), whichever PostgreSQL scheme it names.

    libpq's several hosts (``postgresql://u@h1:5432,h2:5432/db``) become SQLAlchemy's spelling of
    the same (``?host=h1:5432&host=h2:5432``), which it hands to libpq as ``host=h1,h2 port=...``.
    """
    for scheme in _POSTGRES_SCHEMES:
        if url.startswith(scheme):
            return _hosts_as_query("postgresql+psycopg://" + url[len(scheme) :])
    return url


def _hosts_as_query(url: str) -> str:
    scheme, _, rest = url.partition("://")
    netloc, _, tail = rest.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    if "," not in hostlist:
        return url
    path, _, query = tail.partition("?")
    hosts = "&".join(f"host={host}" for host in hostlist.split(",") if host)
    query = f"{hosts}&{query}" if query else hosts
    return f"{scheme}://{userinfo}{at}/{path}?{query}"


class DatabaseSettings(BaseSettings):
    """Where the registry lives: an external PostGIS, or the embedded cluster when ``url`` is unset."""

    model_config = _config("SMARTCODE_DATABASE_")

    url: str | None = Field(
        default=None,
        description="URL of an external PostGIS (postgresql://user:pw@host/db); unset: the embedded cluster.",
    )
    read_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "SMARTCODE_DATABASE_READ_URL", "SMARTCODE_READ_DATABASE_URL", "read_url"
        ),
        description="URL of a read replica that lookups may use; unset: lookups read the primary.",
    )
    pool_size: int = Field(default=10, ge=1, description="Connections of the synchronous pool.")
    connect_timeout_s: int = Field(
        default=2, ge=1, description="A database that does not answer within this time is reported down."
    )

    max_replica_lag_s: float = Field(
        default=5.0,
        gt=0,
        description="Lookups skip a replica that has not replayed the primary's last this-many seconds "
        "of changes (they read the primary until it catches up).",
    )
    replica_check_s: float = Field(
        default=0.5,
        gt=0,
        le=1.0,
        description="How often the API measures the replica (reachable? lag?); at most 1 s so reads "
        "leave a lost replica and come back to a returned one within 2 s.",
    )
    read_your_writes_s: float = Field(
        default=30.0,
        ge=0,
        description="For this long after a write, the writer's reads go to a replica only once it has "
        "replayed the write (the smartcode_lsn cookie / X-Smartcode-Lsn header); 0 turns it off.",
    )

    @field_validator("url", "read_url")
    @classmethod
    def _driver(cls, value: str | None) -> str | None:
        return sqlalchemy_url(value) if value else value


class EmbeddedSettings(BaseSettings):
    """The PostgreSQL cluster smartcode manages itself (used when no database URL is set)."""

    model_config = _config("SMARTCODE_")

    data_dir: Path = Field(
        default=PROJECT_ROOT / "var" / "pgdata", description="Data directory of the embedded cluster."
    )
    db_name: str = "smartcode"
    server_user: str = Field(
        default="smartcode",
        description="Unprivileged OS account that runs the embedded server when invoked as root.",
    )
    wal_archive: bool = Field(
        default=True,
        description="Archive every WAL segment (gzipped) beside the data directory in backups/wal, so "
        "`smartcode db restore --to TIME` can bring the registry back to any moment after a base backup.",
    )
    archive_timeout_s: int = Field(
        default=300,
        ge=0,
        description="On a quiet server a WAL segment is archived after at most this long (0: only when "
        "full): the most a lost disk can cost, beyond the last archived segment.",
    )
    backup_dir: Path | None = Field(
        default=None,
        description="Base backups and the WAL archive (default: `backups` beside the data directory). Put "
        "it on another disk, or copy it off the machine: a backup on the same disk does not survive it.",
    )
    backups_keep: int = Field(
        default=7, ge=1, description="Base backups kept by `smartcode db backup`; older ones and their WAL go"
    )

    @property
    def var_dir(self) -> Path:
        """Folder beside the data directory for runtime files (token, uploads, logs)."""
        return self.data_dir.parent


class AreaSettings(BaseSettings):
    """The deployment's county, service area, metric projection and local time zone."""

    model_config = _config("SMARTCODE_")

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
    timezone: str = Field(
        default="Asia/Shanghai",
        description="Local time zone: complaint times given without a zone are read in it, and dates "
        "such as installed_on are days in it.",
    )
    lang: Literal["zh", "en"] = Field(
        default="zh",
        description="Language of what people read: the resolver's explanation lines and the CLI "
        "(zh 中文, en English; `smartcode --lang` overrides it for one command).",
    )

    @field_validator("lang", mode="before")
    @classmethod
    def _short_lang(cls, value: object) -> object:
        # zh-CN, zh_CN.UTF-8, en-US: the language part is what counts.
        if isinstance(value, str):
            return value.strip().lower().replace("_", "-").split("-")[0].split(".")[0]
        return value

    @field_validator("county_code")
    @classmethod
    def _six_digits(cls, value: str) -> str:
        if len(value) != 6 or not value.isdigit():
            raise ValueError("county_code must be 6 digits (GB/T 2260), e.g. 440310")
        return value


class ApiSettings(BaseSettings):
    """The web service: where it listens, the administrator token, limits on what callers send."""

    model_config = _config("SMARTCODE_")

    host: str = "127.0.0.1"
    port: int = 8000
    api_token: str | None = Field(
        default=None,
        description="Administrator bearer token (at least 24 characters); unset: a random one is kept in "
        "<data_dir>/../api-token.",
    )
    token_cache_seconds: float = Field(
        default=30.0, description="How long /resolve trusts a checked token (a revocation takes this long)."
    )
    max_body_kb: int = Field(
        default=4096,
        ge=16,
        description="Largest request body of the JSON endpoints, in KiB (uploads have their own caps under "
        "SMARTCODE_IMPORT_MAX_*_MB).",
    )
    anonymous_rate_per_minute: int = Field(
        default=60,
        ge=0,
        description="Anonymous lookups (GET /assets/{code}, GET /resolve?code=) per client address and "
        "minute, with a burst of as many; beyond it 429 with Retry-After. 0: no limit.",
    )

    @field_validator("api_token")
    @classmethod
    def _strong(cls, value: str | None) -> str | None:
        if value is not None and (len(value) < 24 or len(set(value)) < 8 or not value.isascii()):
            raise ValueError(
                "too weak: use at least 24 ASCII characters of varied kinds, "
                "e.g. the output of `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return value


class ResolveSettings(BaseSettings):
    """Ownership resolution: tolerances, ambiguity, and how the resolution log is written."""

    model_config = _config("SMARTCODE_RESOLVE_")

    point_tolerance_m: float = Field(
        default=30.0,
        description="A point asset qualifies as 'the asset complained about' within this distance.",
    )
    line_tolerance_m: float = Field(
        default=10.0, description="A line asset (cable, pipe, railing) qualifies within this narrower band."
    )
    polygon_tolerance_m: float = Field(
        default=15.0, description="A polygon asset qualifies inside it (0 m) or within this distance of it."
    )
    ambiguity_m: float = Field(
        default=3.0,
        description="Assets of other owners at most this many metres farther than the nearest make the "
        "answer 'ambiguous' ...",
    )
    ambiguity_ratio: float = Field(
        default=1.25,
        description="... or at most this many times as far (whichever allows more): nearly equally close.",
    )
    candidates: int = Field(default=8, description="Nearest assets examined and listed per query.")
    log_mode: Literal["batch", "sync"] = Field(
        default="batch",
        description="'batch': the API queues log rows and writes them in one INSERT every few ms (rows "
        "queued at a crash are lost); 'sync': each answer is written before it is sent.",
    )
    log_flush_ms: float = 50.0
    log_batch_rows: int = 1000
    log_keep_months: int = Field(
        default=24,
        ge=0,
        description="Months of the resolution log kept; older months are dropped whole by "
        "`smartcode db log --drop-expired` (and at `smartcode serve` start). 0 keeps everything.",
    )
    log_months_ahead: int = Field(
        default=2, ge=0, le=24, description="Monthly partitions of the resolution log created in advance."
    )
    pool_size: int = Field(
        default=4,
        description="Connections of the async pool behind /resolve; beyond twice the cores they only add "
        "context switches (measured on 2 cores: 4 beat 8).",
    )


class ImportSettings(BaseSettings):
    """Inventory imports: uploads and their limits, the job worker, the direct load into an empty registry."""

    model_config = _config("SMARTCODE_IMPORT_")

    direct_min_bytes: int = Field(
        default=8_000_000,
        description="An inventory file at least this big, imported into an empty registry, is written "
        "straight into assets while it is read, with the indexes built at the end (-1: never).",
    )
    lock_timeout_ms: int = Field(
        default=2000,
        description="How long such an import waits for the exclusive lock on assets before taking "
        "the usual path.",
    )
    maintenance_work_mem_mb: int = Field(
        default=1024, description="Memory for building the indexes of assets after a direct load."
    )
    max_upload_mb: int = Field(
        default=200, ge=1, description="Largest inventory upload (POST /imports), request body in MiB."
    )
    max_zone_upload_mb: int = Field(
        default=50, ge=1, description="Largest zone file upload (POST /zones/import), request body in MiB."
    )
    max_rules_upload_mb: int = Field(
        default=5, ge=1, description="Largest rules CSV upload (POST /rules/import), request body in MiB."
    )
    upload_slots: int = Field(
        default=4,
        ge=1,
        description="Uploads received at once; one more is answered 503 with Retry-After (each is written "
        "to disk as it arrives, so this bounds disk and connections, not memory).",
    )
    worker_poll_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often the import worker looks for jobs queued by another server on the same "
        "database (jobs queued by its own server start at once).",
    )


class ScanSettings(BaseSettings):
    """The scan page ``/c/{code}`` and its anonymous report form (扫码报事)."""

    model_config = _config("SMARTCODE_SCAN_")

    form_key: str | None = Field(
        default=None,
        description="Secret that signs the report form's token; unset: derived from the current label "
        "signing key (so every process that shares the key file accepts the others' forms).",
    )
    form_max_age_s: int = Field(
        default=7200, ge=60, description="A report form older than this is refused (reload the page)."
    )
    report_limit: int = Field(
        default=10, ge=1, description="Anonymous reports accepted per client address within the window ..."
    )
    report_window_s: float = Field(default=600.0, gt=0, description="... of this many seconds.")
    revocation_check_s: float = Field(
        default=2.0,
        ge=0,
        description="The scan page re-reads revoked labels at most this often (a revocation shows within "
        "this time); 0: look each scan up in the database.",
    )
    far_m: float = Field(
        default=50.0,
        gt=0,
        description="A phone farther than this from the registered position gets a warning (label moved "
        "or record wrong).",
    )


class LabelSettings(BaseSettings):
    """QR labels: the public address a label points to and the keys that sign it."""

    model_config = _config("SMARTCODE_LABELS_")

    public_base_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Address of this service as phones reach it; labels encode {this}/c/{code}?s=... "
        "Up to 30 characters keep the QR at version 5 (error correction Q); see docs/labels.md.",
    )
    key_file: Path = Field(
        default=PROJECT_ROOT / "var" / "label-keys",
        description="Private file of the label signing keys (created 0600 with one key on first use).",
    )
    current_key_id: str | None = Field(
        default=None, description="Id of the key that signs new labels; unset: the highest id in the file."
    )

    @field_validator("public_base_url")
    @classmethod
    def _plain_base(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")) or any(c in value for c in "?#") or " " in value:
            raise ValueError(
                "must be an http:// or https:// address without query, e.g. https://sc.example.cn"
            )
        return value

    @field_validator("current_key_id")
    @classmethod
    def _key_id(cls, value: str | None) -> str | None:
        if value is not None and not (value.isdigit() and 1 <= int(value) <= 9999 and value[0] != "0"):
            raise ValueError("must be a key id from the key file, a number 1-9999")
        return value


class TileSettings(BaseSettings):
    """Vector tiles (GET /tiles/{z}/{x}/{y}.mvt): when assets are aggregated, how long a tile is fresh."""

    model_config = _config("SMARTCODE_TILES_")

    feature_budget: int = Field(
        default=10_000,
        ge=1,
        description="A tile holding more assets than this carries aggregate cells (counts per class and "
        "owner) instead of individual assets; nothing is dropped either way.",
    )
    cell_px: Literal[32, 64, 128, 256] = Field(
        default=64,
        description="Side of an aggregate cell in pixels of a 512-pixel tile (a power of two, so that a "
        "cell is a tile of a deeper zoom).",
    )
    top_owners: int = Field(default=3, ge=1, le=20, description="Owners named per aggregate cell.")
    max_age_s: int = Field(
        default=5,
        ge=0,
        description="Cache-Control max-age of a tile; after it the client revalidates with its ETag (304).",
    )
    max_zoom: int = Field(default=22, ge=16, le=24, description="Deepest zoom served.")
    compact_every_s: int = Field(
        default=3600,
        ge=0,
        description="How often the server's background worker folds old rows of tile_changes (the log "
        "tile ETags are taken from) into one per region, so it does not grow without bound; 0: never.",
    )
    compact_after_s: int = Field(
        default=86_400,
        ge=0,
        description="Rows of tile_changes younger than this are kept as written; older ones are folded.",
    )
    complaint_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="The complaints layer shows the complaints received in this many last days.",
    )


class MapSettings(BaseSettings):
    """The web map /map: its basemap (none by default: it must work on an intranet) and staff logins."""

    model_config = _config("SMARTCODE_MAP_")

    basemap_url: str | None = Field(
        default=None,
        description="XYZ template of a raster basemap, e.g. http://tiles.intranet/{z}/{x}/{y}.png (256-pixel "
        "tiles); unset: a plain background under the registry's zones and assets.",
    )
    basemap_style_url: str | None = Field(
        default=None,
        description="URL of a MapLibre style of a vector basemap (its glyphs and sprites must be served "
        "on the intranet too); used instead of basemap_url when set.",
    )
    basemap_crs: Literal["wgs84", "gcj02"] = Field(
        default="wgs84",
        description="Coordinate system of the raster basemap: wgs84 (天地图, CGCS2000 ≈ WGS84) or gcj02 "
        "(AMap, Tencent); a gcj02 basemap is shifted in the browser so the overlays line up.",
    )
    attribution: str = Field(default="", description="Attribution shown for the basemap.")
    session_hours: float = Field(
        default=12.0, gt=0, le=24 * 7, description="How long a staff login on /map lasts."
    )


def _date_set(value: str) -> frozenset[dt.date]:
    return frozenset(dt.date.fromisoformat(p.strip()) for p in value.split(",") if p.strip())


class DisputeSettings(BaseSettings):
    """Ownership disputes (异议): how long a review may take, what evidence a unit may attach."""

    model_config = _config("SMARTCODE_DISPUTES_")

    review_working_days: int = Field(
        default=3,
        ge=1,
        le=60,
        description="Working days a dispute may wait for its decision, counted from the day after it "
        "was opened in the deployment's time zone (weekends and the holidays below do not count).",
    )
    holidays: str = Field(
        default="",
        description="Public holidays that are not working days, as comma-separated dates "
        "(2027-01-01,2027-02-16); empty: only weekends are skipped.",
    )
    workdays: str = Field(
        default="",
        description="Weekend days that are working days (调休上班日), as comma-separated dates "
        "(2027-02-20); empty: every Saturday and Sunday is a day off.",
    )
    evidence_max_mib: int = Field(
        default=10, ge=1, le=100, description="Largest evidence file (photo or PDF), in MiB."
    )
    evidence_max_files: int = Field(
        default=5, ge=1, le=20, description="Evidence files per dispute, those added later included."
    )

    @field_validator("holidays", "workdays")
    @classmethod
    def _dates(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip():
                try:
                    dt.date.fromisoformat(part.strip())
                except ValueError:
                    raise ValueError(f"{part.strip()!r} is not a date like 2027-01-01") from None
        return value

    @property
    def holiday_dates(self) -> frozenset[dt.date]:
        """The holidays as dates."""
        return _date_set(self.holidays)

    @property
    def workday_dates(self) -> frozenset[dt.date]:
        """The weekend days worked (调休) as dates."""
        return _date_set(self.workdays)


class WebhookSettings(BaseSettings):
    """Signed webhooks (docs/webhooks.md): the delivery worker, its timeouts and its retry schedule."""

    model_config = _config("SMARTCODE_WEBHOOKS_")

    worker: Literal["process", "thread", "off"] = Field(
        default="process",
        description="Where `smartcode serve` delivers: process: a delivery process of its own, started, "
        "restarted and stopped with the server (the API keeps its interpreter to itself); thread: a "
        "thread of the API process; off: not at all (run `smartcode worker`, or events wait in the outbox).",
    )
    enabled: bool | None = Field(
        default=None,
        description="Before `worker` existed: false meant what `worker=off` means now, and still does "
        "when `worker` is not set (a deployment delivering from `smartcode worker` elsewhere stays so).",
    )
    timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="A receiver that has not answered within this time failed the attempt.",
    )
    schedule_s: list[float] = Field(
        default=[5, 300, 1800, 7200, 18000, 36000, 36000],
        min_length=1,
        description="Seconds before each retry after a failed attempt (JSON list; about 27 hours in all); "
        "after the last one fails the delivery is dead (redeliver it by hand).",
    )
    jitter: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="Each retry waits its scheduled time times a random factor in [1 - jitter, 1 + jitter], "
        "so that retries after an outage do not all arrive at once.",
    )
    lease_s: float = Field(
        default=60.0,
        gt=0,
        description="A worker's claim on a delivery; a delivery whose worker died is sent again after this "
        "(longer than timeout_s).",
    )
    poll_s: float = Field(
        default=5.0,
        gt=0,
        description="How often the worker looks for work without being woken (LISTEN smartcode_events wakes "
        "it at each commit).",
    )
    concurrency: int = Field(default=8, ge=1, le=256, description="Requests in flight at once per worker.")
    allow_hosts: list[str] = Field(
        default=[],
        description="Host names (or *.suffix) subscription URLs may name (JSON list); empty: any host, "
        'including internal ones: see docs/webhooks.md, "Security".',
    )
    keep_days: int = Field(
        default=30,
        ge=0,
        description="Outbox events and their delivery log are deleted after this many days, unless a "
        'delivery of the event still waits (docs/webhooks.md, "Retention"); 0 keeps everything.',
    )

    @model_validator(mode="before")
    @classmethod
    def _old_switch(cls, data: Any) -> Any:
        # The switch this setting replaced: an upgraded deployment that had delivery off keeps it off.
        old = str(data.get("enabled", "")).strip().lower() if isinstance(data, dict) else ""
        if old in ("false", "0", "no", "off") and "worker" not in data:
            return {**data, "worker": "off"}
        return data

    @model_validator(mode="after")
    def _lease_outlives_request(self) -> WebhookSettings:
        if self.lease_s <= self.timeout_s:
            raise ValueError(
                "lease_s must be longer than timeout_s (a request in flight would be sent twice)"
            )
        return self


# The largest 热点 radius a deployment may set; the warning lookup uses it as a box bound.
HOTSPOT_RADIUS_MAX_M = 1000.0


class HotspotSettings(BaseSettings):
    """Hot-spot warnings (高频 / 热点预警): how many complaints, in how many days, within what distance."""

    model_config = _config("SMARTCODE_HOTSPOTS_")

    min_complaints: int = Field(
        default=3,
        ge=2,
        le=1000,
        description="N: a warning is raised when an asset (高频), or a place for one category (热点), "
        "gathers this many complaints within the window.",
    )
    window_days: int = Field(
        default=7,
        ge=1,
        le=365,
        description="D: the window in days; a warning without a complaint for as long expires.",
    )
    radius_m: float = Field(
        default=50.0,
        gt=0,
        le=HOTSPOT_RADIUS_MAX_M,
        description="R: complaints of the same category within this many metres of each other count "
        "towards one 热点 (measured in the metric SRID).",
    )


class Settings(BaseModel):
    """Every setting of a deployment, one group per concern."""

    model_config = {"frozen": True}

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    embedded: EmbeddedSettings = Field(default_factory=EmbeddedSettings)
    area: AreaSettings = Field(default_factory=AreaSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    resolve: ResolveSettings = Field(default_factory=ResolveSettings)
    imports: ImportSettings = Field(default_factory=ImportSettings)
    scan: ScanSettings = Field(default_factory=ScanSettings)
    labels: LabelSettings = Field(default_factory=LabelSettings)
    tiles: TileSettings = Field(default_factory=TileSettings)
    map: MapSettings = Field(default_factory=MapSettings)
    disputes: DisputeSettings = Field(default_factory=DisputeSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    hotspots: HotspotSettings = Field(default_factory=HotspotSettings)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once; ``ConfigurationError`` names every unusable variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = [
            f"SMARTCODE_{str(e['loc'][-1]).upper()}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
        raise ConfigurationError("invalid settings: " + "; ".join(problems), problems=problems) from None
