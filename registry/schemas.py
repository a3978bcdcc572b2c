"""Input shapes of the domain services (pydantic, so the API and the CLI validate alike)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from registry.limits import MAX_LIST_ITEMS, MAX_NOTE_CHARS, MAX_TEXT_CHARS, check_attributes
from registry.models import ASSET_STATES, UNIT_KINDS

UnitKind = Literal[
    "government",
    "street_office",
    "community",
    "utility",
    "telecom",
    "property_manager",
    "contractor",
    "enterprise",
    "other",
]
AssetState = Literal["完好", "破损", "丢失", "占用"]
GeometryKind = Literal["point", "line", "polygon"]
assert set(UnitKind.__args__) == set(UNIT_KINDS)  # type: ignore[attr-defined]
assert set(AssetState.__args__) == set(ASSET_STATES)  # type: ignore[attr-defined]

# Why responsibility or a unit's record changes: kept in history and the audit log for good, so it is
# required where a change moves responsibility (hand-over, decommissioning, a unit's record); blank or
# one-character text says nothing.
Reason = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=2, max_length=2000),
    Field(description="why (变更原因): kept in the history for good"),
]


_CHINA = ZoneInfo("Asia/Shanghai")


def _not_in_future(value: dt.date | None) -> dt.date | None:
    # A typo such as 2091 would later make every hand-over of the asset look backdated.
    if value is not None and value > dt.datetime.now(_CHINA).date():
        raise ValueError(f"installation date {value.isoformat()} is in the future")
    return value


def _note() -> Any:
    """An optional note or reason, at most MAX_NOTE_CHARS characters."""
    return Field(default=None, max_length=MAX_NOTE_CHARS)


def _short() -> Any:
    """An optional short text (a source, a phone number), at most MAX_TEXT_CHARS characters."""
    return Field(default=None, max_length=MAX_TEXT_CHARS)


def _aliases() -> Any:
    """A list of aliases, at most MAX_LIST_ITEMS of them."""
    return Field(default_factory=list, max_length=MAX_LIST_ITEMS)


def _short_items(value: list[str] | None) -> list[str] | None:
    if value is not None and any(len(item) > MAX_TEXT_CHARS for item in value):
        raise ValueError(f"an alias is longer than {MAX_TEXT_CHARS} characters")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # PostgreSQL text cannot hold NUL; say so as a validation error instead of failing in the database.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("text must not contain NUL characters")
        return value


class UnitCreate(_Strict):
    """A new unit (单位)."""

    name: str = Field(min_length=2, max_length=200)
    kind: UnitKind = "other"
    aliases: list[str] = _aliases()
    credit_code: str | None = Field(
        default=None, max_length=64, description="统一社会信用代码, 18 characters (GB 32100)"
    )
    phone: str | None = _short()
    parent_id: int | None = None
    verified: bool = False
    note: str | None = _note()

    _aliases_short = field_validator("aliases")(_short_items)


class UnitUpdate(_Strict):
    """Changes to a unit; ``version`` must be the version the caller read."""

    version: int
    name: str | None = Field(default=None, min_length=2, max_length=200)
    kind: UnitKind | None = None
    aliases: list[str] | None = Field(default=None, max_length=MAX_LIST_ITEMS)
    credit_code: str | None = Field(default=None, max_length=64)
    phone: str | None = _short()
    parent_id: int | None = None
    verified: bool | None = None
    note: str | None = _note()
    reason: Reason

    _aliases_short = field_validator("aliases")(_short_items)


class ClassCreate(_Strict):
    """A local component class added by a deployment (e.g. 架空线缆)."""

    code: str = Field(pattern=r"^[0-9]{4}$")
    name: str = Field(min_length=1, max_length=100)
    big_name: str = Field(min_length=1, max_length=100)
    geometry_type: GeometryKind
    aliases: list[str] = _aliases()
    note: str | None = _note()
    scheme_version: str = Field(default="local", max_length=MAX_TEXT_CHARS)

    _aliases_short = field_validator("aliases")(_short_items)


class AssetCreate(_Strict):
    """A new asset. ``geometry`` is GeoJSON in WGS84 lon/lat (convert other CRSs before)."""

    class_code: str = Field(pattern=r"^[0-9]{4}$")
    geometry: dict[str, Any]
    code: str | None = Field(
        default=None,
        max_length=64,
        description="an existing 16-digit identifier or 17-digit code; allocated when empty",
    )
    owner_id: int | None = None
    maintainer_id: int | None = None
    supervisor_id: int | None = None
    state: AssetState = "完好"
    grid_code: str | None = Field(default=None, max_length=32)
    data_source: str | None = _short()
    address: str | None = _note()
    note: str | None = _note()
    installed_on: dt.date | None = None
    attributes: dict[str, Any] = Field(
        default_factory=dict, description="free attributes, at most 64 KiB as JSON"
    )
    source_id: str | None = _short()
    reason: str | None = _note()

    _installed_not_in_future = field_validator("installed_on")(_not_in_future)
    _attributes_fit = field_validator("attributes")(check_attributes)

    @field_validator("grid_code")
    @classmethod
    def _grid_digits(cls, value: str | None) -> str | None:
        # Grid codes are 14 or 15 digits in the field, sometimes other lengths: digits only, any length.
        if value is not None and not value.isdigit():
            raise ValueError("grid code must be digits")
        return value


class AssetUpdate(_Strict):
    """Changes to an asset's description; ``version`` must be the version the caller read."""

    version: int
    geometry: dict[str, Any] | None = None
    state: AssetState | None = None
    grid_code: str | None = Field(default=None, max_length=32)
    data_source: str | None = _short()
    address: str | None = _note()
    note: str | None = _note()
    installed_on: dt.date | None = None
    attributes: dict[str, Any] | None = None
    reason: str | None = _note()

    _installed_not_in_future = field_validator("installed_on")(_not_in_future)
    _attributes_fit = field_validator("attributes")(check_attributes)


class UnitsChange(_Strict):
    """A change of responsible units, effective from a date (default now)."""

    version: int
    owner_id: int | None = None
    maintainer_id: int | None = None
    supervisor_id: int | None = None
    effective_at: dt.datetime | None = None
    reason: Reason


class Decommission(_Strict):
    """Taking an asset out of use (注销)."""

    version: int
    reason: Reason
    at: dt.datetime | None = None


class ComplaintCreate(_Strict):
    """A complaint (诉求) posted by the case system or another API client: a code, a location, or both."""

    source: Literal["case_system", "api"] = Field(
        default="api", description="case_system: the 12345 case system; api: any other client"
    )
    external_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_TEXT_CHARS,
        description="the sender's own case id; posting it again for the same source is refused (409)",
    )
    category: str | None = Field(
        default=None, max_length=MAX_TEXT_CHARS, description="案件类别, e.g. 路灯不亮"
    )
    code: str | None = Field(default=None, max_length=MAX_TEXT_CHARS, description="the scanned asset code")
    x: float | None = Field(default=None, allow_inf_nan=False, description="longitude or easting")
    y: float | None = Field(default=None, allow_inf_nan=False, description="latitude or northing")
    crs: str = Field(
        default="wgs84", max_length=MAX_TEXT_CHARS, description="wgs84, gcj02, bd09, cgcs2000 or EPSG:n"
    )
    accuracy_m: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    reported_at: dt.datetime | None = Field(
        default=None, description="when it happened (resolved as of then); without a zone: local time"
    )
    description: str = Field(default="", max_length=4000)
    address: str | None = _short()
    reporter: dict[
        Literal["name", "phone", "email"], Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]
    ] = Field(default_factory=dict, description="the reporter's contact (never shown to the public)")


class ComplaintStatusChange(_Strict):
    """A status update of a complaint from the case system or the unit it was routed to."""

    status: Literal["accepted", "returned", "closed"] = Field(
        description="accepted 签收, returned 退件 (not this unit's: reason required), closed 办结"
    )
    reason: str | None = Field(default=None, max_length=2000, description="why (required for returned)")
    version: int | None = Field(
        default=None, description="the version you read; or send it as If-Match. One of the two is required"
    )
    unit_id: int | None = Field(
        default=None, description="the unit that accepts or returns (the case system speaking for it)"
    )
