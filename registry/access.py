"""Access control in one place: who the caller is (:class:`Actor`) and what it may do (:func:`require`).

Every route and service asks :func:`authorize` / :func:`require` "may this actor do this to that";
no other module decides on roles. The table :data:`POLICY` is the whole policy (docs/design.md,
"Access policy", shows it as actions x roles). Also here: the passer-by view, what an anonymous
caller may see of an asset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, NoReturn, Protocol

from common.errors import Forbidden, Unauthorized

Role = Literal["admin", "unit", "reader", "anonymous"]
ROLES: tuple[Role, ...] = ("admin", "unit", "reader", "anonymous")


@dataclass(frozen=True, init=False)
class Actor:
    """Who is asking: a name (recorded in history and the audit log), a role, and the unit of a unit token."""

    name: str
    role: Role
    unit_id: int | None

    def __init__(
        self, name: str, unit_id: int | None = None, admin: bool = False, *, role: Role | None = None
    ) -> None:
        # ``admin=True`` and a bare ``unit_id`` stay accepted as shorthands for the role.
        chosen: Role = role or ("admin" if admin else "unit" if unit_id is not None else "reader")
        if chosen not in ROLES:
            raise ValueError(f"unknown role {chosen!r}")
        if (chosen == "unit") != (unit_id is not None):
            raise ValueError("a unit actor needs its unit, and only a unit actor has one")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "role", chosen)
        object.__setattr__(self, "unit_id", unit_id)

    @property
    def admin(self) -> bool:
        """Whether this is an administrator."""
        return self.role == "admin"

    @property
    def anonymous(self) -> bool:
        """Whether the caller sent no token."""
        return self.role == "anonymous"


ANONYMOUS = Actor("anonymous", role="anonymous")


class Action(StrEnum):
    """Everything the policy rules on."""

    READ_PUBLIC = "read_public"  # the passer-by view of one asset, resolve by code
    READ_FULL = "read_full"  # full records, lists, history, zones, rules, units, imports, the log
    RESOLVE_LOCATION = "resolve_location"
    REGISTER_ASSET = "register_asset"  # target: the new asset's owner
    REGISTER_WITH_CODE = "register_with_code"  # adopting an existing identifier moves the serial counter
    EDIT_ASSET = "edit_asset"  # target: the asset (owner or maintainer)
    HAND_OVER = "hand_over"  # target: the asset (owner)
    HAND_OVER_DIRECT = "hand_over_direct"  # naming another unit without its consent
    DECOMMISSION = "decommission"  # target: the asset (owner)
    CREATE_UNIT = "create_unit"
    EDIT_UNIT_CONTACT = "edit_unit_contact"  # target: the unit id (phone, note)
    EDIT_UNIT_IDENTITY = "edit_unit_identity"  # names, aliases, credit code, kind, parent, verified
    MANAGE_CLASSES = "manage_classes"
    MANAGE_CATEGORIES = "manage_categories"
    MANAGE_ZONES = "manage_zones"
    MANAGE_RULES = "manage_rules"
    IMPORT = "import"
    ROLLBACK_IMPORT = "rollback_import"  # target: the batch's unit id
    MANAGE_TOKENS = "manage_tokens"
    ANSWER_PROPOSAL = "answer_proposal"  # target: the receiving unit id
    PRINT_LABELS = "print_labels"  # target: each asset (owner or maintainer)
    REVOKE_LABEL = "revoke_label"  # target: the asset (owner or maintainer)
    POST_COMPLAINT = "post_complaint"  # a case system (Open311, API) files a complaint
    FILE_AS_CASE_SYSTEM = "file_as_case_system"  # source case_system: its case ids are the 12345 system's
    ROUTE_COMPLAINT = "route_complaint"  # accept (签收) or return (退件); target: the complaint's units
    CLOSE_COMPLAINT = "close_complaint"  # close (办结) a complaint: the case system's word
    ACKNOWLEDGE_HOTSPOT = "acknowledge_hotspot"  # target: the warning's responsible unit id
    EXPORT = "export"  # target: the unit id whose assets are exported (a unit token: its own)
    OPEN_DISPUTE = "open_dispute"  # target: the units the subject names (asset, rule or complaint)
    REVIEW_DISPUTE = "review_dispute"  # take up, uphold or reject a dispute
    WITHDRAW_DISPUTE = "withdraw_dispute"  # target: the objecting unit id
    ADD_DISPUTE_EVIDENCE = "add_dispute_evidence"  # target: the objecting unit id
    MANAGE_WEBHOOKS = "manage_webhooks"  # subscriptions, their delivery log, redelivery
    MANAGE_ADDRESSES = "manage_addresses"  # load the standard address register (标准地址库)


class Owned(Protocol):
    """Anything naming an owner and a maintainer: an asset row, a registration body."""

    @property
    def owner_id(self) -> int | None: ...

    @property
    def maintainer_id(self) -> int | None: ...


Target = Owned | int | None
# Which unit tokens pass: any unit token, or only the one whose unit the target names in a role.
UnitScope = Literal["none", "any", "own", "owner", "owner_or_maintainer"]


@dataclass(frozen=True)
class Rule:
    """One row of the policy: the roles allowed outright, what a unit token needs, why others may not."""

    roles: frozenset[Role]
    unit: UnitScope
    refusal: str


_ADMIN: frozenset[Role] = frozenset({"admin"})
_TOKEN: frozenset[Role] = frozenset({"admin", "reader"})
_EVERYONE: frozenset[Role] = frozenset(ROLES)

POLICY: Mapping[Action, Rule] = {
    Action.READ_PUBLIC: Rule(_EVERYONE, "any", ""),
    Action.READ_FULL: Rule(_TOKEN, "any", "this needs a bearer token: the full registry is not public"),
    Action.RESOLVE_LOCATION: Rule(
        _TOKEN,
        "any",
        "resolving a location needs a bearer token (Authorization: Bearer <token>): it reveals the network; "
        "resolving a scanned code does not",
    ),
    Action.REGISTER_ASSET: Rule(
        _ADMIN, "owner", "a unit token registers assets of its own unit only (owner_id = its unit)"
    ),
    Action.REGISTER_WITH_CODE: Rule(
        _ADMIN,
        "none",
        "only administrators register assets under an existing code (adopting an identifier moves the "
        "class's serial counter); leave the code empty and one is allocated",
    ),
    Action.EDIT_ASSET: Rule(
        _ADMIN, "owner_or_maintainer", "only its owner or maintainer unit, or an administrator, may edit it"
    ),
    Action.HAND_OVER: Rule(
        _ADMIN, "owner", "only the owner unit or an administrator may change who is responsible for it"
    ),
    Action.HAND_OVER_DIRECT: Rule(
        _ADMIN, "none", "naming another unit needs that unit's consent: it becomes a proposal"
    ),
    Action.DECOMMISSION: Rule(_ADMIN, "owner", "only the owner unit or an administrator may decommission it"),
    Action.CREATE_UNIT: Rule(_ADMIN, "none", "only administrators register units"),
    Action.EDIT_UNIT_CONTACT: Rule(_ADMIN, "own", "a unit may only update its own record"),
    Action.EDIT_UNIT_IDENTITY: Rule(
        _ADMIN,
        "none",
        "only administrators change a unit's names, aliases, credit code, kind, parent or verified flag "
        "(they decide which unit an inventory row names)",
    ),
    Action.MANAGE_CLASSES: Rule(_ADMIN, "none", "only administrators add classes"),
    Action.MANAGE_CATEGORIES: Rule(_ADMIN, "none", "only administrators manage complaint categories"),
    Action.MANAGE_ZONES: Rule(_ADMIN, "none", "only administrators manage zones"),
    Action.MANAGE_RULES: Rule(_ADMIN, "none", "only administrators manage responsibility rules"),
    Action.MANAGE_ADDRESSES: Rule(
        _ADMIN,
        "none",
        "只有管理员可以导入标准地址库 / only administrators load the standard address register",
    ),
    Action.IMPORT: Rule(_ADMIN, "any", "importing needs the administrator token or a unit token"),
    Action.ROLLBACK_IMPORT: Rule(
        _ADMIN, "own", "only an administrator or the unit whose token made the batch may roll it back"
    ),
    Action.EXPORT: Rule(
        _TOKEN,
        "own",
        "a unit token exports its own unit's assets only (those it owns, maintains or supervises)",
    ),
    Action.MANAGE_TOKENS: Rule(_ADMIN, "none", "only administrators list, issue or revoke tokens"),
    Action.MANAGE_WEBHOOKS: Rule(
        _ADMIN,
        "none",
        "only administrators manage webhook subscriptions (they send registry events to any address)",
    ),
    Action.ANSWER_PROPOSAL: Rule(
        _ADMIN, "own", "only the receiving unit or an administrator may accept or decline a proposal"
    ),
    Action.POST_COMPLAINT: Rule(_TOKEN, "any", "filing a case needs an API token (the case system's)"),
    # A case id (external_id) is unique per source: a unit filing as the case system could take the next
    # 12345 case id first, and the real case would be refused as already recorded.
    Action.FILE_AS_CASE_SYSTEM: Rule(
        _TOKEN,
        "none",
        "只有案件系统（管理员或只读令牌）可以以 case_system 来源提交诉求 / only the case system (an "
        "administrator or reader token) files complaints as source case_system; a unit files as api",
    ),
    # The case system holds an admin or reader token (docs/open311.md); the unit a complaint was routed
    # to (its owner or maintainer) answers for itself: it accepts it or returns it as not its own.
    Action.ROUTE_COMPLAINT: Rule(
        _TOKEN,
        "owner_or_maintainer",
        "只有诉求分拨到的单位（权属或养护单位）、案件系统或管理员可以签收或退件 / only the unit the "
        "complaint was routed to (owner or maintainer), the case system or an administrator may accept "
        "or return it",
    ),
    Action.CLOSE_COMPLAINT: Rule(
        _TOKEN,
        "none",
        "只有案件系统或管理员可以办结诉求 / only the case system or an administrator closes a complaint",
    ),
    Action.OPEN_DISPUTE: Rule(
        _ADMIN,
        "owner_or_maintainer",
        "only a unit the registry names for it (owner, maintainer, the rule's unit, the unit a complaint "
        "was routed to) may object, or an administrator on its behalf",
    ),
    Action.REVIEW_DISPUTE: Rule(_ADMIN, "none", "only administrators review and decide disputes"),
    Action.WITHDRAW_DISPUTE: Rule(
        _ADMIN, "own", "only the unit that raised the dispute, or an administrator, may withdraw it"
    ),
    # The dispute names one party, the objecting unit: it (or an administrator, who also reviews) adds
    # what it finds later or what the reviewer asks for. The other units the subject names are not
    # parties to it; they open their own dispute.
    Action.ADD_DISPUTE_EVIDENCE: Rule(
        _ADMIN,
        "own",
        "只有提出异议的单位或管理员可以补充证据 / only the unit that raised the dispute, or an "
        "administrator, may add evidence to it",
    ),
    Action.ACKNOWLEDGE_HOTSPOT: Rule(
        _ADMIN,
        "own",
        "only the responsible unit named by the warning, or an administrator, may acknowledge it",
    ),
    Action.PRINT_LABELS: Rule(
        _ADMIN,
        "owner_or_maintainer",
        "only the owner or maintainer unit, or an administrator, prints its labels",
    ),
    Action.REVOKE_LABEL: Rule(
        _ADMIN,
        "owner_or_maintainer",
        "only the owner or maintainer unit, or an administrator, may revoke this label",
    ),
}


def _unit_passes(scope: UnitScope, unit_id: int, target: Target) -> bool:
    if scope == "any":
        return True
    if scope == "none":
        return False
    if scope == "own":
        return isinstance(target, int) and target == unit_id
    if target is None or isinstance(target, int):
        return False
    if scope == "owner":
        return target.owner_id == unit_id
    return unit_id in (target.owner_id, target.maintainer_id)


def authorize(actor: Actor, action: Action, target: Target = None) -> bool:
    """Whether ``actor`` may do ``action`` to ``target`` (an asset-like object, a unit id, or nothing)."""
    rule = POLICY[action]
    if actor.role in rule.roles:
        return True
    if actor.role == "unit" and actor.unit_id is not None:
        return _unit_passes(rule.unit, actor.unit_id, target)
    return False


def may_attempt(actor: Actor, action: Action) -> bool:
    """Whether ``actor``'s role can do ``action`` to some target (a unit token: to its own unit's)."""
    rule = POLICY[action]
    return actor.role in rule.roles or (actor.role == "unit" and rule.unit != "none")


def require_role(actor: Actor, action: Action) -> Actor:
    """Refuse at once the callers whose role never allows ``action``; the target is checked later."""
    if may_attempt(actor, action):
        return actor
    _refuse(actor, action, None)


def require(actor: Actor, action: Action, target: Target = None, *, what: str | None = None) -> Actor:
    """``actor`` when :func:`authorize` allows; else ``Unauthorized`` (no token) or ``Forbidden``."""
    if authorize(actor, action, target):
        return actor
    _refuse(actor, action, what)


def _refuse(actor: Actor, action: Action, what: str | None) -> NoReturn:
    rule = POLICY[action]
    if actor.anonymous:
        if action == Action.RESOLVE_LOCATION:
            raise Unauthorized(rule.refusal)
        raise Unauthorized("this operation needs a bearer token (Authorization: Bearer <token>)")
    raise Forbidden(f"{what}: {rule.refusal}" if what else rule.refusal, action=str(action))


def policy_table() -> list[dict[str, str]]:
    """The policy as rows of action x role ('yes', 'no', or the unit condition), for docs and tests."""
    rows = []
    for action, rule in POLICY.items():
        row = {"action": str(action)}
        for role in ROLES:
            if role in rule.roles:
                row[role] = "yes"
            elif role == "unit" and rule.unit != "none":
                row[role] = "yes" if rule.unit == "any" else rule.unit
            else:
                row[role] = "no"
        rows.append(row)
    return rows


# --- the passer-by view ----------------------------------------------------------------------------------

_PUBLIC_ASSET_KEYS = ("code", "code_display", "class", "state", "in_use", "decommissioned_at")


def public_party(unit: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Whom to call: a unit's name and phone, nothing else."""
    if unit is None:
        return None
    return {"name": unit.get("name"), "phone": unit.get("phone")}


def public_asset(asset: Mapping[str, Any]) -> dict[str, Any]:
    """What a passer-by needs of an asset: what it is, its state. No position, notes or reasons."""
    return {key: asset.get(key) for key in _PUBLIC_ASSET_KEYS}


def public_resolution(answer: Mapping[str, Any], lang: str = "en") -> dict[str, Any]:
    """A resolve-by-code answer cut to the passer-by view (the explanation rebuilt without internals).

    ``lang`` is the language of the rebuilt lines (``settings.area.lang``, as the full answer's).
    """
    from registry.messages import text

    asset = answer.get("asset")
    parties = {role: public_party(answer.get(role)) for role in ("owner", "maintainer", "supervisor")}
    lines = []
    if asset is not None:
        cls = asset.get("class") or {}
        line = text(
            lang,
            "public.code",
            code=asset.get("code_display"),
            cls=cls.get("name"),
            class_code=cls.get("code"),
        )
        line += text(lang, "public.state", state=asset.get("state"))
        if not asset.get("in_use", True):
            line += text(lang, "public.out_of_use", when=asset.get("decommissioned_at"))
        lines.append(line)

    def who(party: dict[str, Any] | None) -> str:
        if party is None:
            return text(lang, "who.none")
        phone = text(lang, "who.phone", phone=party["phone"]) if party.get("phone") else ""
        return f"{party['name']}{phone}"

    lines.append(
        text(
            lang,
            "code.parties",
            owner=who(parties["owner"]),
            maintainer=who(parties["maintainer"]),
            supervisor=who(parties["supervisor"]),
        )
    )
    return {
        "id": answer.get("id"),
        "status": answer.get("status"),
        "rule": answer.get("rule"),
        "asset": public_asset(asset) if asset is not None else None,
        **parties,
        "candidates": [],
        "explanation": lines,
    }
