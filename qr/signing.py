"""Signed label URLs: ``{public base URL}/c/{code}?s={signature}``.

The signature is a short keyed MAC of the code: HMAC-SHA256 truncated to 60 bits, written as 12 base32
characters behind the id of the key that made it, e.g. ``s=1.K7Q2MZP4XA3D``. A replacement label (after
a revocation) carries its edition between the two: ``s=1.2.K7Q2MZP4XA3D``; the edition is covered by
the MAC, so a revoked label's successor has a different signature while a reprint of the same edition
gives the same URL. Digits, upper-case letters and dots are all in the QR alphanumeric set, which
keeps the code small (version 5 at error correction Q with the default base URL, see docs/labels.md).

Keys live in a private file (one ``<id> <secret>`` line per key, created 0600 on first use), never in
the database: a database dump does not let anyone print labels. Rotating adds a key with the next id
and makes it current; labels made with an older key stay valid as long as its line stays in the file.
Removing a key's line makes every label signed with it fail verification. Revoking one label is the
registry's business (``registry.labels``), since only it knows which labels were withdrawn.

This module knows nothing of the database and imports nothing of the project but ``common``.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from common.errors import ConfigurationError, InvalidInput
from common.settings import LabelSettings

# 60 bits of MAC: a forger must guess, one scan or request at a time, a value out of 2^60; the key never
# leaves the server, so there is no offline search. 12 base32 characters carry exactly 60 bits.
MAC_BITS = 60
_MAC_CHARS = MAC_BITS // 5
# Keeps signatures of this scheme apart from any other use the same key might be put to by mistake.
_DOMAIN = b"smartcode-label/1:"
_KEY_ID = re.compile(r"[1-9][0-9]{0,3}")
_SIGNATURE = re.compile(r"([1-9][0-9]{0,3})\.(?:([1-9][0-9]{0,5})\.)?([A-Z2-7]{" + str(_MAC_CHARS) + "})")
_SECRET_BYTES = 32


class LabelVerdict(enum.StrEnum):
    """What a label's signature says on its own (revocation and decommissioning are the registry's)."""

    VALID = "valid"
    FAILED = "failed"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of checking one signature; ``key_id`` and ``edition`` are set when it parsed."""

    status: LabelVerdict
    key_id: str | None = None
    edition: int | None = None
    reason: str = ""

    @property
    def valid(self) -> bool:
        """True when the signature was made by one of the keys for this very code."""
        return self.status is LabelVerdict.VALID


@dataclass(frozen=True)
class LabelKeys:
    """The signing keys of a deployment by id, and the id new labels are signed with."""

    keys: Mapping[str, bytes]
    current: str

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise ConfigurationError(
                f"label key {self.current!r} is not in the key file (known: {', '.join(sorted(self.keys))})"
            )


def _mac(secret: bytes, code: str, edition: int) -> str:
    message = _DOMAIN + code.encode("utf-8", "surrogateescape") + (b"" if edition == 1 else b"#%d" % edition)
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.b32encode(digest[:10]).decode("ascii")[:_MAC_CHARS]


def sign(code: str, keys: LabelKeys, *, key_id: str | None = None, edition: int = 1) -> str:
    """The signature of ``code`` (17 digits) under ``key_id`` (default: the current key) for an edition."""
    kid = key_id or keys.current
    if kid not in keys.keys:
        raise InvalidInput(f"label key {kid!r} is unknown or retired", field="key_id")
    if not 1 <= edition <= 999_999:
        raise InvalidInput(f"label edition must be between 1 and 999999, got {edition}", field="edition")
    mac = _mac(keys.keys[kid], code, edition)
    return f"{kid}.{mac}" if edition == 1 else f"{kid}.{edition}.{mac}"


def label_url(
    code: str, keys: LabelKeys, base_url: str, *, key_id: str | None = None, edition: int = 1
) -> str:
    """The URL a label encodes: ``{base_url}/c/{code}?s={signature}`` (code as its 17 plain digits)."""
    return f"{base_url.rstrip('/')}/c/{code}?s={sign(code, keys, key_id=key_id, edition=edition)}"


def parse_signature(signature: str) -> tuple[str, int] | None:
    """``(key id, edition)`` of a well-formed signature, or None when it is not shaped like one."""
    match = _SIGNATURE.fullmatch(signature.strip().upper())
    if match is None:
        return None
    return match.group(1), int(match.group(2) or 1)


def verify(code: str, signature: str | None, keys: LabelKeys) -> Verdict:
    """Check a label's signature for ``code``: valid, failed (malformed, unknown key, bad MAC) or missing."""
    if signature is None or not signature.strip():
        return Verdict(LabelVerdict.MISSING, reason="no signature: a typed code, not a scanned label")
    parsed = parse_signature(signature)
    if parsed is None:
        return Verdict(LabelVerdict.FAILED, reason="the signature is not well formed")
    kid, edition = parsed
    secret = keys.keys.get(kid)
    if secret is None:
        return Verdict(LabelVerdict.FAILED, kid, edition, reason=f"label key {kid} is unknown or retired")
    mac = signature.strip().upper().rsplit(".", 1)[1]
    if not hmac.compare_digest(mac, _mac(secret, code, edition)):
        return Verdict(LabelVerdict.FAILED, kid, edition, reason="the signature does not match the code")
    return Verdict(LabelVerdict.VALID, kid, edition)


# --- the key file ---------------------------------------------------------------------------------


def _read_key_file(path: Path) -> dict[str, bytes]:
    keys: dict[str, bytes] = {}
    for number, raw in enumerate(path.read_text(encoding="ascii").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or not _KEY_ID.fullmatch(parts[0]):
            raise ConfigurationError(
                f"label key file, line {number}: expected '<id> <secret>' with id 1-9999"
            )
        try:
            secret = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        except ValueError:
            raise ConfigurationError(f"label key file, line {number}: the secret is not base64url") from None
        if len(secret) < 16:
            raise ConfigurationError(f"label key file, line {number}: the secret is shorter than 16 bytes")
        if parts[0] in keys:
            raise ConfigurationError(f"label key file, line {number}: key {parts[0]} appears twice")
        keys[parts[0]] = secret
    return keys


def _new_secret() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(_SECRET_BYTES)).decode("ascii").rstrip("=")


def _write_private(path: Path, content: str) -> None:
    # Created 0600 from the start (and replaced atomically) so a key is never readable by others.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


_HEADER = (
    "# smartcode label signing keys: '<id> <secret>'; the highest id signs new labels unless\n"
    "# SMARTCODE_LABELS_CURRENT_KEY_ID says otherwise. Keep this file private; removing a line voids\n"
    "# every label signed with that key.\n"
)


def load_keys(path: Path, current_key_id: str | None = None) -> LabelKeys:
    """The keys in ``path``, creating the file with one fresh key (id 1) when it does not exist."""
    if not path.exists():
        _write_private(path, f"{_HEADER}1 {_new_secret()}\n")
    keys = _read_key_file(path)
    if not keys:
        raise ConfigurationError("the label key file holds no key")
    current = current_key_id or max(keys, key=int)
    return LabelKeys(keys=keys, current=current)


def add_key(path: Path) -> str:
    """Rotate: append a fresh key with the next id to the key file and return that id."""
    existing = path.read_text(encoding="ascii") if path.exists() else _HEADER
    ids = _read_key_file(path) if path.exists() else {}
    new_id = str(max((int(k) for k in ids), default=0) + 1)
    _write_private(path, existing.rstrip("\n") + f"\n{new_id} {_new_secret()}\n")
    return new_id


def keys_from_settings(labels: LabelSettings) -> LabelKeys:
    """The deployment's label keys as the label settings place them."""
    return load_keys(labels.key_file, labels.current_key_id)
