"""Error bodies, each as the server it imitates sends it.

The core decides *why* a request fails (a ``Failure``); the policy's
``ErrorDialect`` decides how that looks on the wire: status, body shape and
wording.  Clients key their "log in again" logic on exactly these bytes
(Codex treats any 401 on refresh as final; Keycloak clients match
``error_description``), so the texts follow the servers' own:

* OpenAI: 401, ``{"error": {"message", "type", "param", "code"}}`` with
  ``refresh_token_reused`` / ``refresh_token_invalidated`` / ``refresh_token_expired``;
* RFC 6749 §5.2: 400 ``{"error": "invalid_grant", "error_description"}``;
* Auth0: 403, "Unknown or invalid refresh token." for every refused refresh;
* Okta: 400, "The refresh token is invalid or expired.";
* Keycloak: 400 with ``TokenManager``'s texts ("Stale token", "Maximum allowed
  refresh token reuse exceeded", "Session not active", "Token is not active");
* Ory Hydra (fosite, default error format): 400, the ``invalid_grant``
  description followed by the hint of an inactive token, ``charset=UTF-8``;
* Entra ID: 400 with ``AADSTS<code>: ...`` and ``error_codes``, ``timestamp``,
  ``trace_id``, ``correlation_id``, ``error_uri`` (ids derived from the request,
  so replays stay byte-identical);
* Google: 400, "Token has been expired or revoked.".
"""

from __future__ import annotations

import enum
import hashlib
import time
import uuid
from typing import Any

from ._policy import ErrorDialect
from ._wire import JSON_CT, NO_STORE, Headers, encode_json


class Failure(enum.Enum):
    """Every way a request can fail; the value is (id, RFC 6749 ``error``, default status)."""

    # The refresh grant, by cause.
    REFRESH_UNKNOWN = ("refresh_unknown", "invalid_grant", 400)
    # the grant was revoked (reuse elsewhere)
    REFRESH_REVOKED = ("refresh_revoked", "invalid_grant", 400)
    # a newer login revoked the grant
    REFRESH_SUPERSEDED = ("refresh_superseded", "invalid_grant", 400)
    # the most recently rotated token, again
    REFRESH_REUSED = ("refresh_reused", "invalid_grant", 400)
    REFRESH_STALE = ("refresh_stale", "invalid_grant", 400)  # an older rotated token
    REFRESH_EXPIRED = ("refresh_expired", "invalid_grant", 400)  # the token's own lifetime
    # the grant was not refreshed for too long
    REFRESH_IDLE = ("refresh_idle", "invalid_grant", 400)
    REFRESH_ENDED = ("refresh_ended", "invalid_grant", 400)  # the grant's absolute lifetime
    # The authorization_code grant.
    CODE_INVALID = ("code_invalid", "invalid_grant", 400)
    PKCE_FAILED = ("pkce_failed", "invalid_grant", 400)
    # Malformed requests.
    MISSING_PARAMETER = ("missing_parameter", "invalid_request", 400)
    INVALID_REQUEST = ("invalid_request", "invalid_request", 400)
    UNSUPPORTED_GRANT = ("unsupported_grant", "unsupported_grant_type", 400)
    BODY_TOO_LARGE = ("body_too_large", "invalid_request", 413)
    NOT_FOUND = ("not_found", "not_found", 404)
    METHOD_NOT_ALLOWED = ("method_not_allowed", "method_not_allowed", 405)
    # The resource endpoint.
    ACCESS_MISSING = ("access_missing", "invalid_request", 401)
    ACCESS_EXPIRED = ("access_expired", "invalid_token", 401)
    ACCESS_REVOKED = ("access_revoked", "invalid_token", 401)
    ACCESS_UNKNOWN = ("access_unknown", "invalid_token", 401)
    # Faults and bugs.
    UNAVAILABLE = ("unavailable", "temporarily_unavailable", 503)
    RATE_LIMITED = ("rate_limited", "too_many_requests", 429)
    SERVER_ERROR = ("server_error", "server_error", 500)

    @property
    def error(self) -> str:
        return str(self.value[1])

    @property
    def status(self) -> int:
        return int(self.value[2])


_REFRESH = frozenset(f for f in Failure if f.name.startswith("REFRESH_"))
_GRANT = _REFRESH | {Failure.CODE_INVALID, Failure.PKCE_FAILED}
_ACCESS = frozenset(f for f in Failure if f.name.startswith("ACCESS_"))

#: Why a refresh was refused -> the audit ``reason`` the checker reads.
AUDIT_REASONS: dict[Failure, str] = {
    Failure.REFRESH_UNKNOWN: "unknown",
    Failure.REFRESH_REVOKED: "revoked",
    Failure.REFRESH_SUPERSEDED: "revoked",
    Failure.REFRESH_REUSED: "reused",
    Failure.REFRESH_STALE: "reused",
    Failure.REFRESH_EXPIRED: "expired",
    Failure.REFRESH_IDLE: "expired",
    Failure.REFRESH_ENDED: "expired",
}

_RFC_TEXT: dict[Failure, str] = {
    Failure.REFRESH_UNKNOWN: "The refresh token is invalid.",
    Failure.REFRESH_REVOKED: "The refresh token has been revoked.",
    Failure.REFRESH_SUPERSEDED: "The grant was revoked by a newer login.",
    Failure.REFRESH_REUSED: "The refresh token has already been used.",
    Failure.REFRESH_STALE: "The refresh token has already been used.",
    Failure.REFRESH_EXPIRED: "The refresh token has expired.",
    Failure.REFRESH_IDLE: "The refresh token has expired due to inactivity.",
    Failure.REFRESH_ENDED: "The grant has reached its maximum lifetime.",
    Failure.CODE_INVALID: "The authorization code is invalid, expired or already used.",
    Failure.PKCE_FAILED: "The code_verifier does not match the code_challenge.",
    Failure.MISSING_PARAMETER: "Missing required parameter: {param}.",
    Failure.INVALID_REQUEST: "The request is invalid.",
    Failure.UNSUPPORTED_GRANT: "Supported grant types: refresh_token, authorization_code.",
    Failure.BODY_TOO_LARGE: "The request body is too large.",
    Failure.NOT_FOUND: "No such endpoint.",
    Failure.METHOD_NOT_ALLOWED: "Method not allowed on this endpoint.",
    Failure.ACCESS_MISSING: "Missing bearer authentication in header.",
    Failure.ACCESS_EXPIRED: "The access token has expired.",
    Failure.ACCESS_REVOKED: "The access token has been revoked.",
    Failure.ACCESS_UNKNOWN: "The access token is not one this server issued.",
    Failure.UNAVAILABLE: "The server is temporarily unavailable.",
    Failure.RATE_LIMITED: "Too many requests; slow down.",
    Failure.SERVER_ERROR: "The server hit an internal error.",
}

_SIGN_IN = " Please try signing in again."
_OPENAI: dict[Failure, tuple[str, str]] = {  # failure -> (code, message)
    Failure.REFRESH_REUSED: (
        "refresh_token_reused",
        "Your refresh token has already been used to generate a new access token." + _SIGN_IN,
    ),
    Failure.REFRESH_EXPIRED: (
        "refresh_token_expired",
        "Your refresh token has expired." + _SIGN_IN,
    ),
    Failure.REFRESH_REVOKED: (
        "refresh_token_invalidated",
        "Your refresh token has been invalidated." + _SIGN_IN,
    ),
    Failure.ACCESS_MISSING: ("missing_authorization", _RFC_TEXT[Failure.ACCESS_MISSING]),
    Failure.ACCESS_EXPIRED: (
        "token_expired",
        "Provided authentication token is expired." + _SIGN_IN,
    ),
    Failure.ACCESS_REVOKED: (
        "token_invalidated",
        "Your authentication token has been invalidated." + _SIGN_IN,
    ),
    Failure.ACCESS_UNKNOWN: ("invalid_token", _RFC_TEXT[Failure.ACCESS_UNKNOWN]),
    Failure.RATE_LIMITED: ("rate_limit_exceeded", "Rate limit reached for requests."),
}
for _same, _as in (
    (Failure.REFRESH_STALE, Failure.REFRESH_REUSED),
    (Failure.REFRESH_IDLE, Failure.REFRESH_EXPIRED),
    (Failure.REFRESH_ENDED, Failure.REFRESH_EXPIRED),
    (Failure.REFRESH_SUPERSEDED, Failure.REFRESH_REVOKED),
    (Failure.REFRESH_UNKNOWN, Failure.REFRESH_REVOKED),
):
    _OPENAI[_same] = _OPENAI[_as]

_OPENAI_TYPES = {
    Failure.RATE_LIMITED: "requests",
    Failure.UNAVAILABLE: "server_error",
    Failure.SERVER_ERROR: "server_error",
}

_KEYCLOAK: dict[Failure, str] = {
    Failure.REFRESH_UNKNOWN: "Invalid refresh token",
    Failure.REFRESH_REVOKED: "Session doesn't have required client",
    Failure.REFRESH_SUPERSEDED: "Session not active",
    Failure.REFRESH_REUSED: "Maximum allowed refresh token reuse exceeded",
    Failure.REFRESH_STALE: "Stale token",
    Failure.REFRESH_EXPIRED: "Token is not active",
    Failure.REFRESH_IDLE: "Token is not active",
    Failure.REFRESH_ENDED: "Session not active",
    Failure.CODE_INVALID: "Code not valid",
    Failure.PKCE_FAILED: "PKCE verification failed: Invalid code verifier",
    Failure.MISSING_PARAMETER: "Missing parameter: {param}",
    Failure.UNSUPPORTED_GRANT: "Unsupported grant_type",
}

_HYDRA_GRANT = (
    "The provided authorization grant (e.g., authorization code, resource owner credentials) "
    "or refresh token is invalid, expired, revoked, does not match the redirection URI used in "
    "the authorization request, or was issued to another client."
)
_HYDRA_INACTIVE = (
    " Token is inactive because it is malformed, expired or otherwise invalid."
    " Token validation failed."
)
_HYDRA_REQUEST = (
    "The request is missing a required parameter, includes an invalid parameter value, "
    "includes a parameter more than once, or is otherwise malformed."
)
_HYDRA: dict[Failure, str] = {
    **{failure: _HYDRA_GRANT for failure in _GRANT},
    **{
        failure: _HYDRA_GRANT + _HYDRA_INACTIVE
        for failure in (
            Failure.REFRESH_REUSED,
            Failure.REFRESH_STALE,
            Failure.REFRESH_REVOKED,
            Failure.REFRESH_SUPERSEDED,
        )
    },
    Failure.PKCE_FAILED: _HYDRA_GRANT + " The PKCE code challenge did not match the code verifier.",
    Failure.MISSING_PARAMETER: _HYDRA_REQUEST,
    Failure.INVALID_REQUEST: _HYDRA_REQUEST,
    Failure.UNSUPPORTED_GRANT: (
        "The authorization grant type is not supported by the authorization server."
    ),
}

_FLAT: dict[ErrorDialect, dict[Failure, str]] = {
    ErrorDialect.AUTH0: {
        **{failure: "Unknown or invalid refresh token." for failure in _REFRESH},
        Failure.CODE_INVALID: "Invalid authorization code",
        Failure.PKCE_FAILED: "Failed to verify code verifier",
    },
    ErrorDialect.OKTA: {
        **{failure: "The refresh token is invalid or expired." for failure in _REFRESH},
        Failure.CODE_INVALID: "The authorization code is invalid or has expired.",
        Failure.PKCE_FAILED: "PKCE verification failed.",
    },
    ErrorDialect.GOOGLE: {
        **{failure: "Token has been expired or revoked." for failure in _REFRESH},
        Failure.REFRESH_UNKNOWN: "Bad Request",
        Failure.CODE_INVALID: "Malformed auth code.",
        Failure.PKCE_FAILED: "Invalid code verifier.",
    },
    ErrorDialect.KEYCLOAK: _KEYCLOAK,
    ErrorDialect.HYDRA: _HYDRA,
}

_ENTRA: dict[Failure, tuple[int, str]] = {
    Failure.REFRESH_UNKNOWN: (9002313, "Invalid request. Request is malformed or invalid."),
    Failure.REFRESH_REUSED: (70000, "Provided grant is invalid or malformed."),
    Failure.REFRESH_STALE: (70000, "Provided grant is invalid or malformed."),
    Failure.REFRESH_REVOKED: (
        50173,
        "The provided grant has expired due to it being revoked, a fresh auth token is needed. "
        "The user might have changed or reset their password.",
    ),
    Failure.REFRESH_EXPIRED: (700082, "The refresh token has expired due to inactivity."),
    Failure.REFRESH_IDLE: (700082, "The refresh token has expired due to inactivity."),
    Failure.REFRESH_ENDED: (
        70008,
        "The provided authorization code or refresh token has expired due to inactivity. "
        "Send a new interactive authorization request for this user and resource.",
    ),
    Failure.CODE_INVALID: (70000, "Provided grant is invalid or malformed."),
    Failure.PKCE_FAILED: (
        501481,
        "The Code_Verifier does not match the code_challenge supplied in the authorization "
        "request.",
    ),
    Failure.MISSING_PARAMETER: (
        900144,
        "The request body must contain the following parameter: '{param}'.",
    ),
    Failure.UNSUPPORTED_GRANT: (70003, "The app requested an unsupported grant type."),
}
_ENTRA[Failure.REFRESH_SUPERSEDED] = _ENTRA[Failure.REFRESH_REVOKED]

_HYDRA_CT: Headers = (("content-type", "application/json;charset=UTF-8"),)
_JSON: Headers = (("content-type", JSON_CT),)


def error_response(
    dialect: ErrorDialect,
    failure: Failure,
    *,
    message: str | None = None,
    param: str | None = None,
    status: int | None = None,
    extra_headers: Headers = (),
    now: float = 0.0,
    request_id: str = "",
) -> tuple[int, bytes, Headers]:
    """``failure`` as (status, body, headers) in ``dialect``'s shape.

    ``message`` replaces the dialect's text (used for details of a malformed
    request), ``param`` names the offending parameter, ``status`` overrides
    the status (a 502 fault).  ``now`` and ``request_id`` seed Entra's
    timestamp and trace ids.
    """
    code = status if status is not None else failure.status
    headers: Headers = _HYDRA_CT if dialect is ErrorDialect.HYDRA else _JSON
    payload: dict[str, Any]
    if failure in _ACCESS and dialect is not ErrorDialect.OPENAI:
        payload = {"error": failure.error, "error_description": message or _RFC_TEXT[failure]}
    elif dialect is ErrorDialect.OPENAI:
        if status is None and failure in _REFRESH:
            code = 401
        openai_code, text = _OPENAI.get(failure, (failure.error, _RFC_TEXT[failure]))
        payload = {
            "error": {
                "message": message or text.format(param=param),
                "type": _OPENAI_TYPES.get(failure, "invalid_request_error"),
                "param": param,
                "code": openai_code,
            }
        }
    elif dialect is ErrorDialect.ENTRA and failure in _ENTRA:
        payload = _entra_payload(failure, message, param, now, request_id)
    else:
        if dialect is ErrorDialect.AUTH0 and status is None and failure in _GRANT:
            code = 403
        text = _FLAT.get(dialect, {}).get(failure) or _RFC_TEXT[failure]
        payload = {"error": failure.error, "error_description": message or text.format(param=param)}
    if failure in _GRANT or failure in (
        Failure.MISSING_PARAMETER,
        Failure.INVALID_REQUEST,
        Failure.UNSUPPORTED_GRANT,
    ):
        headers += NO_STORE
    return code, encode_json(payload), headers + extra_headers


def _entra_payload(
    failure: Failure, message: str | None, param: str | None, now: float, request_id: str
) -> dict[str, Any]:
    number, text = _ENTRA[failure]
    seed = hashlib.sha256(f"{request_id}\x00{now!r}".encode()).digest()
    trace, correlation = str(uuid.UUID(bytes=seed[:16])), str(uuid.UUID(bytes=seed[16:]))
    try:
        stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(max(0.0, now)))
    except (OverflowError, OSError, ValueError):  # a virtual clock far in the future
        stamp = "9999-12-31 23:59:59Z"
    description = (
        f"AADSTS{number}: {message or text.format(param=param)} Trace ID: {trace} "
        f"Correlation ID: {correlation} Timestamp: {stamp}"
    )
    return {
        "error": failure.error,
        "error_description": description,
        "error_codes": [number],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"https://login.microsoftonline.com/error?code={number}",
    }
