"""Asset services: register, describe, update with a version check, change units, decommission, history."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from geoalchemy2.shape import from_shape, to_shape
from shapely.geometry import mapping
from sqlalchemy import BigInteger, DateTime, Select, func, literal, literal_column, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, array
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common.errors import CheckDigitMismatch, Conflict, InvalidInput, NotFound, StaleVersion
from gis.area import ServiceArea
from registry import audit, events
from registry import classes as class_service
from registry import units as unit_service
from registry.access import Action, authorize, public_asset, public_party, require
from registry.codes import SmartCode, near_misses, normalize, parse_code
from registry.db import Actor, set_change_context
from registry.geometry import check_asset_geometry, parse_geojson
from registry.messages import both
from registry.models import STORAGE_SRID, Asset, AssetHistory, AssetResponsibility, Proposal, Unit
from registry.schemas import AssetCreate, AssetUpdate, Decommission, UnitsChange
from registry.serials import allocate_serials, reserve_serial

# Clocks of clients and servers disagree a little; an "effective now" a few minutes ahead is still now.
_CLOCK_SKEW = dt.timedelta(minutes=5)


# "-infinity" marks a first period that began before the registry knew of the asset; Python's
# datetime cannot hold it, so such bounds are read as NULL (shown as "since unknown").
_MINUS_INFINITY = literal("-infinity", DateTime(timezone=True))


def _current_period_start(asset: Asset) -> Any:
    """SQL: when the asset's current responsibility period began (NULL: since unknown)."""
    start = func.smartcode_period_start(Asset.responsible_since, Asset.installed_on)
    return select(func.nullif(start, _MINUS_INFINITY)).where(Asset.id == asset.id).scalar_subquery()


@dataclass(frozen=True)
class AssetFilter:
    """Criteria for listing assets; every field is optional and they combine with AND."""

    class_codes: tuple[str, ...] = ()
    unit_id: int | None = None  # as owner, maintainer or supervisor
    bbox: tuple[float, float, float, float] | None = None  # WGS84 min lon, min lat, max lon, max lat
    in_use: bool | None = None
    state: str | None = None
    zone: str | None = None  # name of a zone valid now: assets meeting its boundary
    batch_id: int | None = None  # assets last written by this import batch


def asset_view(session: Session, asset: Asset, *, public: bool = False) -> dict[str, Any]:
    """The JSON form of an asset; the public (passer-by) form is what it is, its state and whom to call."""
    cls = class_service.get_class(session, asset.class_code)
    code = SmartCode(asset.county_code, asset.class_code, asset.serial)
    geom = to_shape(asset.geom)
    point = geom.representative_point()
    units = {
        role: unit_service.unit_summary(session.get(Unit, unit_id) if unit_id else None)
        for role, unit_id in (
            ("owner", asset.owner_id),
            ("maintainer", asset.maintainer_id),
            ("supervisor", asset.supervisor_id),
        )
    }
    view: dict[str, Any] = {
        "code": asset.code,
        "code_display": code.formatted,
        "class": {"code": cls.code, "name": cls.name, "geometry_type": cls.geometry_type},
        "state": asset.state,
        "in_use": asset.in_use,
        "decommissioned_at": _iso(asset.decommissioned_at),
        "decommission_reason": asset.decommission_reason,
        "position": {"lon": round(point.x, 6), "lat": round(point.y, 6)},
        **units,
    }
    if public:
        # No position, reason or internal field: see registry.access (the passer-by view).
        return {**public_asset(view), **{role: public_party(units[role]) for role in units}}
    view.update(
        {
            "id": asset.id,
            "geometry": mapping(geom),
            "grid_code": asset.grid_code,
            "data_source": asset.data_source,
            "address": asset.address,
            "note": asset.note,
            "installed_on": asset.installed_on.isoformat() if asset.installed_on else None,
            "attributes": asset.attributes,
            "source_id": asset.source_id,
            "batch_id": asset.batch_id,
            "created_at": _iso(asset.created_at),
            "changed_at": _iso(asset.changed_at),
            "version": asset.version,
        }
    )
    return view


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def get_by_code(session: Session, text_code: str) -> Asset:
    """The asset a scanned or typed code names.

    A code with a wrong check digit raises ``CheckDigitMismatch`` listing registered codes one typo
    away; a well-formed code that is not registered raises ``NotFound``.
    """
    try:
        code = parse_code(text_code)
    except CheckDigitMismatch as exc:
        digits = normalize(text_code)
        suggestions = session.scalars(
            select(Asset.code).where(Asset.code.in_(near_misses(digits))).limit(5)
        ).all()
        exc.details["did_you_mean"] = [parse_code(s).formatted for s in suggestions]
        raise
    asset = session.scalars(select(Asset).where(Asset.code == str(code))).first()
    if asset is None:
        raise NotFound(both("err.code.unregistered", code=code.formatted), code=code.formatted)
    return asset


def _check_units_exist(session: Session, **unit_ids: int | None) -> None:
    for field, unit_id in unit_ids.items():
        if unit_id is not None and session.get(Unit, unit_id) is None:
            raise InvalidInput(both("err.unit.not_registered", field=field, id=unit_id), field=field)


_ROLES = ("owner_id", "maintainer_id", "supervisor_id")
_CONSENTED = frozenset({"owner_id", "maintainer_id"})  # the roles a unit cannot give without consent


def _needing_consent(actor: Actor, values: dict[str, int | None]) -> dict[int, dict[str, int]]:
    """The roles ``values`` gives to units other than the actor's, grouped by unit: each needs consent.

    Empty for administrators (their hand-over is direct); a unit may name itself or nobody directly.
    Owner and maintainer carry the work and cost; the supervising department (主管部门) is given by
    the class and the jurisdiction, not taken on by consent, so naming it stays direct.
    """
    if authorize(actor, Action.HAND_OVER_DIRECT):
        return {}
    out: dict[int, dict[str, int]] = {}
    for role, unit_id in values.items():
        if role in _CONSENTED and unit_id is not None and unit_id != actor.unit_id:
            out.setdefault(unit_id, {})[role] = unit_id
    return out


def _propose(
    session: Session,
    actor: Actor,
    asset: Asset,
    kind: str,
    changes: dict[str, int],
    to_unit_id: int,
    *,
    effective_at: dt.datetime | None = None,
    reason: str | None = None,
) -> Proposal:
    """Record a proposal the receiving unit accepts or declines (registry.proposals), audited."""
    waiting = session.scalar(
        select(Proposal.id).where(
            Proposal.asset_id == asset.id,
            Proposal.to_unit_id == to_unit_id,
            Proposal.status == "pending",
            Proposal.changes == changes,
        )
    )
    if waiting is not None:
        raise Conflict(
            both("err.asset.proposed", code=asset.code, id=waiting),
            proposal_id=waiting,
        )
    proposal = Proposal(
        asset_id=asset.id,
        kind=kind,
        changes=changes,
        from_unit_id=actor.unit_id,
        to_unit_id=to_unit_id,
        effective_at=effective_at,
        reason=reason,
        status="pending",
        proposed_by=actor.name,
    )
    session.add(proposal)
    session.flush()
    audit.record(
        session,
        actor,
        "propose",
        "proposal",
        proposal.id,
        reason=reason,
        details={"asset": asset.code, "kind": kind, "changes": changes, "to_unit_id": to_unit_id},
    )
    return proposal


def pending_proposals(session: Session, asset: Asset) -> list[Proposal]:
    """The proposals about ``asset`` still waiting for an answer, oldest first."""
    return list(
        session.scalars(
            select(Proposal)
            .where(Proposal.asset_id == asset.id, Proposal.status == "pending")
            .order_by(Proposal.id)
        )
    )


def register_asset(
    session: Session, data: AssetCreate, actor: Actor, area: ServiceArea, county: str
) -> Asset:
    """Register one asset: validate it, allocate or adopt its code, and record its first version."""
    cls = class_service.get_class(session, data.class_code)
    if not cls.active:
        raise InvalidInput(both("err.class.retired", code=cls.code, name=cls.name), field="class_code")
    geom = check_asset_geometry(parse_geojson(data.geometry), cls, area)
    _check_units_exist(
        session, owner_id=data.owner_id, maintainer_id=data.maintainer_id, supervisor_id=data.supervisor_id
    )
    require(actor, Action.REGISTER_ASSET, data, what="registering an asset for this owner")
    # Naming another unit as maintainer needs its consent: the role stays empty until it accepts
    # (registry.proposals).
    held_back = _needing_consent(
        actor, {"maintainer_id": data.maintainer_id, "supervisor_id": data.supervisor_id}
    )
    withheld = {role for changes in held_back.values() for role in changes}

    if data.code:
        # An adopted serial raises the class's counter: only administrators may move it.
        require(actor, Action.REGISTER_WITH_CODE)
        code = parse_code(data.code)
        if code.county != county:
            raise InvalidInput(
                both("err.code.county", code=code.formatted, county=code.county, here=county),
                field="code",
            )
        if code.class_code != cls.code:
            raise InvalidInput(
                both("err.code.class", code=code.formatted, named=code.class_code, cls=cls.code),
                field="code",
            )
        reserve_serial(session, code.county, code.class_code, code.serial)
    else:
        serial = allocate_serials(session, county, cls.code, 1)[0]
        code = SmartCode(county, cls.code, serial)

    set_change_context(session, actor, data.reason, action="create")
    asset = Asset(
        code=str(code),
        county_code=code.county,
        class_code=cls.code,
        serial=code.serial,
        geom=from_shape(geom, srid=STORAGE_SRID),
        owner_id=data.owner_id,
        maintainer_id=None if "maintainer_id" in withheld else data.maintainer_id,
        supervisor_id=None if "supervisor_id" in withheld else data.supervisor_id,
        state=data.state,
        in_use=True,
        grid_code=data.grid_code,
        data_source=data.data_source,
        address=data.address,
        note=data.note,
        installed_on=data.installed_on,
        attributes=data.attributes,
        source_id=data.source_id,
    )
    session.add(asset)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        if "assets_code_key" in str(exc.orig):
            raise Conflict(both("err.code.taken", code=code.formatted), code=code.formatted) from exc
        raise
    for unit_id, changes in held_back.items():
        _propose(session, actor, asset, "registration", changes, unit_id, reason=data.reason)
    session.refresh(asset)
    _emit(session, "asset.created", asset, actor, reason=data.reason)
    return asset


def _apply_versioned_update(
    session: Session, asset: Asset, expected_version: int, values: dict[str, Any]
) -> Asset:
    # The WHERE on version makes the check and the write one atomic step: a concurrent writer that
    # got there first leaves zero rows to update, and nothing is merged.
    result = session.execute(
        update(Asset)
        .where(Asset.id == asset.id, Asset.version == expected_version)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        current = session.scalar(select(Asset.version).where(Asset.id == asset.id))
        raise StaleVersion(
            both("err.asset.version", code=asset.code, current=current, given=expected_version),
            code=asset.code,
            current_version=current,
        )
    session.expire(asset)
    session.refresh(asset)
    return asset


def _require_in_use(asset: Asset, what: str) -> None:
    if not asset.in_use:
        raise Conflict(
            both("err.asset.decommissioned", code=asset.code, when=_iso(asset.decommissioned_at), what=what),
            code=asset.code,
        )


def _require_tz_past(value: dt.datetime, now: dt.datetime, field: str) -> None:
    if value.tzinfo is None:
        raise InvalidInput(both("err.time.zone", field=field), field=field)
    if value > now + _CLOCK_SKEW:
        raise InvalidInput(both("err.time.future", field=field), field=field)


def _check_version(asset: Asset, expected: int) -> None:
    if asset.version != expected:
        raise StaleVersion(
            both("err.asset.version_short", code=asset.code, current=asset.version, given=expected),
            code=asset.code,
            current_version=asset.version,
        )


def update_asset(session: Session, code: str, data: AssetUpdate, actor: Actor, area: ServiceArea) -> Asset:
    """Change an asset's description if the caller's version is current; otherwise ``StaleVersion``."""
    asset = get_by_code(session, code)
    require(actor, Action.EDIT_ASSET, asset, what=f"asset {asset.code} belongs to another unit")
    _require_in_use(asset, both("err.asset.edited"))
    _check_version(asset, data.version)
    values = data.model_dump(exclude_unset=True, exclude={"version", "reason", "geometry"})
    for required in ("state", "attributes"):
        if required in values and values[required] is None:
            raise InvalidInput(both("err.null", field=required), field=required)
    if data.geometry is not None:
        cls = class_service.get_class(session, asset.class_code)
        geom = check_asset_geometry(parse_geojson(data.geometry), cls, area)
        values["geom"] = from_shape(geom, srid=STORAGE_SRID)
    if not values:
        return asset
    set_change_context(session, actor, data.reason, action="update")
    return _apply_versioned_update(session, asset, data.version, values)


def change_units(session: Session, code: str, data: UnitsChange, actor: Actor) -> Asset:
    """Hand an asset to new responsible units from ``effective_at`` (default now), keeping the old period."""
    return hand_over(session, code, data, actor)[0]


def hand_over(session: Session, code: str, data: UnitsChange, actor: Actor) -> tuple[Asset, list[Proposal]]:
    """Change responsible units; from a unit token, roles given to other units become proposals.

    The roles the unit gives to itself or to nobody change at once; each other unit named gets a
    proposal it accepts or declines (``registry.proposals``). An administrator's change is direct.
    """
    asset = get_by_code(session, code)
    require(actor, Action.HAND_OVER, asset, what=f"asset {asset.code}")
    _require_in_use(asset, both("err.asset.handed_over"))
    _check_version(asset, data.version)
    fields = data.model_fields_set & set(_ROLES)
    if not fields:
        raise InvalidInput(both("err.asset.units_none"), field="owner_id")
    values = {field: getattr(data, field) for field in sorted(fields)}
    _check_units_exist(session, **values)
    if all(getattr(asset, field) == value for field, value in values.items()):
        raise InvalidInput(both("err.asset.units_same"), field="owner_id")
    consent = _needing_consent(actor, {f: v for f, v in values.items() if getattr(asset, f) != v})
    proposed = {role for changes in consent.values() for role in changes}
    direct = {f: v for f, v in values.items() if f not in proposed and getattr(asset, f) != v}
    now = session.scalar(select(func.now()))
    assert now is not None
    if data.effective_at is not None:
        _require_tz_past(data.effective_at, now, "effective_at")
    if direct:
        asset = apply_units_change(
            session, asset, data.version, direct, data.effective_at, data.reason, actor
        )
    proposals = [
        _propose(
            session,
            actor,
            asset,
            "hand_over",
            changes,
            unit_id,
            effective_at=data.effective_at,
            reason=data.reason,
        )
        for unit_id, changes in consent.items()
    ]
    return asset, proposals


def current_period_start(session: Session, asset: Asset) -> dt.datetime | None:
    """When the asset's current responsibility period began (None: since unknown)."""
    return session.scalar(select(_current_period_start(asset)))


def apply_units_change(
    session: Session,
    asset: Asset,
    version: int,
    values: dict[str, int | None],
    effective_at: dt.datetime | None,
    reason: str | None,
    actor: Actor,
    *,
    dispute_id: int | None = None,
) -> Asset:
    """Write a change of responsible units (the caller checked who may): closes the current period.

    ``dispute_id``: the upheld dispute that orders the change, recorded with the new version.
    """
    now = session.scalar(select(func.now()))
    assert now is not None
    effective = effective_at or now
    _require_tz_past(effective, now, "effective_at")
    open_from = session.scalar(select(_current_period_start(asset)))
    if open_from is not None and effective <= open_from:
        raise InvalidInput(
            both("err.time.after_period", at=effective.isoformat(), start=open_from.isoformat()),
            field="effective_at",
        )
    set_change_context(
        session, actor, reason, action="change_units", effective_at=effective, dispute_id=dispute_id
    )
    before = {role: getattr(asset, role) for role in _ROLES}
    asset = _apply_versioned_update(session, asset, version, values)
    changed = {
        role: {"from": before[role], "to": getattr(asset, role)}
        for role in _ROLES
        if before[role] != getattr(asset, role)
    }
    _emit(
        session,
        "asset.handed_over",
        asset,
        actor,
        reason=reason,
        changed=changed,
        effective_at=effective.isoformat(),
    )
    return asset


def decommission_asset(session: Session, code: str, data: Decommission, actor: Actor) -> Asset:
    """Take an asset out of use (注销) with time and reason; it stays in the registry for good."""
    asset = get_by_code(session, code)
    require(actor, Action.DECOMMISSION, asset, what=f"asset {asset.code}")
    _check_version(asset, data.version)
    if not asset.in_use:
        raise Conflict(
            both("err.asset.already_decommissioned", code=asset.code, when=_iso(asset.decommissioned_at))
        )
    now = session.scalar(select(func.now()))
    assert now is not None
    at = data.at or now
    _require_tz_past(at, now, "at")
    set_change_context(session, actor, data.reason, action="decommission")
    asset = _apply_versioned_update(
        session,
        asset,
        data.version,
        {"in_use": False, "decommissioned_at": at, "decommission_reason": data.reason},
    )
    _emit(session, "asset.decommissioned", asset, actor, reason=data.reason, at=at.isoformat())
    return asset


def _emit(session: Session, event_type: str, asset: Asset, actor: Actor, **extra: Any) -> None:
    """Append an asset event (subject: the code) in the change's transaction, after its write.

    After the write, the asset's row lock orders the events of one asset as their commits are.
    """
    ids = [i for i in (asset.owner_id, asset.maintainer_id, asset.supervisor_id) if i is not None]
    names = dict(session.execute(select(Unit.id, Unit.name).where(Unit.id.in_(ids))).tuples().all())

    def party(unit_id: int | None) -> dict[str, Any] | None:
        return None if unit_id is None else {"id": unit_id, "name": names.get(unit_id)}

    data = {
        "code": asset.code,
        "class_code": asset.class_code,
        "version": asset.version,
        "in_use": asset.in_use,
        "owner": party(asset.owner_id),
        "maintainer": party(asset.maintainer_id),
        "supervisor": party(asset.supervisor_id),
        "by": actor.name,
        **extra,
    }
    events.emit(session, event_type, data, subject=asset.code)


def list_assets(
    session: Session, flt: AssetFilter, *, limit: int = 100, offset: int = 0
) -> tuple[list[Asset], int]:
    """Assets matching ``flt`` ordered by code, one page of them, with the total count."""
    stmt = filtered(select(Asset), flt)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(stmt.order_by(Asset.code).limit(limit).offset(offset)).all()
    return list(rows), total


def filtered(stmt: Select[Any], flt: AssetFilter) -> Select[Any]:
    """``stmt`` (selecting from ``assets``) restricted to the assets ``flt`` describes."""
    if flt.class_codes:
        stmt = stmt.where(Asset.class_code.in_(flt.class_codes))
    if flt.unit_id is not None:
        # In any role: one scan of the roles' GIN index (migration 0007), not three ORed together.
        roles = func.smartcode_asset_units(
            Asset.owner_id, Asset.maintainer_id, Asset.supervisor_id, type_=ARRAY(BigInteger)
        )
        stmt = stmt.where(roles.contains(array([literal(flt.unit_id, BigInteger)])))
    if flt.bbox is not None:
        min_x, min_y, max_x, max_y = flt.bbox
        if min_x >= max_x or min_y >= max_y:
            raise InvalidInput(both("err.bbox"), field="bbox")
        envelope = func.ST_MakeEnvelope(min_x, min_y, max_x, max_y, STORAGE_SRID)
        # The every-class spatial index is on the metric twin (migration 0005): candidates come from there,
        # then the WGS84 boxes that meet the envelope are kept.
        near = literal_column("assets.geom_m").op("&&")(func.smartcode_metric_envelope(envelope))
        stmt = stmt.where(near, Asset.geom.op("&&")(envelope))
    if flt.in_use is not None:
        stmt = stmt.where(Asset.in_use == flt.in_use)
    if flt.state is not None:
        stmt = stmt.where(Asset.state == flt.state)
    if flt.batch_id is not None:
        stmt = stmt.where(Asset.batch_id == flt.batch_id)
    if flt.zone is not None:
        stmt = stmt.where(
            text(
                "EXISTS (SELECT 1 FROM zones z WHERE z.name = :zone_name AND z.valid_from <= now() "
                "AND (z.valid_to IS NULL OR z.valid_to > now()) AND ST_Intersects(z.geom, assets.geom))"
            ).bindparams(zone_name=flt.zone)
        )
    return stmt


def history(session: Session, code: str) -> list[dict[str, Any]]:
    """Every recorded version of an asset, oldest first, with who, when, why and what it was."""
    asset = get_by_code(session, code)
    return [_version_view(row) for row in _versions(session, asset)]


def _versions(session: Session, asset: Asset) -> list[AssetHistory]:
    """The replaced versions from ``asset_history`` and the current one, built from the asset row."""
    replaced = session.scalars(
        select(AssetHistory).where(AssetHistory.asset_id == asset.id).order_by(AssetHistory.version)
    ).all()
    data = session.scalar(
        text(f"SELECT {_data_expression(session)} FROM assets n WHERE n.id = :id"), {"id": asset.id}
    )
    current = AssetHistory(
        asset_id=asset.id,
        version=asset.version,
        recorded_at=asset.changed_at,
        actor=asset.changed_by,
        reason=asset.change_reason,
        action=asset.change_action,
        batch_id=asset.batch_id,
        dispute_id=asset.change_dispute_id,
        data=data,
        geom=asset.geom,
    )
    return [*replaced, current]


def _data_expression(session: Session) -> str:
    # The same JSON the update trigger records for a replaced version (migration 0003 defines it).
    return str(session.scalar(text("SELECT assets_history_data_sql()")))


def _version_view(row: AssetHistory) -> dict[str, Any]:
    return {
        "version": row.version,
        "recorded_at": row.recorded_at.isoformat(),
        "actor": row.actor,
        "reason": row.reason,
        "action": row.action,
        "batch_id": row.batch_id,
        "dispute_id": row.dispute_id,
        "data": row.data,
        "geometry": mapping(to_shape(row.geom)),
    }


@dataclass(frozen=True)
class _Period:
    owner_id: int | None
    maintainer_id: int | None
    supervisor_id: int | None
    valid_from: dt.datetime | None  # None: since unknown
    valid_to: dt.datetime | None  # None: still current
    recorded_at: dt.datetime | None  # the change that began the period
    actor: str | None
    reason: str | None


def _periods(session: Session, asset: Asset) -> list[_Period]:
    """The asset's responsibility periods, oldest first: the closed ones and the current one.

    Each is shown with the change that began it: the asset's registration for the first, the
    change that closed the one before for the others.
    """
    closed = session.execute(
        select(
            AssetResponsibility.owner_id,
            AssetResponsibility.maintainer_id,
            AssetResponsibility.supervisor_id,
            func.nullif(AssetResponsibility.valid_from, _MINUS_INFINITY),
            AssetResponsibility.valid_to,
            AssetResponsibility.recorded_at,
            AssetResponsibility.actor,
            AssetResponsibility.reason,
        )
        .where(AssetResponsibility.asset_id == asset.id)
        .order_by(AssetResponsibility.valid_from)
    ).all()
    # The first version's record: the oldest replaced one, or the asset row if it never changed.
    first = session.execute(
        select(AssetHistory.recorded_at, AssetHistory.actor, AssetHistory.reason)
        .where(AssetHistory.asset_id == asset.id)
        .order_by(AssetHistory.version)
        .limit(1)
    ).first()
    began: tuple[dt.datetime | None, str | None, str | None] = (
        (first.recorded_at, first.actor, first.reason)
        if first is not None
        else (asset.changed_at, asset.changed_by, asset.change_reason)
    )
    periods = []
    for owner, maintainer, supervisor, start, end, closed_at, closed_by, why in closed:
        periods.append(_Period(owner, maintainer, supervisor, start, end, *began))
        began = (closed_at, closed_by, why)
    start = session.scalar(select(_current_period_start(asset)))
    periods.append(_Period(asset.owner_id, asset.maintainer_id, asset.supervisor_id, start, None, *began))
    return periods


def responsibility_periods(session: Session, code: str) -> list[dict[str, Any]]:
    """The asset's responsibility periods, oldest first."""
    asset = get_by_code(session, code)
    return [_period_view(session, period) for period in _periods(session, asset)]


def _period_view(session: Session, period: _Period) -> dict[str, Any]:
    def unit(unit_id: int | None) -> dict[str, Any] | None:
        return unit_service.unit_summary(session.get(Unit, unit_id) if unit_id else None)

    return {
        "valid_from": _iso(period.valid_from),
        "valid_to": _iso(period.valid_to),
        "owner": unit(period.owner_id),
        "maintainer": unit(period.maintainer_id),
        "supervisor": unit(period.supervisor_id),
        "recorded_at": _iso(period.recorded_at),
        "actor": period.actor,
        "reason": period.reason,
    }


def as_of(session: Session, code: str, at: dt.datetime) -> dict[str, Any]:
    """Who was responsible for the asset at ``at``, and what the registry recorded about it then."""
    if at.tzinfo is None:
        raise InvalidInput(both("err.time.zone", field="at"), field="at")
    asset = get_by_code(session, code)
    period = next(
        (
            p
            for p in _periods(session, asset)
            if (p.valid_from is None or p.valid_from <= at) and (p.valid_to is None or at < p.valid_to)
        ),
        None,
    )
    recorded = next((v for v in reversed(_versions(session, asset)) if v.recorded_at <= at), None)
    return {
        "code": asset.code,
        "at": at.isoformat(),
        "responsibility": _period_view(session, period) if period else None,
        "recorded_version": recorded.version if recorded else None,
        "recorded": recorded.data if recorded else None,
    }
