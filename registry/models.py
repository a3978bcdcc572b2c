"""SQLAlchemy models of the registry. The schema itself is owned by the Alembic migrations.

Storage: geometries in EPSG:4326 (WGS84 lon/lat; CGCS2000 coincides to centimetres) in ``geom``.
The database also keeps ``assets.geom_m``, a generated column in the deployment's metric SRID
(default EPSG:4547), so distances are metres and nearest-asset queries are index-backed; it is
computed by PostGIS and deliberately not mapped here.
The asset row holds its current version and who recorded it (``changed_by``, ``changed_at``,
``change_reason``, ``change_action``, ``batch_id``) and since when its units are responsible
(``responsible_since``), and which upheld dispute made it (``change_dispute_id``); those columns
default from the transaction's change context (see ``registry.db.set_change_context``). Replaced
versions (``asset_history``) and closed responsibility periods (``asset_responsibility``) are
written by the update trigger, so no write path can skip them. References from assets to units
and classes are checked once per statement by a trigger (migration 0004), not by per-row foreign
keys.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    FetchedValue,
    ForeignKey,
    Integer,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

STORAGE_SRID = 4326

UNIT_KINDS = (
    "government",  # 主管部门 / 政府职能部门
    "street_office",  # 街道办事处
    "community",  # 社区工作站
    "utility",  # 供电、供水、燃气等公用事业企业
    "telecom",  # 通信运营商、铁塔公司
    "property_manager",  # 物业服务企业
    "contractor",  # 养护作业单位
    "enterprise",  # 其他企业
    "other",
)
ASSET_STATES = ("完好", "破损", "丢失", "占用")
GEOMETRY_KINDS = ("point", "line", "polygon")


class Base(DeclarativeBase):
    """Declarative base of every registry table."""


class Unit(Base):
    """单位: an owner, maintainer or supervising department or company."""

    __tablename__ = "units"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    aliases: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    kind: Mapped[str] = mapped_column(String(32), default="other")
    credit_code: Mapped[str | None] = mapped_column(String(18), unique=True)
    phone: Mapped[str | None] = mapped_column(Text)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"))
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    county_code: Mapped[str] = mapped_column(String(6))
    note: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (CheckConstraint(f"kind IN {UNIT_KINDS}", name="units_kind_known"),)


class ComponentClass(Base):
    """A component class (部件小类), national or local, with the geometry type its assets must have."""

    __tablename__ = "component_classes"

    code: Mapped[str] = mapped_column(String(4), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    big_code: Mapped[str] = mapped_column(String(2))
    big_name: Mapped[str] = mapped_column(Text)
    geometry_type: Mapped[str] = mapped_column(String(8))
    scheme: Mapped[str] = mapped_column(Text)
    scheme_version: Mapped[str] = mapped_column(Text)
    aliases: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    note: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    retired_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Asset(Base):
    """部件: one registered city component with its smart code, geometry and responsible units."""

    __tablename__ = "assets"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code: Mapped[str] = mapped_column(String(17), unique=True)
    county_code: Mapped[str] = mapped_column(String(6))
    class_code: Mapped[str] = mapped_column(String(4))
    serial: Mapped[int] = mapped_column(Integer)
    geom: Mapped[Any] = mapped_column(Geometry(srid=STORAGE_SRID, spatial_index=False))
    owner_id: Mapped[int | None] = mapped_column(BigInteger)
    maintainer_id: Mapped[int | None] = mapped_column(BigInteger)
    supervisor_id: Mapped[int | None] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(Text, default="完好")
    in_use: Mapped[bool] = mapped_column(Boolean, default=True)
    decommissioned_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    decommission_reason: Mapped[str | None] = mapped_column(Text)
    grid_code: Mapped[str | None] = mapped_column(Text)
    data_source: Mapped[str | None] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    installed_on: Mapped[dt.date | None] = mapped_column(Date)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    source_id: Mapped[str | None] = mapped_column(Text)
    batch_id: Mapped[int | None] = mapped_column(BigInteger, server_default=FetchedValue())
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    changed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    changed_by: Mapped[str] = mapped_column(Text, server_default=FetchedValue())
    change_reason: Mapped[str | None] = mapped_column(Text, server_default=FetchedValue())
    change_action: Mapped[str] = mapped_column(Text, server_default=FetchedValue())
    change_dispute_id: Mapped[int | None] = mapped_column(BigInteger, server_default=FetchedValue())
    responsible_since: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), server_default=FetchedValue()
    )
    version: Mapped[int] = mapped_column(Integer, default=1)


class AssetHistory(Base):
    """A replaced version of an asset as it was recorded, with who recorded it, when and why."""

    __tablename__ = "asset_history"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"))
    version: Mapped[int] = mapped_column(Integer)
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    batch_id: Mapped[int | None] = mapped_column(BigInteger)
    dispute_id: Mapped[int | None] = mapped_column(BigInteger)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    geom: Mapped[Any] = mapped_column(Geometry(srid=STORAGE_SRID, spatial_index=False))


class AssetResponsibility(Base):
    """A closed period during which an asset had a given owner, maintainer and supervisor.

    ``recorded_at``, ``actor`` and ``reason`` are those of the change that closed it.
    """

    __tablename__ = "asset_responsibility"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"))
    maintainer_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"))
    supervisor_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"))
    valid_from: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    valid_to: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)


class AuditLog(Base):
    """Every change to units, classes and other reference data, with who, when and why."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    actor: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    entity: Mapped[str] = mapped_column(Text)
    entity_id: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


class CodeSerial(Base):
    """The next free serial per county and class; its row lock serialises concurrent allocation."""

    __tablename__ = "code_serials"

    county_code: Mapped[str] = mapped_column(String(6), primary_key=True)
    class_code: Mapped[str] = mapped_column(String(4), primary_key=True)
    next_serial: Mapped[int] = mapped_column(Integer)


class ApiToken(Base):
    """A bearer token: ``admin`` writes anything, ``unit`` only its unit's assets, ``reader`` reads."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class ImportBatch(Base):
    """One inventory import: the file, how it was read, by whom, and what it did (counts, report)."""

    __tablename__ = "import_batches"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    county_code: Mapped[str] = mapped_column(String(6))
    file_name: Mapped[str] = mapped_column(Text)
    file_sha256: Mapped[str | None] = mapped_column(String(64))  # NULL while the import runs
    file_size: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str | None] = mapped_column(Text)
    profile: Mapped[str] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    actor: Mapped[str] = mapped_column(Text)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"))
    zone_id: Mapped[int | None] = mapped_column(BigInteger)
    zone_name: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="running")
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    counts: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)
    rolled_back_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    rolled_back_by: Mapped[str | None] = mapped_column(Text)


class Proposal(Base):
    """A change of responsibility a unit proposed and the receiving unit has to accept (migration 0010)."""

    __tablename__ = "responsibility_proposals"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    asset_id: Mapped[int] = mapped_column(BigInteger)  # no foreign key: see migration 0010
    kind: Mapped[str] = mapped_column(Text)  # hand_over | registration
    changes: Mapped[dict[str, Any]] = mapped_column(JSONB)  # role -> unit id, e.g. {"owner_id": 7}
    from_unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"))
    to_unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    effective_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, default="pending")
    proposed_by: Mapped[str] = mapped_column(Text)
    proposed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    decided_by: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    decision_note: Mapped[str | None] = mapped_column(Text)
