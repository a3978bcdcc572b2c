"""The life of printed QR labels: which assets get one, reprints, revocation, and what a scan proves.

An asset has at most one live label, identified by its edition (1, 2, ...). Printing an asset again
prints its live label again: the same key id and edition, hence the same URL, even after the current
key was rotated. A new edition is issued only when there is no live label: never printed, revoked
(replaced, stolen, counterfeit, damaged), or its key was retired from the key file. Decommissioned
assets get no new labels.

``label_status`` is what the scan page asks: is this (code, signature) a label we issued and still
stand behind? The signature check itself is in ``qr.signing``; revocation and decommissioning are here,
because only the database knows them.
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Integer, String, Text, func, insert, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from common.errors import Conflict, Forbidden, InvalidInput, NotFound
from qr.sheets import LabelContent
from qr.signing import LabelKeys, LabelVerdict, sign, verify
from registry import audit
from registry.codes import SmartCode, parse_code
from registry.db import Actor
from registry.models import Base

REVOKE_KINDS = ("replaced", "stolen", "counterfeit", "damaged", "key_retired", "other")
# Printing is serialised (it takes a transaction-scoped advisory lock) so that two print runs for the
# same asset cannot both issue a first edition; any 64-bit number unique to this purpose will do.
_PRINT_LOCK = 0x5C_1ABE15
_MAX_NAMED_CODES = 100_000


class LabelIssue(Base):
    """One edition of an asset's label: how it was signed, when and by whom; revoked or live."""

    __tablename__ = "label_issues"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    asset_id: Mapped[int] = mapped_column(BigInteger)
    code: Mapped[str] = mapped_column(String(17))
    edition: Mapped[int] = mapped_column(Integer)
    key_id: Mapped[str] = mapped_column(Text)
    signature: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    actor: Mapped[str] = mapped_column(Text)
    printed_count: Mapped[int] = mapped_column(Integer, server_default="1")
    last_printed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_by: Mapped[str | None] = mapped_column(Text)
    revoke_kind: Mapped[str | None] = mapped_column(Text)
    revoke_reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (CheckConstraint("edition >= 1", name="label_issues_edition_positive"),)


class LabelStatus(enum.StrEnum):
    """The verdict on a scanned label, in the order it is decided (see ``label_status``)."""

    VALID = "valid"
    FAILED = "failed"
    REVOKED = "revoked"
    DECOMMISSIONED = "decommissioned"
    UNSIGNED = "unsigned"

    @property
    def words(self) -> str:
        """The verdict as the scan page says it."""
        return _WORDS[self]


_WORDS = {
    LabelStatus.VALID: "标签有效",
    LabelStatus.FAILED: "标签未通过验证",
    LabelStatus.REVOKED: "标签已作废",
    LabelStatus.DECOMMISSIONED: "已注销",
    LabelStatus.UNSIGNED: "未经标签验证（手输编码）",
}


@dataclass(frozen=True)
class LabelCheck:
    """What ``label_status`` found: the status, the asset's code, and the details behind it."""

    status: LabelStatus
    code: str  # the 17 plain digits
    key_id: str | None = None
    edition: int | None = None
    revoked_at: dt.datetime | None = None
    revoke_kind: str | None = None
    decommissioned_at: dt.datetime | None = None
    reason: str = ""

    @property
    def words(self) -> str:
        """The verdict in words (标签有效, 标签未通过验证, 标签已作废, 已注销, ...)."""
        return self.status.words


def label_status(session: Session, code: str, signature: str | None, *, keys: LabelKeys) -> LabelCheck:
    """The verdict on a scan of ``code`` with ``signature`` (None or empty: a typed code).

    Decided in this order: a signature that does not verify is ``failed`` (counterfeit or damaged);
    a decommissioned asset is ``decommissioned``; a verified label whose edition was revoked is
    ``revoked``; no signature is ``unsigned``; otherwise ``valid``. An unknown or malformed code raises
    ``NotFound`` / ``InvalidCode`` like any lookup by code.
    """
    digits = str(parse_code(code, allow_identifier=False))
    asset = session.execute(
        text("SELECT id, in_use, decommissioned_at FROM assets WHERE code = :c"), {"c": digits}
    ).first()
    if asset is None:
        raise NotFound(f"code {parse_code(digits).formatted} is not registered", code=digits)
    verdict = verify(digits, signature, keys)
    if verdict.status is LabelVerdict.FAILED:
        return LabelCheck(LabelStatus.FAILED, digits, verdict.key_id, verdict.edition, reason=verdict.reason)
    if not asset.in_use:
        return LabelCheck(
            LabelStatus.DECOMMISSIONED,
            digits,
            verdict.key_id,
            verdict.edition,
            decommissioned_at=asset.decommissioned_at,
            reason="the asset was decommissioned",
        )
    if verdict.status is LabelVerdict.MISSING:
        return LabelCheck(LabelStatus.UNSIGNED, digits, reason=verdict.reason)
    revoked = session.execute(
        text(
            "SELECT revoked_at, revoke_kind FROM label_issues "
            "WHERE code = :c AND edition = :e AND revoked_at IS NOT NULL"
        ),
        {"c": digits, "e": verdict.edition},
    ).first()
    if revoked is not None:
        return LabelCheck(
            LabelStatus.REVOKED,
            digits,
            verdict.key_id,
            verdict.edition,
            revoked_at=revoked.revoked_at,
            revoke_kind=revoked.revoke_kind,
            reason=f"this label was revoked ({revoked.revoke_kind})",
        )
    return LabelCheck(LabelStatus.VALID, digits, verdict.key_id, verdict.edition)


# --- choosing assets --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelSelection:
    """Which assets to label; the criteria combine with AND and at least one is required."""

    zone: str | None = None  # a zone's name (current version); assets meeting its area
    zone_level: str | None = None
    class_codes: tuple[str, ...] = ()
    unit_id: int | None = None  # as owner, maintainer or supervisor
    batch_id: int | None = None  # the import batch that last wrote the asset
    codes: tuple[str, ...] = ()  # any form parse_code accepts

    def is_empty(self) -> bool:
        """True when no criterion was given (printing the whole registry is never what was meant)."""
        return not (self.zone or self.class_codes or self.unit_id or self.batch_id or self.codes)


@dataclass(frozen=True, slots=True)
class LabelAsset:
    """What a label shows of its asset."""

    asset_id: int
    code: str
    printed_code: str
    class_name: str
    owner_name: str | None
    phone: str | None
    owner_id: int | None
    maintainer_id: int | None
    in_use: bool
    decommissioned_at: dt.datetime | None


_SELECT = """
SELECT a.id, a.code, a.county_code, a.class_code, a.serial, a.in_use, a.decommissioned_at,
       a.owner_id, a.maintainer_id, coalesce(c.name, a.class_code) AS class_name,
       o.name AS owner_name, coalesce(o.phone, m.phone, s.phone) AS phone
FROM assets a
LEFT JOIN component_classes c ON c.code = a.class_code
LEFT JOIN units o ON o.id = a.owner_id
LEFT JOIN units m ON m.id = a.maintainer_id
LEFT JOIN units s ON s.id = a.supervisor_id
"""


def _parse_codes(codes: Iterable[str]) -> list[str]:
    parsed: list[str] = []
    for index, raw in enumerate(codes, start=1):
        try:
            parsed.append(str(parse_code(raw, allow_identifier=False)))
        except InvalidInput as exc:
            raise type(exc)(f"code #{index}: {exc}", **exc.details) from None
    if len(parsed) > _MAX_NAMED_CODES:
        raise InvalidInput(f"at most {_MAX_NAMED_CODES} codes at once, got {len(parsed)}", field="codes")
    return list(dict.fromkeys(parsed))


def select_assets(session: Session, selection: LabelSelection, actor: Actor) -> list[LabelAsset]:
    """The assets a selection names, ordered by code; a unit's token sees only its own assets.

    Assets chosen by criteria leave the decommissioned ones out; codes named one by one are all
    returned (``issue_labels`` refuses the decommissioned among them with a clear message).
    """
    if selection.is_empty():
        raise InvalidInput(
            "choose assets to label: a zone, class, unit, import batch or codes", field="selection"
        )
    if not actor.admin and actor.unit_id is None:
        raise Forbidden("only an administrator or a unit's token may print labels")
    where: list[str] = []
    params: dict[str, Any] = {}
    if selection.codes:
        params["codes"] = _parse_codes(selection.codes)
        where.append("a.code = ANY(:codes)")
    else:
        where.append("a.in_use")
    if selection.class_codes:
        where.append("a.class_code = ANY(:classes)")
        params["classes"] = list(selection.class_codes)
    if selection.unit_id is not None:
        where.append("(a.owner_id = :unit OR a.maintainer_id = :unit OR a.supervisor_id = :unit)")
        params["unit"] = selection.unit_id
    if selection.batch_id is not None:
        where.append("a.batch_id = :batch")
        params["batch"] = selection.batch_id
    if selection.zone:
        params["zone"] = selection.zone.strip()
        params["level"] = selection.zone_level
        zone_filter = (
            "z.name = :zone AND (CAST(:level AS text) IS NULL OR z.level = :level) "
            "AND z.valid_from <= now() AND (z.valid_to IS NULL OR z.valid_to > now())"
        )
        if (
            session.execute(text(f"SELECT 1 FROM zones z WHERE {zone_filter} LIMIT 1"), params).first()
            is None
        ):
            raise NotFound(f"no current zone named {selection.zone!r}", zone=selection.zone)
        where.append(
            f"EXISTS (SELECT 1 FROM zones z WHERE {zone_filter} AND z.geom && a.geom "
            "AND ST_Intersects(z.geom, a.geom))"
        )
    rows = session.execute(text(f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY a.code"), params).all()
    if selection.codes:
        missing = sorted(set(params["codes"]) - {row.code for row in rows})
        if missing:
            shown = ", ".join(parse_code(c).formatted for c in missing[:10])
            raise NotFound(f"{len(missing)} code(s) not registered: {shown}", codes=missing[:10])
    assets = [_label_asset(row) for row in rows]
    if not actor.admin:
        foreign = [a for a in assets if actor.unit_id not in (a.owner_id, a.maintainer_id)]
        if selection.codes and foreign:
            shown = ", ".join(a.printed_code for a in foreign[:10])
            raise Forbidden(f"only the owner or maintainer may print these labels: {shown}")
        assets = [a for a in assets if actor.unit_id in (a.owner_id, a.maintainer_id)]
    return assets


def _label_asset(row: Any) -> LabelAsset:
    return LabelAsset(
        asset_id=row.id,
        code=row.code,
        printed_code=SmartCode(row.county_code, row.class_code, row.serial).formatted,
        class_name=row.class_name,
        owner_name=row.owner_name,
        phone=row.phone,
        owner_id=row.owner_id,
        maintainer_id=row.maintainer_id,
        in_use=row.in_use,
        decommissioned_at=row.decommissioned_at,
    )


# --- issuing and reprinting ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuedLabel:
    """One label to print: its asset, the URL it encodes, and whether this print issued it."""

    asset: LabelAsset
    url: str
    key_id: str
    edition: int
    signature: str
    new: bool


def issue_labels(
    session: Session, assets: Sequence[LabelAsset], actor: Actor, *, keys: LabelKeys, base_url: str
) -> list[IssuedLabel]:
    """The labels of ``assets``: live ones again, new editions where there is none; records the print.

    Raises ``Conflict`` naming the decommissioned assets among them (they get no new labels).
    """
    dead = [a for a in assets if not a.in_use]
    if dead:
        shown = ", ".join(a.printed_code for a in dead[:10])
        raise Conflict(
            f"已注销的部件不再打印标签 / {len(dead)} decommissioned asset(s) get no new labels: {shown}",
            codes=[a.code for a in dead[:10]],
        )
    if not assets:
        return []
    session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PRINT_LOCK})
    ids = [a.asset_id for a in assets]
    live = {
        row.asset_id: row
        for row in session.execute(
            text(
                "SELECT id, asset_id, edition, key_id, signature FROM label_issues "
                "WHERE asset_id = ANY(:ids) AND revoked_at IS NULL"
            ),
            {"ids": ids},
        )
    }
    retired = [row.id for row in live.values() if row.key_id not in keys.keys]
    if retired:
        # A label signed with a key no longer in the key file fails every scan: withdraw it, print anew.
        session.execute(
            text(
                "UPDATE label_issues SET revoked_at = now(), revoked_by = :by, revoke_kind = 'key_retired', "
                "revoke_reason = 'its signing key was retired' WHERE id = ANY(:ids)"
            ),
            {"ids": retired, "by": actor.name},
        )
        live = {k: v for k, v in live.items() if v.id not in retired}
    last_edition: dict[int, int] = {
        asset_id: edition
        for asset_id, edition in session.execute(
            text(
                "SELECT asset_id, max(edition) FROM label_issues WHERE asset_id = ANY(:ids) GROUP BY asset_id"
            ),
            {"ids": ids},
        ).tuples()
    }
    labels: list[IssuedLabel] = []
    new_rows: list[dict[str, Any]] = []
    base = base_url.rstrip("/")
    for asset in assets:
        row = live.get(asset.asset_id)
        if row is not None:
            key_id, edition, signature, new = row.key_id, row.edition, row.signature, False
        else:
            key_id, edition = keys.current, last_edition.get(asset.asset_id, 0) + 1
            signature, new = sign(asset.code, keys, key_id=key_id, edition=edition), True
            new_rows.append(
                {
                    "asset_id": asset.asset_id,
                    "code": asset.code,
                    "edition": edition,
                    "key_id": key_id,
                    "signature": signature,
                    "actor": actor.name,
                }
            )
        labels.append(
            IssuedLabel(asset, f"{base}/c/{asset.code}?s={signature}", key_id, edition, signature, new)
        )
    if new_rows:
        session.execute(insert(LabelIssue), new_rows)
    if live:
        session.execute(
            text(
                "UPDATE label_issues SET printed_count = printed_count + 1, last_printed_at = now() "
                "WHERE id = ANY(:ids)"
            ),
            {"ids": [row.id for row in live.values()]},
        )
    audit.record(
        session,
        actor,
        "print",
        "labels",
        len(labels),
        details={
            "labels": len(labels),
            "new": len(new_rows),
            "reprinted": len(live),
            "key_retired": len(retired),
            "codes": [label.asset.code for label in labels[:20]],
        },
    )
    return labels


# --- revocation ------------------------------------------------------------------------------------


def revoke_label(
    session: Session, code: str, actor: Actor, *, kind: str, reason: str, edition: int | None = None
) -> dict[str, Any]:
    """Withdraw an asset's live label (or a given edition): every copy of it then scans as revoked."""
    if kind not in REVOKE_KINDS or kind == "key_retired":
        allowed = ", ".join(k for k in REVOKE_KINDS if k != "key_retired")
        raise InvalidInput(f"kind must be one of {allowed}, got {kind!r}", field="kind")
    if not reason or not reason.strip():
        raise InvalidInput("say why the label is revoked (reason)", field="reason")
    digits = str(parse_code(code, allow_identifier=False))
    asset = session.execute(
        text("SELECT id, owner_id, maintainer_id FROM assets WHERE code = :c"), {"c": digits}
    ).first()
    if asset is None:
        raise NotFound(f"code {parse_code(digits).formatted} is not registered", code=digits)
    if not actor.admin and (
        actor.unit_id is None or actor.unit_id not in (asset.owner_id, asset.maintainer_id)
    ):
        raise Forbidden("only the owner or maintainer unit, or an administrator, may revoke this label")
    condition = "edition = :e" if edition is not None else "revoked_at IS NULL"
    row = session.execute(
        text(f"SELECT id, edition, revoked_at FROM label_issues WHERE code = :c AND {condition} FOR UPDATE"),
        {"c": digits, "e": edition},
    ).first()
    if row is None:
        what = f"edition {edition}" if edition is not None else "a live label"
        raise NotFound(f"asset {parse_code(digits).formatted} has no {what} to revoke", code=digits)
    if row.revoked_at is not None:
        raise Conflict(f"label edition {row.edition} of {parse_code(digits).formatted} is already revoked")
    session.execute(
        text(
            "UPDATE label_issues SET revoked_at = now(), revoked_by = :by, revoke_kind = :kind, "
            "revoke_reason = :reason WHERE id = :id"
        ),
        {"id": row.id, "by": actor.name, "kind": kind, "reason": reason.strip()},
    )
    audit.record(
        session, actor, "revoke", "label", f"{digits}#{row.edition}", reason.strip(), details={"kind": kind}
    )
    return _edition_view(session, digits, row.edition)


def _issue_view(row: Any) -> dict[str, Any]:
    return {
        "code": row.code,
        "edition": row.edition,
        "key_id": row.key_id,
        "issued_at": row.issued_at.isoformat(),
        "issued_by": row.actor,
        "printed_count": row.printed_count,
        "last_printed_at": row.last_printed_at.isoformat(),
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
        "revoked_by": row.revoked_by,
        "revoke_kind": row.revoke_kind,
        "revoke_reason": row.revoke_reason,
    }


_ISSUE_COLUMNS = (
    "code, edition, key_id, issued_at, actor, printed_count, last_printed_at, revoked_at, revoked_by, "
    "revoke_kind, revoke_reason"
)


def _edition_view(session: Session, digits: str, edition: int) -> dict[str, Any]:
    row = session.execute(
        text(f"SELECT {_ISSUE_COLUMNS} FROM label_issues WHERE code = :c AND edition = :e"),
        {"c": digits, "e": edition},
    ).one()
    return _issue_view(row)


def label_history(session: Session, code: str) -> list[dict[str, Any]]:
    """Every edition of an asset's label, oldest first (the signature itself is not shown)."""
    digits = str(parse_code(code, allow_identifier=False))
    rows = session.execute(
        text(f"SELECT {_ISSUE_COLUMNS} FROM label_issues WHERE code = :c ORDER BY edition"), {"c": digits}
    ).all()
    return [_issue_view(row) for row in rows]


def label_contents(labels: Sequence[IssuedLabel]) -> list[LabelContent]:
    """What each issued label prints (for ``qr.sheets``)."""
    return [
        LabelContent(
            url=label.url,
            printed_code=label.asset.printed_code,
            class_name=label.asset.class_name,
            owner=label.asset.owner_name,
            phone=label.asset.phone,
        )
        for label in labels
    ]


def read_code_list(text_content: str) -> list[str]:
    """Codes from a file's text: one per line, or an export CSV with a ``code`` column."""
    lines = [line for line in text_content.lstrip("\ufeff").splitlines() if line.strip()]
    if not lines:
        return []
    header = [cell.strip().strip('"').lower() for cell in next(csv.reader([lines[0]]))]
    if "code" in header:
        column = header.index("code")
        codes = []
        for number, row in enumerate(csv.reader(lines[1:]), start=2):
            if len(row) <= column or not row[column].strip():
                raise InvalidInput(f"line {number} has no code", field="codes")
            codes.append(row[column].strip())
        return codes
    return [line.strip() for line in lines if not line.lstrip().startswith("#")]
