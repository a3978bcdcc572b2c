"""One inventory file into the registry as one batch: read, map, validate, stage, merge, report.

The batch is ONE database transaction: units it creates, serials it allocates, assets it creates
or updates and their history all commit together or not at all, so a crash, a kill or a database
failure half-way leaves the registry as it was. The ``import_batches`` row is written in its own
small transactions around it (running -> committed / refused / failed) so that a failed batch is
still on record. A dry run does the same work and rolls it back, writing nothing at all.

Data flows as columns: reader chunks (:mod:`importers.formats`) -> mapped drafts
(:mod:`importers.mapping`) -> validated stage columns (:mod:`importers.validate`) -> COPY into a
temporary staging table -> set-based SQL (:mod:`importers.merge`). Memory is one chunk, whatever
the file size.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import psycopg
import shapely
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from common.errors import Conflict, DatabaseUnavailable, InvalidInput, NotFound
from common.settings import Settings
from gis.area import ServiceArea
from gis.crs import Crs, parse_crs
from gis.detect import guess_crs
from importers import merge
from importers.deferred_indexes import drop_indexes
from importers.direct_load import (
    NEEDS_OWNER_NOTE,
    DirectLoad,
    RestartWholeFile,
    copy_assets,
    copy_data,
    lock_if_empty,
    needs_owner,
    start_empty,
)
from importers.formats import DEFAULT_CHUNK_SIZE, open_source
from importers.headers import apply_mapping, match_headers
from importers.mapping import DraftChunk, has_value, map_chunk
from importers.profiles import Profile, default_profile, load_profile
from importers.source import RowProblem, SourceInfo
from importers.stage_writer import StageWriter
from importers.tabular import X_NAMES, Y_NAMES
from importers.validate import (
    ClassTable,
    UnitResolver,
    ValidationContext,
    Zone,
    validate_chunk,
)
from registry import events, tiles
from registry.db import Actor, set_change_context, transaction
from registry.messages import both
from registry.models import ImportBatch, Unit
from registry.names import fold

# Problems kept in a report; beyond this only their number (and counts per field) are kept, so a
# file where every one of a million rows is wrong still has a report of sensible size.
DEFAULT_PROBLEM_CAP = 10_000
# Codes named in one asset.imported event at most (the event says when there were more).
IMPORTED_CODES_CAP = 1000
_REFERENCE_POINTS = 20000
# Sidecar files that belong to a shapefile: they are part of "the file" for its fingerprint.
_SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")

Progress = Callable[[str, int, int | None], None]

log = logging.getLogger("smartcode.imports")
Fault = Callable[[str], None]


class ImportRefused(Conflict):
    """A strict import found rejected rows or warnings: nothing was written."""

    report: dict[str, Any] | None = None  # the import's report, set when it is raised
    status = "refused"


class ImportRejected(ImportRefused):
    """Every row of the file was rejected: the batch wrote nothing and is a failure, not a commit."""

    status = "rejected"


@dataclass
class ImportOptions:
    """How to read and load one file; every field is optional."""

    profile: str | None = None  # a built-in profile name or a profile file path
    mapping: str | None = None  # a profile TOML file (same as profile=path)
    zone: str | None = None  # restrict to a zone (rows outside are rejected) and record it
    crs: str | None = None  # the file's CRS, overriding what the profile or the file declares
    dry_run: bool = False
    strict: bool = False
    layer: str | None = None  # GeoPackage layer, shapefile in a zip, Excel sheet
    encoding: str | None = None  # DBF/CSV text encoding, overriding detection
    source_system: str | None = None  # scope of the profile's source ids (default: the profile name)
    class_: str | None = None  # the class of every row (a file of one class): code or name
    create_units: bool = False  # also create units that are near misses of registered ones (admins)
    chunk_size: int = DEFAULT_CHUNK_SIZE
    file_name: str | None = None  # the name to report (an upload is stored under another name)
    problem_cap: int = DEFAULT_PROBLEM_CAP

    def as_dict(self) -> dict[str, Any]:
        """The options as recorded on the batch."""
        return {
            "profile": self.profile,
            "mapping": self.mapping,
            "zone": self.zone,
            "crs": self.crs,
            "dry_run": self.dry_run,
            "strict": self.strict,
            "layer": self.layer,
            "encoding": self.encoding,
            "source_system": self.source_system,
            "class": self.class_,
            "create_units": self.create_units,
        }


@dataclass
class ImportReport:
    """What an import did, as written to ``--report`` and returned by the API."""

    file: str
    sha256: str | None  # known once the file has been read
    status: str  # committed | dry_run | refused | rejected | unchanged
    batch_id: int | None
    profile: str
    dry_run: bool
    strict: bool
    format: str | None = None
    encoding: str | None = None
    crs: dict[str, Any] = field(default_factory=dict)
    zone: str | None = None
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)
    problems_total: int = 0
    problems_by_field: dict[str, int] = field(default_factory=dict)
    units_created: list[str] = field(default_factory=list)
    codes_allocated: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # shown first: owners missing, units left out
    columns: dict[str, Any] = field(default_factory=dict)  # which column became which field
    units_held: dict[str, list[str]] = field(default_factory=dict)  # near-miss unit -> closest names
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form; counts under ``counts`` as well as at the top for convenience."""
        return {
            "batch_id": self.batch_id,
            "status": self.status,
            "warnings": self.warnings,
            "file": self.file,
            "sha256": self.sha256,
            "format": self.format,
            "encoding": self.encoding,
            "profile": self.profile,
            "dry_run": self.dry_run,
            "strict": self.strict,
            "zone": self.zone,
            "crs": self.crs,
            "columns": self.columns,
            "counts": self.counts(),
            "problems": self.problems,
            "problems_total": self.problems_total,
            "problems_shown": len(self.problems),
            "problems_by_field": self.problems_by_field,
            "units_created": self.units_created,
            "units_held": self.units_held,
            "codes_allocated": self.codes_allocated,
            "notes": self.notes,
            "seconds": round(self.seconds, 3),
        }

    def counts(self) -> dict[str, int]:
        """created / updated / unchanged / rejected, plus rows read."""
        return {
            "read": self.read,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
        }


class _Problems:
    """Row problems of the whole import, capped; counts per field are kept for all of them."""

    def __init__(self, file: str, cap: int) -> None:
        self.file = file
        self.cap = cap
        self.kept: list[dict[str, Any]] = []
        self.total = 0
        self.by_field: Counter[str] = Counter()

    def add(self, problems: list[RowProblem]) -> None:
        for p in problems:
            self.total += 1
            self.by_field[p.field or "(row)"] += 1
            if len(self.kept) < self.cap:
                entry: dict[str, Any] = {
                    "file": self.file,
                    "row": p.row,
                    "field": p.field,
                    "reason": p.reason,
                }
                if p.value is not None:
                    entry["value"] = p.value
                self.kept.append(entry)


# --------------------------------------------------------------------------------------------------


def _file_parts(path: Path) -> list[Path]:
    """The files an import reads (a shapefile: its .shp/.shx/.dbf/.prj/.cpg)."""
    if path.suffix.lower() == ".shp":
        return [p for ext in _SHAPEFILE_PARTS for p in _sidecars(path, ext)]
    return [path]


def file_size(path: Path) -> int:
    """Bytes of the file (a shapefile: of its parts together)."""
    return sum(part.stat().st_size for part in _file_parts(path))


def file_digest(path: Path) -> str:
    """sha256 of the file (a shapefile: of its parts, one after the other)."""
    digest = hashlib.sha256()
    for part in _file_parts(path):
        with part.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


class _Digest:
    """The file's sha256, computed on a thread when a core is free for it (hashing lets go of the GIL).

    It is only recorded, with the batch when it ends, so it need not hold up the start (a 400 MB
    file: 0.4 s). The planned path starts it at once: its reading leaves room on the second core (the
    staging COPY is light), and hashing after the reading made a million-row re-import slower
    (docs/benchmarks.md). The direct load starts it once the file has been read: its reading keeps
    both cores busy, and its spatial index builds only one.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._pool: ThreadPoolExecutor | None = None
        self._future: Future[str] | None = None

    def start(self) -> None:
        """Start hashing, if not started yet."""
        if self._future is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-sha256")
            self._future = self._pool.submit(file_digest, self._path)

    def result(self) -> str:
        """The digest (hashing now if it was not started); the thread is let go."""
        self.start()
        assert self._future is not None and self._pool is not None
        try:
            return self._future.result()
        finally:
            self._pool.shutdown()

    def close(self) -> None:
        """Let the thread go once it is done (an import that failed before asking for the digest)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def result_if_readable(self) -> str | None:
        """The digest, or None when the file cannot be read any more (a failed import still says why)."""
        try:
            return self.result()
        except OSError:
            return None


def _sidecars(path: Path, ext: str) -> list[Path]:
    for candidate in (path.with_suffix(ext), path.with_suffix(ext.upper())):
        if candidate.exists():
            return [candidate]
    return []


def resolve_profile(options: ImportOptions) -> Profile:
    """The mapping profile the options name; the built-in 数字城管 profile when none is named."""
    name = options.mapping or options.profile
    return load_profile(name) if name else default_profile()


def _field_names(columns: dict[str, Any], profile: Profile) -> dict[str, str]:
    """For each target, the source field that feeds it (for problem reports)."""
    by_key = {name.strip().lower(): name for name in columns}
    out: dict[str, str] = {}
    for target in ("code", "source_id", "class_code", "class_name", "owner", "maintainer", "supervisor"):
        for candidate in profile.fields.for_target(target):
            actual = by_key.get(candidate.strip().lower())
            if actual is not None:
                out[target] = actual
                break
    if "class_name" not in out and "class_code" in out:
        out["class_name"] = out["class_code"]
    return out


def _zone(session: Session, name: str, county: str) -> Zone:
    rows = session.execute(
        text(
            "SELECT id, name, level, ST_AsBinary(geom) FROM zones WHERE county_code = :c AND name = :n "
            "AND valid_to IS NULL ORDER BY level = 'pilot' DESC, level"
        ),
        {"c": county, "n": name},
    ).all()
    if not rows:
        raise NotFound(both("imp.zone.none", name=name, county=county), zone=name)
    if len(rows) > 1 and rows[0].level != "pilot":
        levels = ", ".join(r.level for r in rows)
        raise InvalidInput(both("imp.zone.ambiguous", name=name, levels=levels), zone=name)
    row = rows[0]
    geometry = shapely.from_wkb(bytes(row[3]))
    shapely.prepare(geometry)
    return Zone(row.id, row.name, row.level, geometry)


def _reference_points(
    session: Session, xs: np.ndarray, ys: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """Registered asset positions (WGS84) around the file's points, to tell GCJ-02 from WGS84.

    Taken from the file's box (either axis order, 3 km around) when its values are degrees: a
    sample of the whole registry would hold too few of the very assets a re-survey repeats.
    """
    box = _degree_box(xs, ys)
    where = "in_use" if box is None else "in_use AND geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)"
    rows = session.execute(
        text(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p FROM assets "
            f"WHERE {where} LIMIT :n) s"
        ),
        {"n": _REFERENCE_POINTS, **(box or {})},
    ).all()
    if not rows:
        return None
    arr = np.array(rows, dtype=np.float64)
    return arr[:, 0], arr[:, 1]


def _degree_box(xs: np.ndarray, ys: np.ndarray) -> dict[str, float] | None:
    """The lon/lat box of sampled degree coordinates (x/y in either order), 0.03° around; else None."""
    finite = np.isfinite(xs) & np.isfinite(ys)
    if not finite.any():
        return None
    x, y = xs[finite], ys[finite]
    if not (np.abs(x) <= 180).all() or not (np.abs(y) <= 180).all():
        return None
    if float(np.median(x)) < float(np.median(y)):
        x, y = y, x  # latitudes under "x": around Shenzhen longitudes are the larger numbers
    pad = 0.03
    return {
        "x0": float(np.percentile(x, 1)) - pad,
        "y0": float(np.percentile(y, 1)) - pad,
        "x1": float(np.percentile(x, 99)) + pad,
        "y1": float(np.percentile(y, 99)) + pad,
    }


def decide_crs(
    session: Session,
    info: SourceInfo,
    draft: DraftChunk,
    options: ImportOptions,
    profile: Profile,
    area: ServiceArea,
) -> tuple[Crs, bool, dict[str, Any]]:
    """The CRS to read the file in, whether x/y are swapped, and what the report says about it."""
    if options.crs:
        crs = parse_crs(options.crs)
        return crs, False, {"used": crs.name, "origin": "argument", "strength": "given"}
    if profile.crs:
        crs = parse_crs(profile.crs)
        note = both("imp.crs.profile", name=profile.name)
        return crs, False, {"used": crs.name, "origin": "profile", "strength": "given", "note": note}
    if info.declared_crs:
        try:
            crs = parse_crs(info.declared_crs)
        except InvalidInput as exc:
            raise InvalidInput(
                both("imp.crs.unknown", file=info.file, declared=info.declared_crs[:80]), file=info.file
            ) from exc
        declared = {
            "used": crs.name,
            "origin": "declared",
            "strength": "declared",
            "note": both("imp.crs.declared"),
        }
        return crs, False, declared
    xs, ys = _sample_coordinates(draft)
    guess = guess_crs(xs, ys, area, reference=_reference_points(session, xs, ys))
    return (
        guess.crs,
        guess.swapped,
        {
            "used": guess.crs.name,
            "origin": "detected",
            "strength": guess.strength,
            "evidence": guess.evidence,
            "swapped": guess.swapped,
            "note": both("imp.crs.detected", reason=guess.reason),
        },
    )


def _sample_coordinates(draft: DraftChunk) -> tuple[np.ndarray, np.ndarray]:
    if draft.xs is not None and draft.ys is not None and not np.isnan(draft.xs).all():
        return draft.xs, draft.ys
    if draft.geometry is None:
        return np.array([]), np.array([])
    present = np.array([g is not None for g in draft.geometry.tolist()], dtype=bool)
    coords = shapely.get_coordinates(draft.geometry[present][:5000])
    return coords[:, 0], coords[:, 1]


# --------------------------------------------------------------------------------------------------
# Batch records (own small transactions)


def _open_batch(
    engine: Engine,
    actor: Actor,
    settings: Settings,
    name: str,
    size: int,
    profile: Profile,
    options: ImportOptions,
) -> int:
    with transaction(engine) as session:
        batch = ImportBatch(
            county_code=settings.area.county_code,
            file_name=name,
            file_sha256=None,  # recorded when the batch ends (_Digest)
            file_size=size,
            profile=profile.name,
            options=options.as_dict(),
            actor=actor.name,
            unit_id=actor.unit_id,
            zone_name=options.zone,
            status="running",
        )
        session.add(batch)
        session.flush()
        return batch.id


def _close_batch(engine: Engine, batch_id: int, status: str, **values: Any) -> None:
    with transaction(engine) as session:
        session.execute(
            text(
                "UPDATE import_batches SET status = :s, finished_at = now(), error = :e, "
                "report = CAST(:r AS jsonb), counts = CAST(:c AS jsonb), file_sha256 = :d WHERE id = :id"
            ),
            {
                "d": values.get("sha256"),
                "s": status,
                "e": values.get("error"),
                "r": _json(values.get("report")),
                "c": _json(values.get("counts") or {}),
                "id": batch_id,
            },
        )


def _json(value: Any) -> str | None:
    import orjson

    return None if value is None else orjson.dumps(value, default=str).decode()


# --------------------------------------------------------------------------------------------------
# The import


def run_import(
    engine: Engine,
    path: str | Path,
    actor: Actor,
    settings: Settings,
    options: ImportOptions | None = None,
    *,
    area: ServiceArea | None = None,
    progress: Progress | None = None,
    fault: Fault | None = None,
) -> ImportReport:
    """Import one inventory file as one batch; returns the report (status committed, dry_run or refused).

    Raises InvalidInput when the file cannot be read at all, and whatever the database raised when
    it failed; in both cases nothing was written (the batch, if one was opened, is marked failed).
    ``fault`` is called at named points (tests use it to fail half-way).
    """
    options = options or ImportOptions()
    path = Path(path)
    area = area or ServiceArea.from_settings(settings)
    started = time.perf_counter()
    profile = resolve_profile(options)
    name = options.file_name or path.name
    x_fields, y_fields = profile.coordinate_fields()
    # The usual spellings (经度, lng, X坐标 …) after the profile's own: a ledger need not say LON.
    x_fields += [n for n in X_NAMES if n not in x_fields]
    y_fields += [n for n in Y_NAMES if n not in y_fields]

    def read() -> tuple[SourceInfo, Iterator[Any]]:
        return open_source(
            path,
            layer=options.layer,
            encoding=options.encoding or profile.encoding,
            x_field=x_fields or None,
            y_field=y_fields or None,
            chunk_size=options.chunk_size,
        )

    size = file_size(path)
    digest = _Digest(path)
    info, chunks = read()
    report = ImportReport(
        file=name,
        sha256=None,
        status="dry_run" if options.dry_run else "committed",
        batch_id=None,
        profile=profile.name,
        dry_run=options.dry_run,
        strict=options.strict,
        format=info.format,
        encoding=info.encoding,
        zone=options.zone,
        notes=list(info.notes),
    )
    batch_id = None
    if not options.dry_run:
        batch_id = _open_batch(engine, actor, settings, name, size, profile, options)
        report.batch_id = batch_id
    direct = not options.dry_run and 0 <= settings.imports.direct_min_bytes <= size

    def run_once(info: SourceInfo, chunks: Iterator[Any], direct_wanted: bool) -> None:
        _run(
            engine, info, chunks, actor, settings, options, profile, area, report, digest, progress, fault,
            direct_wanted,
        )  # fmt: skip

    try:
        try:
            run_once(info, chunks, direct)
        except RestartWholeFile as restart:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
            info, chunks = read()
            report.read = report.created = report.updated = report.unchanged = report.rejected = 0
            report.notes = [
                *info.notes,
                both("imp.read_twice", why=restart.args[0] if restart.args else str(restart)),
            ]
            run_once(info, chunks, False)
    except BaseException as exc:
        if batch_id is not None:
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            status = exc.status if isinstance(exc, ImportRefused) else "failed"
            report.status = status
            report.seconds = time.perf_counter() - started
            report.sha256 = digest.result_if_readable()
            _close_batch(
                engine,
                batch_id,
                status,
                error=message,
                report=report.as_dict(),
                counts=report.counts(),
                sha256=report.sha256,
            )
        if isinstance(exc, ImportRefused):
            report.status = exc.status
            report.seconds = time.perf_counter() - started
            report.sha256 = digest.result_if_readable()
            exc.report = report.as_dict()
        raise
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
        digest.close()
    report.sha256 = digest.result()
    if not options.dry_run:
        _refresh_tile_counts(engine, report, progress)
    report.seconds = time.perf_counter() - started
    return report


def _refresh_tile_counts(engine: Engine, report: ImportReport, progress: Progress | None) -> None:
    """Recount the map's aggregate counts now if the import's bulk statements left them stale.

    Otherwise the first tile requested after a big import would do it (1-2 s a million assets) while
    every other tile waits. The import has committed: a failure here costs only that, never the batch.
    """
    if progress is not None:
        progress("tiles", report.read, report.read)
    try:
        with transaction(engine) as session:
            if tiles.refresh_counts(session):
                report.notes.append(both("imp.tiles_recounted"))
    except (DBAPIError, DatabaseUnavailable) as exc:
        log.warning("tile counts not recounted after import batch %s: %s", report.batch_id, exc)
        report.notes.append(both("imp.tiles_stale"))


def _run(
    engine: Engine,
    info: SourceInfo,
    chunks: Iterator[Any],
    actor: Actor,
    settings: Settings,
    options: ImportOptions,
    profile: Profile,
    area: ServiceArea,
    report: ImportReport,
    digest: _Digest,
    progress: Progress | None,
    fault: Fault | None,
    direct_wanted: bool = False,
) -> None:
    county = settings.area.county_code
    problems = _Problems(report.file, options.problem_cap)
    try:
        # The whole batch is this one transaction: committed when the block ends (after _commit has
        # recorded the batch), rolled back when anything in it raises. The COPYs (staging or direct
        # load) run on the same connection, so they are part of it too.
        with transaction(engine, failure=_NOTHING_WRITTEN) as session:
            session.execute(text("SET LOCAL work_mem = '256MB'"))
            if report.batch_id:
                reason = both("imp.reason_batch", file=report.file, batch=report.batch_id)
            else:
                reason = both("imp.reason", file=report.file)
            set_change_context(session, actor, reason, action="import", batch_id=report.batch_id)
            # One import at a time per registry: two batches matching the same source ids at once
            # would both see them as new. Held to the end of the transaction, like the one below.
            session.execute(text("SELECT pg_advisory_xact_lock(CAST(:k AS int), 0)"), {"k": _LOCK_KEY})
            if report.batch_id is not None:
                # Held to the end of the transaction: tells a reader whether a 'running' batch is alive.
                session.execute(
                    text("SELECT pg_advisory_xact_lock(CAST(:k AS int), CAST(:id AS int))"),
                    {"k": _LOCK_KEY, "id": report.batch_id},
                )
            zone = _zone(session, options.zone, county) if options.zone else None
            if zone is not None:
                report.zone = f"{zone.name} ({zone.level})"
            actor_unit_name = None
            if actor.unit_id is not None and not actor.admin:
                unit = session.get(Unit, actor.unit_id)
                actor_unit_name = unit.name if unit else str(actor.unit_id)
            units = UnitResolver(session, actor, county, create_near_misses=options.create_units)
            direct: DirectLoad | None = None
            if (
                direct_wanted
                and report.batch_id is not None
                and lock_if_empty(session, settings.imports.lock_timeout_ms)
            ):
                start_empty(session)
                direct = DirectLoad(
                    county=county,
                    batch_id=report.batch_id,
                    timezone=settings.area.timezone,
                    reason=f"marked out of use (作废) in {report.file}",
                    now=session.execute(text("SELECT now()")).scalar_one(),
                    fields={},
                    indexes=drop_indexes(session),
                )
            else:
                if direct_wanted and needs_owner(session):
                    report.notes.append(NEEDS_OWNER_NOTE)
                merge.create_stage(session)
                digest.start()
            ctx: ValidationContext | None = None
            raw = session.connection().connection.driver_connection
            write = None if direct is None else copy_assets
            no_owner = 0
            with StageWriter(raw, write=write) as writer:
                for chunk in chunks:
                    if ctx is None:
                        # Once per file: the header decides which column feeds which field.
                        profile = _recognise_columns(session, info, chunk, profile, options, report)
                    draft = map_chunk(chunk, profile)
                    no_owner += int((~has_value(draft.owner)).sum())
                    if ctx is None:
                        crs, swapped, crs_report = decide_crs(session, info, draft, options, profile, area)
                        report.crs = crs_report
                        if crs_report.get("strength") == "assumed" and crs.name == "wgs84":
                            # A guess moves every point if it is wrong (GCJ-02 read as WGS84: ~500 m):
                            # said first, and --strict refuses it until --crs names the system.
                            report.warnings.append(both("imp.crs.assumed", crs=crs.name))
                        ctx = ValidationContext(
                            county=county,
                            area=area,
                            crs=crs,
                            swapped=swapped,
                            classes=ClassTable.load(session, profile),
                            units=units,
                            scope=options.source_system or profile.name,
                            field_names=_field_names(chunk.columns, profile),
                            zone=zone,
                            actor_unit=actor.unit_id if not actor.admin else None,
                            actor_unit_name=actor_unit_name,
                        )
                        if direct is not None:
                            direct.fields = ctx.field_names
                    valid = validate_chunk(draft, ctx)
                    report.read += valid.read_rows
                    report.rejected += valid.rejected_rows
                    problems.add(valid.problems)
                    if direct is None:
                        writer.put(valid)  # written while the next chunk is parsed
                    else:
                        rows, repeated = direct.prepare(session, valid)
                        if rows is not None:
                            writer.put(copy_data(rows))
                        report.rejected += len(repeated)
                        problems.add(repeated)
                    if progress is not None:
                        progress("reading", report.read, info.feature_count)
                    if fault is not None:
                        fault("chunk")
                writer.finish()
            digest.start()  # the file is read (a direct load starts hashing here)
            if ctx is None:
                report.crs = {"used": None, "origin": "none", "note": both("imp.no_rows")}
            elif no_owner and (actor.unit_id is None or actor.admin):
                _warn_missing_owner(report, no_owner)
            if direct is not None:
                if progress is not None:
                    progress("indexing", report.read, info.feature_count)
                _finish_direct(session, direct, settings, options, report, problems, units)
                if fault is not None:
                    fault("created")
                    fault("written")
                _commit(session, report, digest, problems, zone, info)
                return
            if progress is not None:
                progress("merging", report.read, info.feature_count)
            actor_unit = actor.unit_id if not actor.admin else None
            cap = max(0, options.problem_cap - len(problems.kept))
            result = merge.plan(session, actor_unit, cap, ctx.field_names if ctx else {})
            problems.add(result.problems)
            problems.total += result.rejected - len(result.problems)  # those beyond the cap
            report.rejected += result.rejected
            report.unchanged = result.unchanged
            report.units_created = list(units.created)
            report.units_held = dict(units.held)
            report.codes_allocated = dict(result.allocated)
            if options.strict and (report.rejected or report.warnings):
                report.created, report.updated = result.created, result.updated
                _refuse(report, problems)
            if options.dry_run:
                report.created, report.updated = result.created, result.updated
                # A dry run writes nothing (units, serials and all): the commit at the end of the
                # block then has nothing left to commit.
                session.rollback()
                if report.read and report.rejected >= report.read:
                    # The outcome the real import would have: a script checking first sees the failure.
                    _reject_all(report, problems)
                _finish_problems(report, problems)
                return
            if report.read and report.rejected >= report.read:
                _reject_all(report, problems)
            if report.read and not (result.created or result.updated or units.created):
                _unchanged(session, report, problems)
                return
            checks = merge.allocate(session, county, result.allocated)
            params = {
                "checks": checks,
                "county": county,
                "batch": report.batch_id,
                "tz": settings.area.timezone,
                "reason": f"marked out of use (作废) in {report.file}",
            }
            if progress is not None:
                progress("writing", report.read, info.feature_count)
            report.created = merge.write_created(session, params)
            if fault is not None:
                fault("created")
            report.updated = merge.write_updated(session, params)
            if fault is not None:
                fault("written")
            _commit(session, report, digest, problems, zone, info)
    # Rolled back already (transaction); here only told in the importer's words.
    except IntegrityError as exc:
        raise Conflict(both("imp.integrity", file=report.file, why=exc.orig)) from exc
    except DBAPIError as exc:
        raise DatabaseUnavailable(both("imp.database", why=exc.orig)) from exc
    except psycopg.Error as exc:  # from the staging COPY, which talks to psycopg directly
        raise DatabaseUnavailable(both("imp.database", why=exc)) from exc


# The prefix registry.db.transaction puts before a lost connection's message.
_NOTHING_WRITTEN = "导入时数据库出错，未写入任何数据 / database error during import, nothing was written"


def _finish_direct(
    session: Session,
    direct: DirectLoad,
    settings: Settings,
    options: ImportOptions,
    report: ImportReport,
    problems: _Problems,
    units: UnitResolver,
) -> None:
    """After a direct load's last chunk: indexes built, repeats confirmed, counts set, --strict applied."""
    direct.give_back(session)
    direct.indexes.rebuild(session, settings.imports.maintenance_work_mem_mb)
    direct.confirm_repeats(session)
    report.created = direct.created
    report.units_created = list(units.created)
    report.units_held = dict(units.held)
    report.codes_allocated = direct.allocated()
    report.notes.append(both("imp.direct", seconds=direct.indexes.seconds))
    if options.strict and (report.rejected or report.warnings):
        _refuse(report, problems)
    if report.read and not direct.created:
        _reject_all(report, problems)


def _recognise_columns(
    session: Session,
    info: SourceInfo,
    chunk: Any,
    profile: Profile,
    options: ImportOptions,
    report: ImportReport,
) -> Profile:
    """Match the file's header once (profile names, usual spellings, words) and report the mapping."""
    by_name = ClassTable.load(session, profile).names.by_name
    sample: dict[str, list[Any]] = {str(name): list(values[:200]) for name, values in chunk.columns.items()}
    geometry = [c for c in (info.x_field, info.y_field) if c]
    found = match_headers(
        list(chunk.columns),
        profile,
        sample=sample,
        geometry_columns=geometry,
        is_class=lambda value: fold(value) in by_name,
    )
    report.columns = found.as_dict()
    if info.x_field and info.y_field:
        report.columns["coordinates"] = {"x": info.x_field, "y": info.y_field}
    report.warnings.extend(found.warnings)
    return apply_mapping(profile, found, options.class_)


def _warn_missing_owner(report: ImportReport, rows: int) -> None:
    """Say first that rows arrive without an owner: every class of component has one (权属单位)."""
    mapped = any(m["field"] == "owner" for m in report.columns.get("mapped", ()))
    if not mapped:
        report.warnings.insert(0, both("imp.no_owner_column", rows=rows))
    else:
        report.warnings.insert(0, both("imp.no_owner_rows", rows=rows))


def _reject_all(report: ImportReport, problems: _Problems) -> NoReturn:
    """Every row rejected: nothing to write, and the batch is a failure a script can see."""
    _finish_problems(report, problems)
    report.status = "rejected"
    raise ImportRejected(both("imp.rejected", file=report.file, read=report.read), rejected=report.rejected)


def _unchanged(session: Session, report: ImportReport, problems: _Problems) -> None:
    """Nothing to write (a re-import of the same file): no empty batch is left behind, and it says so."""
    _finish_problems(report, problems)
    session.rollback()
    if report.batch_id is not None:
        with session.begin():
            session.execute(text("DELETE FROM import_batches WHERE id = :id"), {"id": report.batch_id})
    report.batch_id = None
    report.status = "unchanged"
    report.notes.append(both("imp.unchanged"))


def _refuse(report: ImportReport, problems: _Problems) -> NoReturn:
    """--strict and rejected rows: the report says so, and ImportRefused rolls the batch back."""
    _finish_problems(report, problems)
    report.status = "refused"
    if not report.rejected and report.warnings:
        first = report.warnings[0]
        message = both("imp.refused_warnings", file=report.file, first=first)
    else:
        message = both("imp.refused", file=report.file, rejected=report.rejected, read=report.read)
    raise ImportRefused(message, rejected=report.rejected)


def _commit(
    session: Session,
    report: ImportReport,
    digest: _Digest,
    problems: _Problems,
    zone: Zone | None,
    info: SourceInfo,
) -> None:
    """Record the batch as committed, with its report and the file's digest (the import's transaction
    commits as its block ends, in ``_run``)."""
    _finish_problems(report, problems)
    report.sha256 = digest.result()
    session.execute(
        text(
            "UPDATE import_batches SET status = 'committed', finished_at = now(), zone_id = :z, "
            "format = :f, counts = CAST(:c AS jsonb), report = CAST(:r AS jsonb), file_sha256 = :d "
            "WHERE id = :id"
        ),
        {
            "d": report.sha256,
            "z": zone.id if zone else None,
            "f": info.format,
            "c": _json(report.counts()),
            "r": _json(report.as_dict()),
            "id": report.batch_id,
        },
    )
    _emit_imported(session, report)


def _emit_imported(session: Session, report: ImportReport) -> None:
    """One ``asset.imported`` event per committed batch, in its transaction: counts and (capped) codes."""
    assert report.batch_id is not None
    unit_id = session.execute(
        text("SELECT unit_id FROM import_batches WHERE id = :id"), {"id": report.batch_id}
    ).scalar()
    codes = (
        session.execute(
            text("SELECT code FROM assets WHERE batch_id = :id ORDER BY code LIMIT :n"),
            {"id": report.batch_id, "n": IMPORTED_CODES_CAP + 1},
        )
        .scalars()
        .all()
    )
    data = {
        "batch_id": report.batch_id,
        "unit_id": unit_id,
        "file": report.file,
        "counts": report.counts(),
        # A batch of a million assets would make a useless event: past the cap, ask the API.
        "codes": list(codes[:IMPORTED_CODES_CAP]),
        "codes_truncated": len(codes) > IMPORTED_CODES_CAP,
        "codes_cap": IMPORTED_CODES_CAP,
    }
    events.emit(session, "asset.imported", data, subject=f"batch:{report.batch_id}")


def _finish_problems(report: ImportReport, problems: _Problems) -> None:
    report.problems = sorted(problems.kept, key=lambda p: p["row"])
    report.problems_total = problems.total
    report.problems_by_field = dict(problems.by_field)


# Advisory lock namespace of import batches ("IMPT").
_LOCK_KEY = 0x494D5054


def batch_is_alive(session: Session, batch_id: int) -> bool:
    """True when the transaction of a 'running' batch still holds its lock (the import is going on)."""
    free = session.execute(
        text("SELECT pg_try_advisory_xact_lock_shared(CAST(:k AS int), CAST(:id AS int))"),
        {"k": _LOCK_KEY, "id": batch_id},
    ).scalar()
    return not free
