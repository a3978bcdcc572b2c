"""The domain's exception hierarchy; ``api/errors.py`` maps each class to one HTTP status."""

from __future__ import annotations

from typing import Any


class SmartcodeError(Exception):
    """Base of every error the domain raises on purpose; ``message`` is meant for the user."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = {k: v for k, v in details.items() if v is not None}


class InvalidInput(SmartcodeError):
    """The caller sent something malformed or out of range (bad field, bad geometry, bad CRS)."""


class InvalidCode(InvalidInput):
    """A smart code that is not well-formed (wrong length, not digits)."""


class CheckDigitMismatch(InvalidCode):
    """A well-formed code whose check digit is wrong: most likely mistyped or misread."""


class OutsideServiceArea(InvalidInput):
    """A coordinate that falls far outside the deployment's service area."""


class NotFound(SmartcodeError):
    """The thing asked for does not exist (e.g. a well-formed code that is not registered)."""


class Conflict(SmartcodeError):
    """The request collides with the current state (duplicate, already decommissioned...)."""


class StaleVersion(Conflict):
    """An update carried an old version number: someone else changed the record first."""


class PreconditionFailed(StaleVersion):
    """A version sent as ``If-Match`` that is no longer current (HTTP 412 rather than 409)."""


class SerialExhausted(Conflict):
    """No free serial number is left for a county and class ("顺序码已满")."""


class Unauthorized(SmartcodeError):
    """No valid credentials were presented for an operation that needs them."""


class Forbidden(SmartcodeError):
    """Credentials are valid but do not allow this operation."""


class RateLimited(SmartcodeError):
    """The caller asked too often; ``details['retry_after']`` says how many seconds to wait."""


class DatabaseUnavailable(SmartcodeError):
    """The database could not be reached or set up (embedded cluster missing PostGIS, server down...)."""


class ConfigurationError(SmartcodeError):
    """A setting (``SMARTCODE_*`` variable or ``.env``) is missing or unusable."""
