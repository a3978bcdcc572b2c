"""Load the synthetic 坪山 pilot into a registry through the real import paths, once.

The loader writes the demo files (:mod:`importers.demo.generate`), registers the demo's units
(verified, with credit codes) and then feeds every file to the same service functions that
``smartcode zones import``, ``smartcode rules import`` and ``smartcode import`` use. Nothing is
inserted behind the importers' backs, so the demo doubles as an end-to-end exercise of them.

Loading is idempotent: when it finishes, an audit-log entry (entity ``demo``, id = the files'
fingerprint) records it; a second run finds that entry and loads nothing. A registry that already
holds other assets is refused, so synthetic data never mixes with a real inventory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from common.errors import Conflict
from common.settings import Settings
from gis.area import ServiceArea
from importers.demo.generate import DemoFiles, DemoStep, generate_demo
from importers.demo.world import COUNTY, DATA_SOURCE, DEFAULT_SEED, SYNTHETIC_NOTE, UNITS, UnitSpec
from registry import audit
from registry import units as unit_service
from registry.codes import parse_code
from registry.db import Actor, transaction
from registry.messages import Bilingual, both
from registry.models import Asset, AuditLog, Unit
from registry.schemas import UnitCreate

DEMO_ENTITY = "demo"
# Advisory lock key of the demo loader ("DEMO").
_LOCK_KEY = 0x44454D4F
DEMO_ACTOR = Actor(name="smartcode-demo", admin=True)
REASON = "smartcode demo: synthetic 坪山 pilot (合成演示数据)"


@dataclass
class DemoReport:
    """What ``load_demo`` did (or found already done), with counts and examples to try."""

    status: str  # "loaded" | "already_loaded"
    seed: int
    fingerprint: str
    folder: str
    loaded_at: str | None = None
    units: dict[str, list[str]] = field(default_factory=dict)
    zones: dict[str, int] = field(default_factory=dict)
    rules: int = 0
    batches: list[dict[str, Any]] = field(default_factory=list)
    assets_per_class: dict[str, dict[str, Any]] = field(default_factory=dict)
    assets: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "synthetic": True,
            "note": SYNTHETIC_NOTE,
            "status": self.status,
            "seed": self.seed,
            "fingerprint": self.fingerprint,
            "folder": self.folder,
            "loaded_at": self.loaded_at,
            "units": self.units,
            "zones": self.zones,
            "rules": self.rules,
            "batches": self.batches,
            "assets": self.assets,
            "assets_per_class": self.assets_per_class,
            "examples": self.examples,
            "notes": self.notes,
        }


def demo_folder(settings: Settings) -> Path:
    """Where the demo files go by default: ``<var_dir>/demo``."""
    return settings.embedded.var_dir / "demo"


def loaded_demo(session: Session) -> AuditLog | None:
    """The audit entry of the demo already loaded into this registry, if any."""
    return session.scalars(
        select(AuditLog)
        .where(AuditLog.entity == DEMO_ENTITY, AuditLog.action == "loaded")
        .order_by(AuditLog.id.desc())
        .limit(1)
    ).first()


def load_demo(
    engine: Engine, settings: Settings, *, seed: int = DEFAULT_SEED, folder: Path | None = None
) -> DemoReport:
    """Write the demo files for ``seed`` and load them through the importers, unless already loaded."""
    files = generate_demo(folder or demo_folder(settings), seed)
    # One loader at a time: two `smartcode demo` started together would both find no marker.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as lock:
        lock.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK_KEY})
        try:
            return _load(engine, settings, files)
        finally:
            lock.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})


def _load(engine: Engine, settings: Settings, files: DemoFiles) -> DemoReport:
    with transaction(engine) as session:
        marker = loaded_demo(session)
        if marker is not None:
            return _already_loaded(session, files, marker)
        _refuse_foreign_data(session)

    units = _register_units(engine)
    area = ServiceArea.from_settings(settings)
    batches = [_run_step(engine, settings, area, files, step) for step in files.steps]

    with transaction(engine) as session:
        report = _report(session, files, "loaded")
        report.units = units
        report.batches = batches
        audit.record(
            session,
            DEMO_ACTOR,
            "loaded",
            DEMO_ENTITY,
            files.fingerprint,
            reason=REASON,
            details={
                "seed": files.seed,
                "folder": str(files.folder),
                "units": units,
                "batches": batches,
                "assets": report.assets,
            },
        )
        session.flush()
        marker = loaded_demo(session)
        report.loaded_at = marker.at.isoformat() if marker is not None and marker.at else None
    return report


def _already_loaded(session: Session, files: DemoFiles, marker: AuditLog) -> DemoReport:
    """The report of a demo loaded before; another seed is refused rather than mixed in."""
    details = marker.details or {}
    loaded_seed = details.get("seed")
    if loaded_seed != files.seed:
        raise Conflict(both("demo.other_seed", seed=loaded_seed), seed=loaded_seed)
    report = _report(session, files, "already_loaded")
    report.loaded_at = marker.at.isoformat() if marker.at else None
    report.batches = list(details.get("batches", []))
    report.units = dict(details.get("units", {}))
    if marker.entity_id != files.fingerprint:
        # Same seed, different files: the demo generator changed since this registry was loaded.
        report.fingerprint = marker.entity_id
        report.notes.append(both("demo.older"))
    return report


def _refuse_foreign_data(session: Session) -> None:
    """A registry holding anything the demo did not load is a real one: never mix synthetic data in."""
    demo_units = [spec.name for spec in UNITS]
    found = {
        "assets": session.scalar(
            select(func.count()).select_from(Asset).where(Asset.data_source.is_distinct_from(DATA_SOURCE))
        ),
        "units": session.scalar(select(func.count()).select_from(Unit).where(Unit.name.not_in(demo_units))),
        "zones": session.scalar(text("SELECT count(*) FROM zones WHERE actor <> :a"), {"a": DEMO_ACTOR.name}),
        "rules": session.scalar(
            text("SELECT count(*) FROM responsibility_rules WHERE actor <> :a"), {"a": DEMO_ACTOR.name}
        ),
    }
    foreign = {kind: count for kind, count in found.items() if count}
    if foreign:
        counts = [both(f"demo.count.{kind}", count=count) for kind, count in foreign.items()]
        listed = Bilingual("、".join(c.zh for c in counts), ", ".join(c.en for c in counts))
        raise Conflict(both("demo.foreign", listed=listed), **foreign)


def _register_units(engine: Engine) -> dict[str, list[str]]:
    """Register the demo's units (verified, with credit codes); units already present are kept."""
    created: list[str] = []
    existing: list[str] = []
    with transaction(engine) as session:
        ids: dict[str, int] = {}
        for spec in UNITS:
            unit = session.scalars(select(Unit).where(Unit.name == spec.name)).first()
            if unit is not None:
                existing.append(spec.name)
            else:
                unit = unit_service.create_unit(session, _unit_create(spec, ids), DEMO_ACTOR, COUNTY)
                created.append(spec.name)
            ids[spec.key] = unit.id
    return {"created": created, "existing": existing}


def _unit_create(spec: UnitSpec, ids: dict[str, int]) -> UnitCreate:
    return UnitCreate(
        name=spec.name,
        kind=spec.kind,
        aliases=list(spec.aliases),
        credit_code=spec.credit_code,
        phone=spec.phone,
        parent_id=ids[spec.parent] if spec.parent else None,
        verified=True,
        note=SYNTHETIC_NOTE,
    )


def _run_step(
    engine: Engine, settings: Settings, area: ServiceArea, files: DemoFiles, step: DemoStep
) -> dict[str, Any]:
    """One import of the manifest through the service function the matching CLI command uses."""
    path = files.path(step.file)
    if step.kind == "zones":
        from importers.zone_files import import_zones

        with transaction(engine) as session:
            zone_report = import_zones(
                session,
                DEMO_ACTOR,
                path,
                level=step.options["level"],
                name_field=step.options["name_field"],
                unit_field=step.options.get("unit_field"),
                code_field=step.options.get("code_field"),
                area=area,
                county=settings.area.county_code,
                reason=REASON,
            )
        summary = zone_report.as_dict()
        return {
            "step": step.label,
            "file": step.file,
            "kind": "zones",
            "created": len(summary["created"]),
            "replaced": len(summary["replaced"]),
            "unchanged": len(summary["unchanged"]),
            "units_created": summary["units_created"],
        }
    if step.kind == "rules":
        from registry.rules import import_rules_csv

        with transaction(engine) as session:
            rule_report = import_rules_csv(
                session,
                DEMO_ACTOR,
                path.read_text(encoding="utf-8"),
                county=settings.area.county_code,
                file=step.file,
                reason=REASON,
            )
        summary = rule_report.as_dict()
        return {
            "step": step.label,
            "file": step.file,
            "kind": "rules",
            "created": len(summary["created"]),
            "replaced": len(summary["replaced"]),
            "unchanged": len(summary["unchanged"]),
            "units_created": summary["units_created"],
        }
    return _import_assets(engine, settings, area, files, step)


def _import_assets(
    engine: Engine, settings: Settings, area: ServiceArea, files: DemoFiles, step: DemoStep
) -> dict[str, Any]:
    """One inventory file through the asset import pipeline (one batch per file), as `smartcode import`."""
    from importers.pipeline import ImportOptions, run_import

    profile = step.options.get("profile")
    if profile and profile.endswith(".toml"):
        profile = str(files.path(profile))  # the demo's own profiles live beside its files
    options = ImportOptions(profile=profile, crs=step.options.get("crs"), file_name=step.file)
    report = run_import(engine, files.path(step.file), DEMO_ACTOR, settings, options, area=area)
    return {
        "step": step.label,
        "file": step.file,
        "kind": "assets",
        "batch_id": report.batch_id,
        "status": report.status,
        **report.counts(),
        "problems": report.problems_total,
        "units_created": report.units_created,
        "codes_allocated": sum(report.codes_allocated.values()),
        "crs": report.crs.get("used"),
        "crs_origin": report.crs.get("origin"),
        "encoding": report.encoding,
    }


# --------------------------------------------------------------------------------------------------
# The report: counts from the database, and examples a newcomer can try


def _report(session: Session, files: DemoFiles, status: str) -> DemoReport:
    report = DemoReport(
        status=status, seed=files.seed, fingerprint=files.fingerprint, folder=str(files.folder)
    )
    rows = session.execute(
        text(
            "SELECT a.class_code, c.name, count(*) FROM assets a "
            "JOIN component_classes c ON c.code = a.class_code GROUP BY 1, 2 ORDER BY 1"
        )
    ).all()
    report.assets_per_class = {code: {"name": name, "count": count} for code, name, count in rows}
    report.assets = sum(count for _, _, count in rows)
    zone_rows = session.execute(
        text("SELECT level, count(*) FROM zones WHERE valid_to IS NULL GROUP BY level ORDER BY level")
    ).all()
    report.zones = {level: count for level, count in zone_rows}
    report.rules = (
        session.scalar(text("SELECT count(*) FROM responsibility_rules WHERE valid_to IS NULL")) or 0
    )
    report.examples = examples(session)
    return report


_EXAMPLE_SQL = """
SELECT a.code, a.class_code, c.name, u.name, ST_X(ST_PointOnSurface(a.geom)), ST_Y(ST_PointOnSurface(a.geom)),
       (SELECT z.name FROM zones z WHERE z.level = 'pilot' AND z.valid_to IS NULL
          AND ST_Covers(z.geom, ST_PointOnSurface(a.geom)) ORDER BY z.name LIMIT 1)
FROM assets a JOIN component_classes c ON c.code = a.class_code LEFT JOIN units u ON u.id = a.owner_id
WHERE a.class_code = :cls AND (CAST(:owner_like AS text) IS NULL OR u.name LIKE :owner_like)
  AND (CAST(:pilot AS text) IS NULL OR EXISTS (
        SELECT 1 FROM zones z WHERE z.level = 'pilot' AND z.name = :pilot AND z.valid_to IS NULL
          AND ST_Covers(z.geom, ST_PointOnSurface(a.geom))))
ORDER BY a.code LIMIT 1
"""
# What to show: class, an owner name pattern (or None), the pilot zone it should lie in, why (a message key).
_EXAMPLES: tuple[tuple[str, str | None, str | None, str], ...] = (
    ("0118", "%路灯管理所", "坪山中心区", "demo.why.lamp"),
    ("0117", "%铁塔%", None, "demo.why.pole"),
    ("2105", None, None, "demo.why.cable"),
    ("0105", "%供电局", None, "demo.why.power_cover"),
    ("0114", None, "坪山中心区", "demo.why.rule_cover"),
    ("0114", None, "坪环社区", "demo.why.street_cover"),
)


def examples(session: Session) -> list[dict[str, Any]]:
    """A few registered demo assets worth looking up, with their position and owner."""
    found: list[dict[str, Any]] = []
    for class_code, owner_like, pilot, why in _EXAMPLES:
        row = session.execute(
            text(_EXAMPLE_SQL), {"cls": class_code, "owner_like": owner_like, "pilot": pilot}
        ).first()
        if row is None:
            continue
        code = parse_code(row[0])
        found.append(
            {
                "code": row[0],
                "code_display": code.formatted,
                "class": {"code": row[1], "name": row[2]},
                "owner": row[3],
                "lon": round(float(row[4]), 6),
                "lat": round(float(row[5]), 6),
                "pilot": row[6],
                "why": both(why),
            }
        )
    return found
