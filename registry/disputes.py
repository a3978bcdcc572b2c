"""Ownership disputes (异议): a unit objects to what the registry makes it responsible for.

The subject is an asset (by code: the unit is its owner or maintainer), a responsibility rule (by id:
the unit is the rule's) or a complaint's resolution (by reference: the unit the complaint was routed
to). States::

    open ──review──> under_review ──decide──> upheld   (the registry is corrected)
      │                   │          └──────> rejected (reason required; nothing changes)
      └────withdraw───────┴──> withdrawn (by the objecting unit, before a decision)

While open or under review, the objecting unit (or an administrator) may add evidence: the version
moves, the state does not, and the history records who added which files when.

Every change carries the version the caller read (a stale one is refused), is a row of the
append-only ``dispute_history`` (a trigger, migration 0018), an audit entry and an outbox event, all
in the caller's transaction: nothing here commits. An upheld dispute corrects the registry through
:mod:`registry.assets` (a hand-over of the disputed roles from a date, recorded in the asset's
history with the dispute's id) or :mod:`registry.rules` (the rule closed or replaced). The rows it
writes name the dispute in a column (migration 0027): the asset's new version (``dispute_id`` in its
history), the replacing rule's ``dispute_id`` and the ended rule's ``ended_by_dispute_id``.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.orm import Session

from common.errors import Conflict, Forbidden, InvalidInput, NotFound, StaleVersion
from common.settings import Settings, get_settings
from registry import assets as asset_service
from registry import audit, complaints, events
from registry import rules as rule_service
from registry import units as unit_service
from registry.access import Action, Actor, require, require_role

SubjectKind = Literal["asset", "rule", "complaint"]
SUBJECT_KINDS: tuple[str, ...] = ("asset", "rule", "complaint")
STATES: tuple[str, ...] = ("open", "under_review", "upheld", "rejected", "withdrawn")
PENDING = ("open", "under_review")
OUTCOMES = ("upheld", "rejected")
STATE_LABELS = {
    "open": "已提出",
    "under_review": "审核中",
    "upheld": "异议成立",
    "rejected": "驳回",
    "withdrawn": "已撤回",
}
SUBJECT_LABELS = {"asset": "设施", "rule": "职责规则", "complaint": "诉求分拨"}
ROLE_LABELS = {"owner": "权属单位", "maintainer": "养护单位", "unit": "规则责任单位"}
REASON_MAX = 2000
MIB = 1024 * 1024

_PDF = b"%PDF-"


# --- evidence ------------------------------------------------------------------------------------------


def evidence_type(data: bytes) -> str:
    """The MIME type of a JPEG, PNG or WebP photo or a PDF document, judged by its bytes."""
    if data.startswith(_PDF):
        return "application/pdf"
    try:
        return complaints.sniff_image(data)
    except InvalidInput:
        raise InvalidInput(
            "证据须为 JPEG、PNG、WebP 图片或 PDF 文档 / evidence must be a JPEG, PNG or WebP photo or a PDF "
            "document (judged by the file's content, not its name)",
            field="evidence",
        ) from None


@dataclass(frozen=True)
class Evidence:
    """An evidence file as received: its name (for people) and its bytes."""

    file_name: str
    data: bytes

    @property
    def sha256(self) -> str:
        """Hex digest of the bytes."""
        return hashlib.sha256(self.data).hexdigest()


def check_evidence(evidence: Evidence, *, max_bytes: int) -> str:
    """The content type of an evidence file after the checks: not empty, at most ``max_bytes``, known."""
    name = (evidence.file_name or "").strip()[:120] or "evidence"
    if not evidence.data:
        raise InvalidInput(f"证据文件 {name} 是空文件 / evidence file {name!r} is empty", field="evidence")
    if len(evidence.data) > max_bytes:
        raise InvalidInput(
            f"证据文件 {name} 超过 {max_bytes // MIB} MiB / evidence file {name!r} is larger than "
            f"{max_bytes // MIB} MiB",
            field="evidence",
            size=len(evidence.data),
        )
    try:
        return evidence_type(evidence.data)
    except InvalidInput as exc:
        raise InvalidInput(f"{name}: {exc.message}", field="evidence") from None


def _check_files(evidence: Sequence[Evidence], attached: int, settings: Settings) -> list[str]:
    """The content types of ``evidence`` after each file's checks and the per-dispute file cap,
    counting the ``attached`` files the dispute already has."""
    config = settings.disputes
    cap = config.evidence_max_files
    if attached + len(evidence) > cap:
        already = f"，已有 {attached} 个" if attached else ""
        has = f"; it has {attached} already" if attached else ""
        raise InvalidInput(
            f"每个异议证据最多 {cap} 个文件{already} / at most {cap} evidence files per dispute{has}",
            field="evidence",
            attached=attached,
            max_files=cap,
        )
    return [check_evidence(e, max_bytes=config.evidence_max_mib * MIB) for e in evidence]


def _store_evidence(
    session: Session,
    actor: Actor,
    dispute_id: int,
    evidence: Sequence[Evidence],
    types: Sequence[str],
    first_seq: int,
) -> list[dict[str, Any]]:
    """Insert the files numbered from ``first_seq``; what was stored (no bytes), for history and audit."""
    stored = []
    for seq, (item, content_type) in enumerate(zip(evidence, types, strict=True), start=first_seq):
        name = (item.file_name or "").strip()[:255] or f"evidence-{seq}"
        session.execute(
            text(
                "INSERT INTO dispute_evidence (dispute_id, seq, file_name, content_type, size_bytes, sha256, "
                "data, added_by) VALUES (:d, :seq, :name, :type, :size, :sha, :data, :actor)"
            ),
            {
                "d": dispute_id,
                "seq": seq,
                "name": name,
                "type": content_type,
                "size": len(item.data),
                "sha": item.sha256,
                "data": item.data,
                "actor": actor.name,
            },
        )
        stored.append(
            {
                "seq": seq,
                "file_name": name,
                "content_type": content_type,
                "size": len(item.data),
                "sha256": item.sha256,
            }
        )
    return stored


# --- deadlines -----------------------------------------------------------------------------------------


def due_on(
    opened_at: dt.datetime,
    working_days: int,
    timezone: str,
    holidays: frozenset[dt.date],
    workdays: frozenset[dt.date] = frozenset(),
) -> dt.date:
    """The last day (local date) of the review: ``working_days`` working days after the opening day.

    Counting starts the day after the dispute was opened in the deployment's time zone; Saturdays,
    Sundays and ``holidays`` are not working days, except the weekend days in ``workdays`` (调休:
    the Saturday worked to bridge a holiday). A dispute is overdue once that day has ended.
    """
    day = opened_at.astimezone(zoneinfo.ZoneInfo(timezone)).date()
    counted = 0
    while counted < working_days:
        day += dt.timedelta(days=1)
        if (day.weekday() < 5 or day in workdays) and day not in holidays:
            counted += 1
    return day


# --- subjects ------------------------------------------------------------------------------------------


@dataclass
class _Subject:
    """What a dispute is about, and which units it names in which roles."""

    kind: str
    subject_id: str
    named: dict[int, list[str]] = field(default_factory=dict)
    asset_code: str | None = None
    rule_id: int | None = None
    complaint_id: int | None = None
    class_code: str | None = None
    zone_level: str | None = None
    zone_name: str | None = None

    def name(self, unit_id: int | None, role: str) -> None:
        if unit_id is not None:
            self.named.setdefault(unit_id, []).append(role)

    @property
    def owner_id(self) -> int | None:
        """The first named unit (the policy's target is "owner or maintainer")."""
        ids = list(self.named)
        return ids[0] if ids else None

    @property
    def maintainer_id(self) -> int | None:
        """The second named unit, if any."""
        ids = list(self.named)
        return ids[1] if len(ids) > 1 else None

    def names(self, unit_id: int) -> bool:
        """Whether the subject names ``unit_id`` in some role."""
        return unit_id in self.named


_ZONE_SQL = """
SELECT z.level, z.name FROM zones z
WHERE z.valid_from <= now() AND (z.valid_to IS NULL OR z.valid_to > now()) AND ST_Intersects(z.geom, {geom})
ORDER BY ST_Area(z.geom), z.id LIMIT 1
"""


def _zone_of(session: Session, geom_sql: str, params: dict[str, Any]) -> tuple[str | None, str | None]:
    # The smallest zone valid now that meets the place: a community rather than its street.
    row = session.execute(text(_ZONE_SQL.format(geom=geom_sql)), params).first()
    return (row[0], row[1]) if row else (None, None)


def _asset_subject(session: Session, code: str) -> _Subject:
    asset = asset_service.get_by_code(session, code)
    subject = _Subject("asset", asset.code, asset_code=asset.code, class_code=asset.class_code)
    subject.name(asset.owner_id, "owner")
    subject.name(asset.maintainer_id, "maintainer")
    subject.zone_level, subject.zone_name = _zone_of(
        session, "(SELECT geom FROM assets WHERE code = :code)", {"code": asset.code}
    )
    return subject


def _rule_subject(session: Session, rule_ref: str) -> _Subject:
    if not rule_ref.strip().isdigit():
        raise InvalidInput(f"a rule is named by its id (a number), not {rule_ref!r:.40}", field="subject_id")
    rule = rule_service.get_rule(session, int(rule_ref.strip()))
    subject = _Subject("rule", str(rule["id"]), rule_id=rule["id"])
    subject.class_code = rule["class"]["code"] if rule["class"] else None
    if rule["zone"]:
        subject.zone_level, subject.zone_name = rule["zone"]["level"], rule["zone"]["name"]
    subject.name(rule["unit"]["id"], "unit")
    return subject


def _complaint_subject(session: Session, reference: str) -> _Subject:
    row = session.execute(
        text(
            "SELECT id, reference, asset_code, owner_id, maintainer_id, resolution, geom IS NOT NULL "
            "FROM complaints WHERE reference = :r"
        ),
        {"r": reference.strip().upper()},
    ).first()
    if row is None:
        raise NotFound(f"no complaint with reference {reference!r:.60}", reference=reference[:60])
    answer = row.resolution or {}
    subject = _Subject("complaint", row.reference, complaint_id=row.id)
    # The asset the resolution named (a scanned code, or the nearest qualifying asset), else the rule.
    asset = answer.get("asset") or {}
    subject.asset_code = row.asset_code or asset.get("code")
    matched = answer.get("matched_rule") or {}
    subject.rule_id = matched.get("rule_id")
    subject.name(row.owner_id, "owner")
    subject.name(row.maintainer_id, "maintainer")
    if subject.asset_code:
        subject.class_code = session.scalar(
            text("SELECT class_code FROM assets WHERE code = :c"), {"c": subject.asset_code}
        )
    elif subject.rule_id is not None:
        subject.class_code = session.scalar(
            text("SELECT class_code FROM responsibility_rules WHERE id = :id"), {"id": subject.rule_id}
        )
    if row[6]:
        subject.zone_level, subject.zone_name = _zone_of(
            session, "(SELECT geom FROM complaints WHERE id = :cid)", {"cid": row.id}
        )
    elif subject.asset_code:
        subject.zone_level, subject.zone_name = _zone_of(
            session, "(SELECT geom FROM assets WHERE code = :code)", {"code": subject.asset_code}
        )
    return subject


def _subject(session: Session, kind: str, subject_id: str) -> _Subject:
    if kind not in SUBJECT_KINDS:
        raise InvalidInput(
            f"unknown dispute subject {kind!r:.40}; one of {', '.join(SUBJECT_KINDS)}", field="subject_kind"
        )
    if not subject_id or not subject_id.strip():
        raise InvalidInput(
            "name the subject: an asset code, a rule id or a complaint reference", field="subject_id"
        )
    if kind == "asset":
        return _asset_subject(session, subject_id)
    if kind == "rule":
        return _rule_subject(session, subject_id)
    return _complaint_subject(session, subject_id)


# --- opening -------------------------------------------------------------------------------------------


def _check_reason(reason: str | None, zh: str, en: str) -> str:
    value = (reason or "").strip()
    if not value:
        raise InvalidInput(f"{zh}需要理由 / {en} needs a reason", field="reason")
    if len(value) > REASON_MAX:
        raise InvalidInput(
            f"理由最多 {REASON_MAX} 字 / the reason exceeds {REASON_MAX} characters", field="reason"
        )
    return value


def _optional_note(value: str | None, field: str) -> str | None:
    """A note or reason that may be left out; one too long is refused, never cut short unsaid."""
    cleaned = (value or "").strip()
    if len(cleaned) > REASON_MAX:
        raise InvalidInput(
            f"说明最多 {REASON_MAX} 字 / the {field} exceeds {REASON_MAX} characters", field=field
        )
    return cleaned or None


def open_dispute(
    session: Session,
    actor: Actor,
    *,
    subject_kind: str,
    subject_id: str,
    reason: str,
    evidence: Sequence[Evidence] = (),
    unit_id: int | None = None,
    role: str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Open a dispute in the caller's transaction (never commits); its view.

    A unit token objects for its own unit, which the subject must name; an administrator names the
    unit (``unit_id``) it acts for. ``role`` narrows an asset dispute to one of the unit's roles
    (owner or maintainer; default: every role the subject gives it). Evidence is checked by its bytes
    and capped by ``SMARTCODE_DISPUTES_EVIDENCE_MAX_MIB`` / ``_MAX_FILES``.
    """
    settings = settings or get_settings()
    require_role(actor, Action.OPEN_DISPUTE)
    subject = _subject(session, subject_kind, subject_id)
    what = f"{SUBJECT_LABELS[subject.kind]} {subject.subject_id}"
    require(actor, Action.OPEN_DISPUTE, subject, what=what)
    reason = _check_reason(reason, "异议", "the dispute")
    config = settings.disputes
    types = _check_files(evidence, 0, settings)
    if actor.role == "unit":
        if unit_id is not None and unit_id != actor.unit_id:
            raise Forbidden(f"a unit token objects for its own unit only, not for unit {unit_id}")
        objector = actor.unit_id
    else:
        if unit_id is None:
            raise InvalidInput(
                "an administrator opens a dispute on a unit's behalf: give unit_id", field="unit_id"
            )
        objector = unit_id
    assert objector is not None
    if not subject.names(objector):
        unit_service.get_unit(session, objector)
        raise InvalidInput(
            f"unit {objector} is not named by {what}: only the units it names may object", field="unit_id"
        )
    roles = subject.named[objector]
    if role is not None:
        if role not in roles:
            raise InvalidInput(
                f"unit {objector} is not {role} of {what} (its roles: {', '.join(roles)})", field="role"
            )
        roles = [role]
    pending = session.scalar(
        text(
            "SELECT id FROM disputes WHERE subject_kind = :k AND subject_id = :s AND unit_id = :u "
            "AND state IN ('open', 'under_review')"
        ),
        {"k": subject.kind, "s": subject.subject_id, "u": objector},
    )
    if pending is not None:
        raise Conflict(
            f"unit {objector} already has dispute {pending} about {what} waiting for a decision",
            dispute_id=pending,
        )
    now = session.execute(text("SELECT now()")).scalar_one()
    due = due_on(
        now, config.review_working_days, settings.area.timezone, config.holiday_dates, config.workday_dates
    )
    dispute_id = session.execute(
        text(
            "INSERT INTO disputes (subject_kind, subject_id, asset_code, rule_id, complaint_id, class_code, "
            "zone_level, zone_name, unit_id, roles, reason, opened_at, opened_by, due_on, state, state_at, "
            "state_by) VALUES (:kind, :sid, :code, :rule, :complaint, :cls, :zl, :zn, :unit, :roles, "
            ":reason, :now, :actor, :due, 'open', :now, :actor) RETURNING id"
        ),
        {
            "kind": subject.kind,
            "sid": subject.subject_id,
            "code": subject.asset_code,
            "rule": subject.rule_id,
            "complaint": subject.complaint_id,
            "cls": subject.class_code,
            "zl": subject.zone_level,
            "zn": subject.zone_name,
            "unit": objector,
            "roles": roles,
            "reason": reason,
            "now": now,
            "actor": actor.name,
            "due": due,
        },
    ).scalar_one()
    _store_evidence(session, actor, dispute_id, evidence, types, 1)
    audit.record(
        session,
        actor,
        "open",
        "dispute",
        dispute_id,
        reason=reason,
        details={
            "subject": subject.kind,
            "subject_id": subject.subject_id,
            "unit_id": objector,
            "roles": roles,
        },
    )
    view = get_dispute(session, dispute_id, settings=settings)
    _emit(session, "dispute.opened", view)
    return view


# --- transitions ---------------------------------------------------------------------------------------


def _locked(session: Session, dispute_id: int) -> Any:
    row = session.execute(
        text(
            "SELECT id, state, version, unit_id, roles, subject_kind, subject_id, asset_code, rule_id "
            "FROM disputes WHERE id = :id FOR UPDATE"
        ),
        {"id": dispute_id},
    ).first()
    if row is None:
        raise NotFound(f"no dispute with id {dispute_id}", dispute_id=dispute_id)
    return row


def _check_version(row: Any, version: int) -> None:
    if row.version != version:
        raise StaleVersion(
            f"dispute {row.id} is at version {row.version}, not {version}: someone changed it since you "
            "read it; reload and retry",
            dispute_id=row.id,
            current_version=row.version,
        )


def _check_move(row: Any, version: int, allowed_from: tuple[str, ...], what: str) -> None:
    # The version first: a caller who read an older state cannot know whether the move still applies.
    _check_version(row, version)
    if row.state not in allowed_from:
        raise Conflict(
            f"dispute {row.id} is {row.state} ({STATE_LABELS[row.state]}): it cannot be {what} "
            f"(only from {' or '.join(allowed_from)})",
            dispute_id=row.id,
            state=row.state,
        )


def _move(
    session: Session,
    actor: Actor,
    row: Any,
    state: str,
    reason: str | None,
    *,
    audit_action: str,
    settings: Settings | None,
    decision: dict[str, Any] | None = None,
) -> dict[str, Any]:
    # Every state change: the row moves (version checked), the audit log and the outbox learn it; the
    # dispute's view after the move is returned.
    decided = state in OUTCOMES
    result = session.execute(
        text(
            "UPDATE disputes SET state = :state, state_at = now(), state_by = :actor, "
            "state_reason = :reason, version = version + 1, "
            "decided_at = CASE WHEN :decided THEN now() ELSE decided_at END, "
            "decided_by = CASE WHEN :decided THEN :actor ELSE decided_by END, "
            "decision = coalesce(CAST(:decision AS jsonb), decision) "
            "WHERE id = :id AND version = :version"
        ),
        {
            "state": state,
            "actor": actor.name,
            "reason": reason,
            "decided": decided,
            "decision": _json(decision) if decision is not None else None,
            "id": row.id,
            "version": row.version,
        },
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise StaleVersion(f"dispute {row.id} changed meanwhile; reload and retry", dispute_id=row.id)
    audit.record(session, actor, audit_action, "dispute", row.id, reason=reason, details=decision)
    view = get_dispute(session, row.id, settings=settings)
    _emit(session, f"dispute.{state}", view)
    return view


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def start_review(
    session: Session,
    actor: Actor,
    dispute_id: int,
    *,
    version: int,
    note: str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """An administrator takes an open dispute up (open -> under_review); its view."""
    require(actor, Action.REVIEW_DISPUTE, what=f"dispute {dispute_id}")
    row = _locked(session, dispute_id)
    _check_move(row, version, ("open",), "taken up for review")
    note = _optional_note(note, "note")
    return _move(session, actor, row, "under_review", note, audit_action="review", settings=settings)


def withdraw(
    session: Session,
    actor: Actor,
    dispute_id: int,
    *,
    version: int,
    reason: str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """The objecting unit (or an administrator for it) withdraws its dispute before a decision."""
    require_role(actor, Action.WITHDRAW_DISPUTE)
    row = _locked(session, dispute_id)
    require(actor, Action.WITHDRAW_DISPUTE, row.unit_id, what=f"dispute {dispute_id}")
    _check_move(row, version, PENDING, "withdrawn")
    reason = _optional_note(reason, "reason")
    return _move(session, actor, row, "withdrawn", reason, audit_action="withdraw", settings=settings)


def add_evidence(
    session: Session,
    actor: Actor,
    dispute_id: int,
    evidence: Sequence[Evidence],
    *,
    version: int,
    note: str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Add evidence files to a dispute still open or under review (补充证据); its view.

    The objecting unit or an administrator adds them; the checks are those of the opening, and the
    per-dispute cap counts the files already attached. The version moves by one (a reviewer decides
    on the evidence they saw) and the state stays; the history gains an ``evidence`` entry (who,
    when, ``note``, the files), the audit log an entry and the outbox a ``dispute.evidence_added``.
    """
    settings = settings or get_settings()
    require_role(actor, Action.ADD_DISPUTE_EVIDENCE)
    if not evidence:
        raise InvalidInput(
            "请至少附一个证据文件 / send at least one evidence file (evidence_1 … evidence_N)",
            field="evidence",
        )
    row = _locked(session, dispute_id)
    require(actor, Action.ADD_DISPUTE_EVIDENCE, row.unit_id, what=f"dispute {dispute_id}")
    _check_version(row, version)
    if row.state not in PENDING:
        raise Conflict(
            f"异议 {row.id} 已{STATE_LABELS[row.state]}，不能再补充证据 / dispute {row.id} is {row.state}: "
            "evidence can be added only while it is open or under review",
            dispute_id=row.id,
            state=row.state,
        )
    note = _optional_note(note, "note")
    attached, last_seq = session.execute(
        text("SELECT count(*), coalesce(max(seq), 0) FROM dispute_evidence WHERE dispute_id = :id"),
        {"id": dispute_id},
    ).one()
    types = _check_files(evidence, attached, settings)
    added = _store_evidence(session, actor, dispute_id, evidence, types, last_seq + 1)
    result = session.execute(
        text("UPDATE disputes SET version = version + 1 WHERE id = :id AND version = :version"),
        {"id": row.id, "version": row.version},
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise StaleVersion(f"dispute {row.id} changed meanwhile; reload and retry", dispute_id=row.id)
    # Not a state move, so the history trigger leaves this entry to us (migration 0022).
    session.execute(
        text(
            "INSERT INTO dispute_history (dispute_id, version, at, actor, state, reason, event, evidence) "
            "VALUES (:id, :version, now(), :actor, :state, :note, 'evidence', CAST(:files AS jsonb))"
        ),
        {
            "id": row.id,
            "version": row.version + 1,
            "actor": actor.name,
            "state": row.state,
            "note": note,
            "files": json.dumps(added, ensure_ascii=False),
        },
    )
    audit.record(session, actor, "add_evidence", "dispute", dispute_id, reason=note, details={"files": added})
    view = get_dispute(session, dispute_id, settings=settings)
    _emit(session, "dispute.evidence_added", view, evidence=added)
    return view


@dataclass(frozen=True)
class Decision:
    """A reviewer's decision: the outcome, why, and for an upheld dispute what the registry becomes.

    ``new_unit_id``: the unit that takes the disputed roles of an asset (required then), or replaces
    the rule's unit (None: the rule is closed). ``effective_at``: from when (default: now).
    """

    outcome: str
    reason: str
    new_unit_id: int | None = None
    effective_at: dt.datetime | None = None


def decide(
    session: Session,
    actor: Actor,
    dispute_id: int,
    decision: Decision,
    *,
    version: int,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Uphold (correcting the registry) or reject a dispute under review; its view."""
    settings = settings or get_settings()
    require(actor, Action.REVIEW_DISPUTE, what=f"dispute {dispute_id}")
    if decision.outcome not in OUTCOMES:
        raise InvalidInput(
            f"the outcome is upheld or rejected, not {decision.outcome!r:.40}", field="outcome"
        )
    reason = _check_reason(decision.reason, "裁决", "the decision")
    if decision.effective_at is not None and decision.effective_at.tzinfo is None:
        raise InvalidInput(
            "effective_at needs a time zone, e.g. 2026-12-01T00:00:00+08:00", field="effective_at"
        )
    row = _locked(session, dispute_id)
    _check_move(row, version, ("under_review",), decision.outcome)
    record: dict[str, Any] = {"outcome": decision.outcome}
    if decision.outcome == "upheld":
        record["change"] = _correct(session, actor, row, decision, reason, settings)
    outcome = decision.outcome
    return _move(
        session, actor, row, outcome, reason, audit_action=outcome, settings=settings, decision=record
    )


def _correct(
    session: Session, actor: Actor, row: Any, decision: Decision, reason: str, settings: Settings
) -> dict[str, Any]:
    """Apply an upheld dispute to the registry; what was changed."""
    why = f"异议 #{row.id} 成立 / dispute #{row.id} upheld: {reason}"
    if row.asset_code is not None:
        return _hand_over(session, actor, row, decision, why)
    if row.rule_id is not None:
        return _correct_rule(session, actor, row, decision, why, settings)
    # A complaint resolved by jurisdiction or not at all: there is no record naming the unit to correct.
    return {
        "kind": "none",
        "note": "the resolution came from no asset or rule: nothing in the registry to correct",
    }


def _hand_over(session: Session, actor: Actor, row: Any, decision: Decision, why: str) -> dict[str, Any]:
    if decision.new_unit_id is None:
        raise InvalidInput(
            "upholding a dispute about an asset needs new_unit_id: who takes the role", field="new_unit_id"
        )
    if decision.new_unit_id == row.unit_id:
        raise InvalidInput("new_unit_id is the unit that objected", field="new_unit_id")
    unit_service.get_unit(session, decision.new_unit_id)
    asset = asset_service.get_by_code(session, row.asset_code)
    if not asset.in_use:
        raise Conflict(
            f"asset {asset.code} is decommissioned: its responsibility cannot change", code=asset.code
        )
    roles = [r for r in row.roles if r in ("owner", "maintainer")]
    moved = [r for r in roles if getattr(asset, f"{r}_id") == row.unit_id]
    if not moved:
        raise Conflict(
            f"asset {asset.code} no longer names unit {row.unit_id} as {' or '.join(roles) or 'a party'}: "
            "the registry changed since the dispute was opened",
            code=asset.code,
        )
    values: dict[str, int | None] = {f"{r}_id": decision.new_unit_id for r in moved}
    # The new version names the dispute (a column, and in its reason for people reading the history).
    changed = asset_service.apply_units_change(
        session, asset, asset.version, values, decision.effective_at, why, actor, dispute_id=row.id
    )
    effective = decision.effective_at or asset_service.current_period_start(session, changed)
    return {
        "kind": "asset",
        "code": changed.code,
        "roles": moved,
        "from_unit_id": row.unit_id,
        "to_unit_id": decision.new_unit_id,
        "effective_at": effective.isoformat() if effective else None,
        "asset_version": changed.version,
    }


def _correct_rule(
    session: Session, actor: Actor, row: Any, decision: Decision, why: str, settings: Settings
) -> dict[str, Any]:
    rule = rule_service.get_rule(session, row.rule_id)
    if rule["valid_to"] is not None:
        raise Conflict(f"rule {rule['id']} already ended at {rule['valid_to']}", rule_id=rule["id"])
    if decision.new_unit_id is None:
        closed = rule_service.close_rule(
            session, actor, rule["id"], at=decision.effective_at, reason=why, dispute_id=row.id
        )
        return {"kind": "rule", "action": "closed", "rule_id": rule["id"], "effective_at": closed["valid_to"]}
    if decision.new_unit_id == rule["unit"]["id"]:
        raise InvalidInput("new_unit_id is the rule's own unit", field="new_unit_id")
    effective = decision.effective_at or session.execute(text("SELECT now()")).scalar_one()
    data = rule_service.RuleInput(
        unit_id=decision.new_unit_id,
        zone=rule["zone"]["name"] if rule["zone"] else None,
        level=rule["zone"]["level"] if rule["zone"] else None,
        class_=rule["class"]["code"] if rule["class"] else None,
        category=rule["category"],
        priority=rule["priority"],
        valid_from=effective,
        note=rule["note"],
    )
    new, _, _ = rule_service.save_rule(
        session, actor, data, county=settings.area.county_code, reason=why, dispute_id=row.id
    )
    return {
        "kind": "rule",
        "action": "replaced",
        "rule_id": rule["id"],
        "new_rule_id": new["id"],
        "to_unit_id": decision.new_unit_id,
        "effective_at": new["valid_from"],
    }


def _emit(
    session: Session, event_type: str, view: dict[str, Any], *, evidence: list[dict[str, Any]] | None = None
) -> None:
    data: dict[str, Any] = {
        "id": view["id"],
        "subject": view["subject"],
        "unit": view["unit"],
        "roles": view["roles"],
        "state": view["state"],
        "reason": view["reason"],
        "state_reason": view["state_reason"],
        "opened_at": view["opened_at"],
        "due_on": view["due_on"],
        "decided_by": view["decided_by"],
        "decided_at": view["decided_at"],
        "decision": view["decision"],
        "version": view["version"],
    }
    if evidence is not None:
        data["evidence"] = evidence
    events.emit(session, event_type, data, subject=view["subject"]["asset_code"] or f"dispute:{view['id']}")


# --- reading -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DisputeFilter:
    """Criteria of the ledger; every field is optional and they combine with AND."""

    state: str | None = None
    unit_id: int | None = None
    class_code: str | None = None
    zone: str | None = None
    subject_kind: str | None = None
    opened_from: dt.datetime | None = None
    opened_to: dt.datetime | None = None
    overdue: bool | None = None


# Past its last review day in the deployment's time zone and still waiting for a decision.
_OVERDUE = (
    "(d.state IN ('open', 'under_review') "
    "AND d.due_on < CAST(coalesce(:now, now()) AT TIME ZONE :tz AS date))"
)

_COLUMNS = f"""
d.id, d.subject_kind, d.subject_id, d.asset_code, d.rule_id, d.complaint_id, d.class_code,
c.name AS class_name, d.zone_level, d.zone_name, d.unit_id, u.name AS unit_name, d.roles, d.reason,
d.opened_at, d.opened_by, d.due_on,
d.state, d.state_at, d.state_by, d.state_reason, d.decided_at, d.decided_by, d.decision, d.version,
{_OVERDUE} AS overdue,
(SELECT count(*) FROM dispute_evidence e WHERE e.dispute_id = d.id) AS evidence_count,
(SELECT reference FROM complaints k WHERE k.id = d.complaint_id) AS complaint_reference
"""
_FROM = (
    "FROM disputes d JOIN units u ON u.id = d.unit_id LEFT JOIN component_classes c ON c.code = d.class_code"
)


def _where(flt: DisputeFilter) -> tuple[str, dict[str, Any]]:
    conditions: list[str] = []
    params: dict[str, Any] = {}
    if flt.state is not None:
        if flt.state not in STATES:
            raise InvalidInput(f"unknown state {flt.state!r:.40}; one of {', '.join(STATES)}", field="state")
        conditions.append("d.state = :state")
        params["state"] = flt.state
    if flt.unit_id is not None:
        conditions.append("d.unit_id = :unit")
        params["unit"] = flt.unit_id
    if flt.class_code:
        conditions.append("d.class_code = :cls")
        params["cls"] = flt.class_code.strip()
    if flt.zone:
        conditions.append("d.zone_name = :zone")
        params["zone"] = flt.zone.strip()
    if flt.subject_kind is not None:
        if flt.subject_kind not in SUBJECT_KINDS:
            raise InvalidInput(
                f"unknown subject kind {flt.subject_kind!r:.40}; one of {', '.join(SUBJECT_KINDS)}",
                field="subject_kind",
            )
        conditions.append("d.subject_kind = :kind")
        params["kind"] = flt.subject_kind
    for name, value, op in (("opened_from", flt.opened_from, ">="), ("opened_to", flt.opened_to, "<")):
        if value is not None:
            if value.tzinfo is None:
                raise InvalidInput(f"{name} needs a time zone, e.g. 2026-12-01T00:00:00+08:00", field=name)
            conditions.append(f"d.opened_at {op} :{name}")
            params[name] = value
    if flt.overdue is not None:
        conditions.append(_OVERDUE if flt.overdue else f"NOT {_OVERDUE}")
    return (" AND ".join(conditions) or "true"), params


def _view(row: Any, timezone: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "subject": {
            "kind": row.subject_kind,
            "id": row.subject_id,
            "asset_code": row.asset_code,
            "rule_id": row.rule_id,
            "complaint": row.complaint_reference,
        },
        "class": {"code": row.class_code, "name": row.class_name} if row.class_code else None,
        "zone": {"level": row.zone_level, "name": row.zone_name} if row.zone_name else None,
        "unit": {"id": row.unit_id, "name": row.unit_name},
        "roles": list(row.roles),
        "reason": row.reason,
        "opened_at": row.opened_at.isoformat(),
        "opened_by": row.opened_by,
        "due_on": row.due_on.isoformat(),
        "overdue": bool(row.overdue),
        "state": row.state,
        "state_label": STATE_LABELS[row.state],
        "state_at": row.state_at.isoformat(),
        "state_by": row.state_by,
        "state_reason": row.state_reason,
        "decided_at": row.decided_at.isoformat() if row.decided_at else None,
        "decided_by": row.decided_by,
        "decision": row.decision,
        "evidence_count": row.evidence_count,
        "version": row.version,
        "timezone": timezone,
    }


def _tz(settings: Settings | None) -> str:
    return (settings or get_settings()).area.timezone


def get_dispute(
    session: Session, dispute_id: int, *, settings: Settings | None = None, now: dt.datetime | None = None
) -> dict[str, Any]:
    """One dispute with its history and its evidence list (not the bytes), or ``NotFound``."""
    tz = _tz(settings)
    row = session.execute(
        text(f"SELECT {_COLUMNS} {_FROM} WHERE d.id = :id"), {"id": dispute_id, "tz": tz, "now": now}
    ).first()
    if row is None:
        raise NotFound(f"no dispute with id {dispute_id}", dispute_id=dispute_id)
    view = _view(row, tz)
    history = session.execute(
        text(
            "SELECT version, at, actor, state, reason, decision, event, evidence FROM dispute_history "
            "WHERE dispute_id = :id ORDER BY id"
        ),
        {"id": dispute_id},
    ).all()
    view["history"] = [
        {
            "version": h.version,
            "at": h.at.isoformat(),
            "actor": h.actor,
            "state": h.state,
            "state_label": STATE_LABELS[h.state],
            "reason": h.reason,
            "decision": h.decision,
            "event": h.event,
            "evidence": h.evidence,
        }
        for h in history
    ]
    evidence = session.execute(
        text(
            "SELECT seq, file_name, content_type, size_bytes, sha256, added_by, created_at "
            "FROM dispute_evidence WHERE dispute_id = :id ORDER BY seq"
        ),
        {"id": dispute_id},
    ).all()
    view["evidence"] = [
        {
            "seq": e.seq,
            "file_name": e.file_name,
            "content_type": e.content_type,
            "size": e.size_bytes,
            "sha256": e.sha256,
            "added_by": e.added_by,
            "added_at": e.created_at.isoformat(),
        }
        for e in evidence
    ]
    return view


def get_evidence(session: Session, dispute_id: int, seq: int) -> tuple[bytes, str, str]:
    """One evidence file's bytes, content type and name, or ``NotFound``."""
    row = session.execute(
        text(
            "SELECT data, content_type, file_name FROM dispute_evidence WHERE dispute_id = :id AND seq = :seq"
        ),
        {"id": dispute_id, "seq": seq},
    ).first()
    if row is None:
        raise NotFound(f"dispute {dispute_id} has no evidence file {seq}", dispute_id=dispute_id, seq=seq)
    return bytes(row.data), row.content_type, row.file_name


def list_disputes(
    session: Session,
    flt: DisputeFilter,
    *,
    limit: int = 100,
    offset: int = 0,
    settings: Settings | None = None,
    now: dt.datetime | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """One page of the ledger, newest first, with the total count (``now``: the time overdue is judged at)."""
    tz = _tz(settings)
    where, params = _where(flt)
    params.update(tz=tz, now=now, limit=limit, offset=offset)
    total = session.execute(text(f"SELECT count(*) {_FROM} WHERE {where}"), params).scalar_one()
    rows = session.execute(
        text(f"SELECT {_COLUMNS} {_FROM} WHERE {where} ORDER BY d.id DESC LIMIT :limit OFFSET :offset"),
        params,
    ).all()
    return [_view(row, tz) for row in rows], total


def overdue(
    session: Session, *, settings: Settings | None = None, now: dt.datetime | None = None
) -> list[dict[str, Any]]:
    """The disputes still waiting for a decision after their last review day, oldest due first."""
    tz = _tz(settings)
    where, params = _where(DisputeFilter(overdue=True))
    params.update(tz=tz, now=now)
    rows = session.execute(
        text(f"SELECT {_COLUMNS} {_FROM} WHERE {where} ORDER BY d.due_on, d.id"), params
    ).all()
    return [_view(row, tz) for row in rows]


# --- the ledger (异议台账) and the analysis ------------------------------------------------------------

LEDGER_COLUMNS: tuple[str, ...] = (
    "异议编号",
    "状态",
    "异议对象类型",
    "异议对象",
    "智慧码",
    "诉求编号",
    "规则编号",
    "设施类型",
    "区域",
    "提出单位",
    "异议角色",
    "异议理由",
    "提出时间",
    "提出人",
    "办理期限",
    "是否逾期",
    "裁决时间",
    "裁决人",
    "裁决理由",
    "变更内容",
    "生效时间",
    "证据数",
)
EXPORT_FORMATS = ("csv", "xlsx")
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
_LEDGER_MAX = 100_000


def _local(value: str | None, zone: zoneinfo.ZoneInfo) -> str:
    if not value:
        return ""
    return dt.datetime.fromisoformat(value).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def _change_text(decision: dict[str, Any] | None, unit_names: dict[Any, str]) -> tuple[str, str | None]:
    change = (decision or {}).get("change") or {}
    kind = change.get("kind")
    if kind == "asset":
        roles = "、".join(ROLE_LABELS.get(r, r) for r in change.get("roles", []))
        target = unit_names.get(change.get("to_unit_id"), str(change.get("to_unit_id")))
        return f"{roles}移交给 {target}", change.get("effective_at")
    if kind == "rule" and change.get("action") == "closed":
        return f"规则 {change.get('rule_id')} 停用", change.get("effective_at")
    if kind == "rule":
        target = unit_names.get(change.get("to_unit_id"), str(change.get("to_unit_id")))
        return (
            f"规则 {change.get('rule_id')} 由规则 {change.get('new_rule_id')} 替代，责任单位 {target}",
            change.get("effective_at"),
        )
    if kind == "none":
        return "无可更正的登记记录", None
    return "", None


def ledger_rows(session: Session, flt: DisputeFilter, *, settings: Settings | None = None) -> list[list[Any]]:
    """The ledger's rows (one per dispute, oldest first) under :data:`LEDGER_COLUMNS`, times local."""
    tz = _tz(settings)
    zone = zoneinfo.ZoneInfo(tz)
    items, total = list_disputes(session, flt, limit=_LEDGER_MAX, settings=settings)
    if total > _LEDGER_MAX:
        raise InvalidInput(f"{total} disputes match: narrow the filters to at most {_LEDGER_MAX}")
    unit_ids = {
        ((v["decision"] or {}).get("change") or {}).get("to_unit_id") for v in items if v["decision"]
    } - {None}
    names: dict[Any, str] = {}
    if unit_ids:
        found = session.execute(
            text("SELECT id, name FROM units WHERE id = ANY(:ids)"), {"ids": list(unit_ids)}
        )
        names = {row.id: row.name for row in found}
    rows = []
    for v in reversed(items):
        change, effective = _change_text(v["decision"], names)
        rows.append(
            [
                v["id"],
                v["state_label"],
                SUBJECT_LABELS[v["subject"]["kind"]],
                v["subject"]["id"],
                v["subject"]["asset_code"] or "",
                v["subject"]["complaint"] or "",
                v["subject"]["rule_id"] or "",
                v["class"]["name"] if v["class"] else "",
                v["zone"]["name"] if v["zone"] else "",
                v["unit"]["name"],
                "、".join(ROLE_LABELS.get(r, r) for r in v["roles"]),
                v["reason"],
                _local(v["opened_at"], zone),
                v["opened_by"],
                v["due_on"],
                "是" if v["overdue"] else "否",
                _local(v["decided_at"], zone),
                v["decided_by"] or "",
                (v["state_reason"] or "") if v["state"] in OUTCOMES else "",
                change,
                _local(effective, zone),
                v["evidence_count"],
            ]
        )
    return rows


def check_format(value: str) -> str:
    """``value`` as a ledger format (csv or xlsx), or ``InvalidInput``."""
    lowered = value.strip().lower().lstrip(".")
    if lowered not in EXPORT_FORMATS:
        raise InvalidInput(f"unknown export format {value!r:.40}: use csv or xlsx", field="format")
    return lowered


def export_ledger(
    session: Session, flt: DisputeFilter, fmt: str, *, settings: Settings | None = None
) -> bytes:
    """The ledger (异议台账) as CSV (UTF-8 with BOM, for Excel) or XLSX bytes, Chinese headers."""
    kind = check_format(fmt)
    rows = ledger_rows(session, flt, settings=settings)
    if kind == "csv":
        buffer = io.StringIO()
        buffer.write("\ufeff")
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(LEDGER_COLUMNS)
        writer.writerows(rows)
        return buffer.getvalue().encode("utf-8")
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("异议台账")
    sheet.append(list(LEDGER_COLUMNS))
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


_GROUPS = {
    "class": ("d.class_code", "max(c.name)"),
    "unit": ("d.unit_id", "max(u.name)"),
    "zone": ("d.zone_name", "max(d.zone_level)"),
}


def stats(session: Session, flt: DisputeFilter, *, settings: Settings | None = None) -> dict[str, Any]:
    """Disputes grouped by class, unit and zone (counts per state, upheld rate, median days to a
    decision), and by outcome: the analysis of similar cases."""
    where, params = _where(flt)
    params.update(tz=_tz(settings), now=None)
    out: dict[str, Any] = {}
    for group, (key, label) in _GROUPS.items():
        rows = session.execute(
            text(
                f"SELECT {key} AS key, {label} AS label, count(*) AS total, "
                + ", ".join(f"count(*) FILTER (WHERE d.state = '{s}') AS {s}" for s in STATES)
                + ", percentile_cont(0.5) WITHIN GROUP (ORDER BY "
                "extract(epoch FROM d.decided_at - d.opened_at) / 86400.0) "
                "FILTER (WHERE d.state IN ('upheld', 'rejected')) AS median_days "
                f"{_FROM} WHERE {where} GROUP BY {key} ORDER BY count(*) DESC, {key} NULLS LAST"
            ),
            params,
        ).all()
        out[f"by_{group}"] = [_group_view(group, r) for r in rows]
    counts: dict[str, int] = {
        row.state: row.n
        for row in session.execute(
            text(f"SELECT d.state, count(*) AS n {_FROM} WHERE {where} GROUP BY d.state"), params
        )
    }
    decided = counts.get("upheld", 0) + counts.get("rejected", 0)
    out["by_outcome"] = [{"state": s, "label": STATE_LABELS[s], "count": counts.get(s, 0)} for s in STATES]
    out["total"] = sum(counts.values())
    out["upheld_rate"] = round(counts.get("upheld", 0) / decided, 4) if decided else None
    return out


def _group_view(group: str, row: Any) -> dict[str, Any]:
    decided = row.upheld + row.rejected
    key: dict[str, Any]
    if group == "class":
        key = {"code": row.key, "name": row.label}
    elif group == "unit":
        key = {"id": row.key, "name": row.label}
    else:
        key = {"name": row.key, "level": row.label}
    return {
        group: key if row.key is not None else None,
        "total": row.total,
        **{s: getattr(row, s) for s in STATES},
        "decided": decided,
        "upheld_rate": round(row.upheld / decided, 4) if decided else None,
        "median_days_to_decision": round(float(row.median_days), 2) if row.median_days is not None else None,
    }
