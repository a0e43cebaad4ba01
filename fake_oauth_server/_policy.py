"""What the server does on refresh: rotation, reuse handling, lifetimes, error dialect.

Real servers differ on exactly these knobs (see RACES.md, "What the servers
do"), and the races tokenrace hunts only show under some of them, so the
policy is a value the caller picks rather than a behaviour baked into the core.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from ._errors import InvalidPolicy, UnknownPreset


class ErrorDialect(enum.Enum):
    """How errors look on the wire; clients key their "log in again" logic on it."""

    #: HTTP 401, ``{"error": {"message", "type", "param", "code"}}`` (ChatGPT / Codex).
    OPENAI = "openai"
    #: HTTP 400, ``{"error": "invalid_grant", "error_description": ...}`` (RFC 6749 §5.2).
    RFC6749 = "rfc6749"


@dataclass(frozen=True, slots=True)
class Policy:
    """The server's refresh-token policy.

    ``refresh_token_lifetime`` is an addition to the agreed API: ``None`` (the
    default) means refresh tokens never expire; a number makes the
    ``expired`` rejection (``refresh_token_expired``) reachable.
    """

    #: Each refresh returns a new refresh token and spends the old one.
    rotation: bool = True
    #: RFC 9700 §4.14.2: presenting a spent token revokes every live token of its family.
    revoke_family_on_reuse: bool = False
    #: Seconds an access token stays valid after it is minted.
    access_token_lifetime: float = 3600.0
    dialect: ErrorDialect = ErrorDialect.OPENAI
    #: Seconds a refresh token stays valid after it is minted; ``None`` for ever.
    refresh_token_lifetime: float | None = None

    def __post_init__(self) -> None:
        _check_lifetime("access_token_lifetime", self.access_token_lifetime)
        if self.refresh_token_lifetime is not None:
            _check_lifetime("refresh_token_lifetime", self.refresh_token_lifetime)

    @classmethod
    def preset(cls, name: str) -> Policy:
        """The policy of a known server, by name (see ``PRESETS``)."""
        try:
            return _PRESETS[name]
        except KeyError:
            known = ", ".join(repr(n) for n in _PRESETS)
            raise UnknownPreset(f"unknown policy preset {name!r}; known: {known}") from None


def _check_lifetime(field: str, value: float) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidPolicy(f"{field} must be a number of seconds, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise InvalidPolicy(f"{field} must be a finite number of seconds > 0, got {value!r}")


_PRESETS: dict[str, Policy] = {
    # ChatGPT / Codex: strict one-time rotation; a reused token is refused, the
    # family survives.
    "openai": Policy(rotation=True, revoke_family_on_reuse=False, dialect=ErrorDialect.OPENAI),
    # RFC 9700 / OAuth 2.1: rotation, and reuse revokes the whole grant.
    "rfc9700": Policy(rotation=True, revoke_family_on_reuse=True, dialect=ErrorDialect.RFC6749),
    # Google: no rotation, the refresh token is long-lived.
    "google": Policy(rotation=False, revoke_family_on_reuse=False, dialect=ErrorDialect.RFC6749),
}

#: Names ``Policy.preset`` accepts.
PRESETS: tuple[str, ...] = tuple(_PRESETS)
