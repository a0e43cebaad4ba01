"""Bytes in, bytes out: parsing token-request bodies and shaping errors per dialect.

Kept apart from the ledger in ``_core`` so the state machine reads as a state
machine.  Nothing here raises on bad input: parsing returns either the
parameters or a ``Failure``, and a ``Failure`` renders to a JSON error in
the policy's dialect.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from ._policy import ErrorDialect
from ._tokens import redact

Headers = tuple[tuple[str, str], ...]

JSON_CT = "application/json"
FORM_CT = "application/x-www-form-urlencoded"
_JSON_HEADERS: Headers = (("content-type", JSON_CT),)
# RFC 6749 §5.1: token responses must not be cached.
_NO_STORE: Headers = (("cache-control", "no-store"), ("pragma", "no-cache"))

REUSED_MESSAGE = (
    "Your refresh token has already been used to generate a new access token. "
    "Please try signing in again."
)


class Failure(enum.Enum):
    """Every way a request can fail, with its wire form in both dialects.

    Value: (HTTP status in the OpenAI dialect, status in RFC 6749, OpenAI
    ``code``, RFC ``error``, human message).
    """

    REFRESH_REUSED = (401, 400, "refresh_token_reused", "invalid_grant", REUSED_MESSAGE)
    REFRESH_INVALIDATED = (
        401,
        400,
        "refresh_token_invalidated",
        "invalid_grant",
        "Your refresh token has been invalidated. Please try signing in again.",
    )
    REFRESH_EXPIRED = (
        401,
        400,
        "refresh_token_expired",
        "invalid_grant",
        "Your refresh token has expired. Please try signing in again.",
    )
    INVALID_REQUEST = (400, 400, "invalid_request", "invalid_request", "The request is invalid.")
    UNSUPPORTED_GRANT = (
        400,
        400,
        "unsupported_grant_type",
        "unsupported_grant_type",
        "Only grant_type=refresh_token is supported.",
    )
    ACCESS_MISSING = (
        401,
        401,
        "missing_authorization",
        "invalid_request",
        "Missing bearer authentication in header.",
    )
    ACCESS_EXPIRED = (
        401,
        401,
        "token_expired",
        "invalid_token",
        "Provided authentication token is expired. Please try signing in again.",
    )
    ACCESS_INVALIDATED = (
        401,
        401,
        "token_invalidated",
        "invalid_token",
        "Your authentication token has been invalidated. Please try signing in again.",
    )
    ACCESS_UNKNOWN = (
        401,
        401,
        "invalid_token",
        "invalid_token",
        "The access token is not one this server issued.",
    )
    NOT_FOUND = (404, 404, "not_found", "not_found", "No such endpoint.")
    METHOD_NOT_ALLOWED = (
        405,
        405,
        "method_not_allowed",
        "method_not_allowed",
        "Method not allowed on this endpoint.",
    )
    SERVER_ERROR = (500, 500, "server_error", "server_error", "The server hit an internal error.")

    @property
    def message(self) -> str:
        text: str = self.value[4]
        return text


#: Why a refresh token was refused (audit ``reason``) -> its wire failure.
REFRESH_FAILURES: Mapping[str, Failure] = {
    "reused": Failure.REFRESH_REUSED,
    "revoked": Failure.REFRESH_INVALIDATED,
    "unknown": Failure.REFRESH_INVALIDATED,
    "expired": Failure.REFRESH_EXPIRED,
}

#: Why an access token was refused -> its wire failure.
ACCESS_FAILURES: Mapping[str, Failure] = {
    "expired": Failure.ACCESS_EXPIRED,
    "revoked": Failure.ACCESS_INVALIDATED,
    "unknown": Failure.ACCESS_UNKNOWN,
}


def encode_json(payload: Any) -> bytes:
    """Compact, key-order-preserving JSON: equal payloads give equal bytes."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def ok_json(payload: Any, *, no_store: bool = False) -> tuple[int, bytes, Headers]:
    headers = _JSON_HEADERS + _NO_STORE if no_store else _JSON_HEADERS
    return 200, encode_json(payload), headers


def error_json(
    dialect: ErrorDialect,
    failure: Failure,
    *,
    message: str | None = None,
    param: str | None = None,
    extra_headers: Headers = (),
) -> tuple[int, bytes, Headers]:
    """``failure`` as (status, body, headers) in ``dialect``'s shape."""
    openai_status, rfc_status, code, rfc_error, default_message = failure.value
    text = default_message if message is None else message
    if dialect is ErrorDialect.OPENAI:
        status = openai_status
        payload: dict[str, Any] = {
            "error": {
                "message": text,
                "type": "invalid_request_error",
                "param": param,
                "code": code,
            }
        }
    else:
        status = rfc_status
        payload = {"error": rfc_error, "error_description": text}
    headers = _JSON_HEADERS + extra_headers
    if failure in REFRESH_FAILURES.values() or failure in (
        Failure.INVALID_REQUEST,
        Failure.UNSUPPORTED_GRANT,
    ):
        headers += _NO_STORE
    return status, encode_json(payload), headers


@dataclass(frozen=True, slots=True)
class BadRequest:
    """A body that could not be read as token-request parameters."""

    message: str
    param: str | None = None


def header(headers: Headers, name: str) -> str | None:
    """The first value of header ``name`` (case-insensitive), or ``None``."""
    wanted = name.lower()
    for key, value in headers:
        if key.lower() == wanted:
            return value
    return None


def parse_params(body: bytes, content_type: str | None) -> dict[str, str] | BadRequest:
    """Token-request parameters from a form or JSON body.

    The content type decides; without a usable one, a body whose first
    non-blank byte is ``{`` is taken as JSON (Codex sends JSON), anything
    else as a form.
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == JSON_CT or media.endswith("+json"):
        return _parse_json(body)
    if media == FORM_CT:
        return _parse_form(body)
    if body.lstrip()[:1] == b"{":
        return _parse_json(body)
    return _parse_form(body)


def _parse_json(body: bytes) -> dict[str, str] | BadRequest:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return BadRequest("The request body is not valid JSON.")
    if not isinstance(data, dict):
        return BadRequest("The request body must be a JSON object.")
    params: dict[str, str] = {}
    for key, value in data.items():
        if value is None:
            continue
        if not isinstance(value, str):
            return BadRequest(f"Parameter {_safe_name(key)} must be a string.", _safe_name(key))
        params[key] = value
    return params


def _parse_form(body: bytes) -> dict[str, str] | BadRequest:
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, errors="strict")
    except ValueError:  # UnicodeDecodeError is a ValueError
        return BadRequest("The form body is not valid UTF-8 url-encoding.")
    params: dict[str, str] = {}
    for key, value in pairs:
        if key in params:
            # RFC 6749 §3.2: parameters must not be included more than once.
            return BadRequest(f"Parameter {_safe_name(key)} is repeated.", _safe_name(key))
        params[key] = value
    return params


def _safe_name(name: str) -> str:
    """A parameter name fit to echo back: short, printable, never a token."""
    return "".join(ch if ch.isprintable() else "?" for ch in redact(name)[:40])
