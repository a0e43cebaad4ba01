"""What the server does on refresh: rotation, reuse handling, lifetimes, error dialect.

Real servers differ on exactly these knobs (see docs/fake-oauth-server.md, "What the servers
do"), and the races tokenrace hunts only show under some of them, so the
policy is a value the caller picks rather than a behaviour baked into the core.
``Policy.preset(name)`` gives the knobs of a known server (``_presets.py``
documents each one and where its figures come from).

Every knob, in one place:

=========================== ===============================================================
knob                        meaning
=========================== ===============================================================
``rotation``                each refresh returns a new refresh token (else the same one)
``reuse_window``            seconds after a refresh token is spent during which presenting
                            it again is tolerated (0: never; ``None``: no time limit)
``reuse_scope``             which spent tokens the window covers: ``previous`` (the one
                            rotated most recently in its grant) or ``any``
``reuse_response``          inside the window: ``same`` (the successor pair again) or
                            ``mint`` (a newly minted pair; earlier ones stay valid)
``max_reuse``               how many times one spent token may be presented again inside
                            the window (Keycloak ``refreshTokenMaxReuse``); ``None``: no cap
``revoke_family_on_reuse``  reuse outside the window revokes every live token of the grant,
                            access tokens included (RFC 9700 §4.14.2); else reject only
``revoke_access_on_refresh`` a refresh revokes the access token minted with the presented
                            refresh token (Ory Hydra)
``access_token_lifetime``   seconds an access token is valid
``refresh_token_lifetime``  seconds one refresh token is valid after it is minted
``refresh_idle_lifetime``   the grant dies when not refreshed for this long
``refresh_absolute_lifetime`` the grant dies this long after the login, whatever happens
``max_grants_per_user``     live grants per (user, client); a login beyond it revokes the
                            oldest (1: one active grant per user)
``dialect``                 how errors look on the wire (``ErrorDialect``)
``id_tokens``               answer a refresh with an OpenID ``id_token`` (a JWT)
``jwt_access_tokens``       hand out access tokens as JWTs wrapping the opaque ones
``jwt_signing``             how those JWTs are signed: ``hs256`` (a seed-derived secret) or
                            ``rs256`` (a seed-derived key pair published as a JWKS)
=========================== ===============================================================
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import InvalidPolicy, UnknownPreset


class ErrorDialect(enum.Enum):
    """How errors look on the wire; clients key their "log in again" logic on it."""

    #: HTTP 401, ``{"error": {"message", "type", "param", "code"}}`` (ChatGPT / Codex).
    OPENAI = "openai"
    #: HTTP 400, ``{"error": "invalid_grant", "error_description": ...}`` (RFC 6749 §5.2).
    RFC6749 = "rfc6749"
    #: HTTP 403 ``invalid_grant``, "Unknown or invalid refresh token."
    AUTH0 = "auth0"
    #: HTTP 400 ``invalid_grant``, "The refresh token is invalid or expired."
    OKTA = "okta"
    #: HTTP 400 ``invalid_grant`` with Keycloak's texts ("Stale token", "Session not active", ...).
    KEYCLOAK = "keycloak"
    #: HTTP 400 ``invalid_grant`` with fosite's description and hint, ``charset=UTF-8``.
    HYDRA = "hydra"
    #: HTTP 400 ``invalid_grant`` with an ``AADSTS`` code, ``error_codes``, trace and timestamp.
    ENTRA = "entra"
    #: HTTP 400 ``invalid_grant``, "Token has been expired or revoked."
    GOOGLE = "google"


class JwtSigning(enum.Enum):
    """How the server signs the JWTs it hands out (id_tokens, JWT access tokens)."""

    #: HMAC-SHA256 with a secret derived from the seed; nothing is published.
    HS256 = "hs256"
    #: RSA-SHA256 with a key pair derived from the seed; the public key is at the JWKS URI.
    RS256 = "rs256"


class ReuseScope(enum.Enum):
    """Which spent refresh tokens a reuse window covers."""

    #: Only the token rotated most recently in its grant (Auth0, Okta, Keycloak).
    PREVIOUS = "previous"
    #: Any spent token of the grant, each within its own window (Ory Hydra, Entra ID).
    ANY = "any"


class ReuseResponse(enum.Enum):
    """What a refresh inside the reuse window returns."""

    #: The successor pair minted when the token was first spent, again.
    SAME = "same"
    #: A newly minted pair; the pairs minted before stay valid.
    MINT = "mint"


@dataclass(frozen=True, slots=True)
class Policy:
    """The server's refresh-token policy; see the module docstring for every knob.

    The defaults are strict one-time rotation in OpenAI's dialect without
    family revocation, as the walking skeleton had it; ``Policy.preset``
    gives faithful configurations of real servers.
    """

    rotation: bool = True
    revoke_family_on_reuse: bool = False
    access_token_lifetime: float = 3600.0
    dialect: ErrorDialect = ErrorDialect.OPENAI
    refresh_token_lifetime: float | None = None
    reuse_window: float | None = 0.0
    reuse_scope: ReuseScope = ReuseScope.PREVIOUS
    reuse_response: ReuseResponse = ReuseResponse.MINT
    max_reuse: int | None = None
    refresh_idle_lifetime: float | None = None
    refresh_absolute_lifetime: float | None = None
    max_grants_per_user: int | None = None
    revoke_access_on_refresh: bool = False
    #: Answer a refresh with an OpenID ``id_token`` too (a JWT; see ``_jwt``).
    id_tokens: bool = False
    #: Hand out access tokens as JWTs (``exp``, the account claim; ``jti`` is the opaque token).
    jwt_access_tokens: bool = False
    #: How JWTs are signed: HS256 (as Codex needs nothing more) or RS256 with a JWKS.
    jwt_signing: JwtSigning = JwtSigning.HS256

    def __post_init__(self) -> None:
        for name in (
            "rotation",
            "revoke_family_on_reuse",
            "revoke_access_on_refresh",
            "id_tokens",
            "jwt_access_tokens",
        ):
            if not isinstance(getattr(self, name), bool):
                raise InvalidPolicy(f"{name} must be true or false")
        _check_seconds("access_token_lifetime", self.access_token_lifetime, optional=False)
        for name in _SECONDS - {"access_token_lifetime", "reuse_window"}:
            _check_seconds(name, getattr(self, name), optional=True)
        window = self.reuse_window
        if window is not None and (not _is_number(window) or not 0 <= window < math.inf):
            raise InvalidPolicy(f"reuse_window must be seconds >= 0 or None, got {window!r}")
        _check_count("max_reuse", self.max_reuse, minimum=0)
        _check_count("max_grants_per_user", self.max_grants_per_user, minimum=1)
        for name, kind in _ENUMS.items():
            if not isinstance(getattr(self, name), kind):
                raise InvalidPolicy(f"{name} must be a {kind.__name__}")

    @property
    def grace(self) -> bool:
        """Whether a spent token can ever be accepted again (a window and a cap above 0)."""
        return (self.reuse_window is None or self.reuse_window > 0) and self.max_reuse != 0

    @classmethod
    def preset(cls, name: str) -> Policy:
        """The policy of a known server, by name (see ``PRESETS``)."""
        from ._presets import PRESET_POLICIES

        try:
            return PRESET_POLICIES[name]
        except KeyError:
            known = ", ".join(repr(n) for n in PRESET_POLICIES)
            raise UnknownPreset(f"unknown policy preset {name!r}; known: {known}") from None

    def replace(self, **changes: Any) -> Policy:
        """A copy with ``changes`` applied (and validated)."""
        try:
            return dataclasses.replace(self, **changes)
        except TypeError as error:
            raise InvalidPolicy(str(error)) from None

    def to_json(self) -> dict[str, Any]:
        """The policy as JSON-ready values (enums by value)."""
        out: dict[str, Any] = {}
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            out[spec.name] = value.value if isinstance(value, enum.Enum) else value
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, base: Policy | None = None) -> Policy:
        """A policy from JSON values: ``{"preset": name}`` and/or any fields.

        Fields override the preset (or ``base``, or the defaults).  Unknown
        fields and values of the wrong type raise ``InvalidPolicy``.
        """
        changes = dict(data)
        preset = changes.pop("preset", None)
        if preset is not None:
            if not isinstance(preset, str):
                raise InvalidPolicy("preset must be a name")
            start = cls.preset(preset)
        else:
            start = base if base is not None else cls()
        known = {spec.name for spec in dataclasses.fields(cls)}
        for key, value in changes.items():
            if key not in known:
                raise InvalidPolicy(f"unknown policy field {str(key)[:40]!r}")
            kind = _ENUMS.get(key)
            if kind is not None:
                try:
                    changes[key] = kind(value)
                except ValueError:
                    options = ", ".join(member.value for member in kind)
                    raise InvalidPolicy(f"{key} must be one of {options}") from None
            elif isinstance(value, int) and not isinstance(value, bool) and key in _SECONDS:
                changes[key] = float(value)
        return start.replace(**changes)


_ENUMS: dict[str, type[enum.Enum]] = {
    "dialect": ErrorDialect,
    "reuse_scope": ReuseScope,
    "reuse_response": ReuseResponse,
    "jwt_signing": JwtSigning,
}
_SECONDS = frozenset(
    {
        "access_token_lifetime",
        "refresh_token_lifetime",
        "refresh_idle_lifetime",
        "refresh_absolute_lifetime",
        "reuse_window",
    }
)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_seconds(field: str, value: object, *, optional: bool) -> None:
    if value is None and optional:
        return
    if not _is_number(value):
        raise InvalidPolicy(f"{field} must be a number of seconds, got {type(value).__name__}")
    assert isinstance(value, int | float)
    if not math.isfinite(value) or value <= 0:
        raise InvalidPolicy(f"{field} must be a finite number of seconds > 0, got {value!r}")


def _check_count(field: str, value: object, *, minimum: int) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidPolicy(f"{field} must be an integer >= {minimum} or None, got {value!r}")
