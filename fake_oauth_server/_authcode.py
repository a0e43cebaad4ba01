"""Logging in for real: ``GET /authorize`` and the ``authorization_code`` grant with PKCE.

``/authorize`` approves at once (there is no user to ask) and redirects to
the client's ``redirect_uri`` with a one-time code; the client redeems it
at ``/oauth/token`` with its PKCE ``code_verifier`` (RFC 7636, S256 only)
and gets a new grant, exactly as a login does.  A code presented twice is
refused and the grant it bought is revoked (RFC 6749 §4.1.2).
"""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import urlencode, urlsplit

from ._dialects import Failure
from ._ledger import Code, Ledger, TokenState
from ._messages import AuditKind, TokenKind, TokenPair
from ._tokens import fingerprint
from ._wire import BadRequest, Headers, encode_json, parse_form

AUTHORIZE_PATH = "/authorize"
#: Seconds a code may wait to be redeemed.
CODE_LIFETIME = 60.0
_PKCE = re.compile(r"[A-Za-z0-9._~-]{43,128}")
_URI_CHARS = re.compile(r"[!-~]+")  # printable ASCII, no space


class AuthorizeError(Exception):
    """A request ``/authorize`` cannot redirect for: answered with a JSON error."""

    def __init__(self, failure: Failure, message: str | None = None, param: str | None = None):
        super().__init__(message or failure.name)
        self.failure = failure
        self.message = message
        self.param = param


def authorize(
    ledger: Ledger, query: str, now: float, request_id: str, issuer: str
) -> tuple[int, bytes, Headers]:
    """Approve an authorization request; raises ``AuthorizeError`` when it cannot redirect."""
    params = parse_form(query)
    if isinstance(params, BadRequest):
        raise AuthorizeError(Failure.INVALID_REQUEST, params.message, params.param)
    redirect_uri = params.get("redirect_uri", "")
    if not redirect_uri:
        raise AuthorizeError(Failure.MISSING_PARAMETER, param="redirect_uri")
    if not _usable_redirect(redirect_uri):
        raise AuthorizeError(
            Failure.INVALID_REQUEST, "redirect_uri must be an absolute URI.", "redirect_uri"
        )
    client_id = params.get("client_id", "")
    if not client_id:
        raise AuthorizeError(Failure.MISSING_PARAMETER, param="client_id")
    state = params.get("state")
    error = _authorize_error(params)
    if error:
        answer = {"error": error[0], "error_description": error[1]}
        return _redirect(redirect_uri, answer, state, issuer)
    user = params.get("login_hint") or params.get("user") or "user"
    code = ledger.mint_code()
    ledger.codes[code] = Code(
        client_id, redirect_uri, params["code_challenge"], user[:200], now + CODE_LIFETIME
    )
    ledger.log(
        now, request_id, client_id, AuditKind.ISSUED, TokenKind.CODE, fingerprint(code), "", -1
    )
    return _redirect(redirect_uri, {"code": code}, state, issuer)


def _authorize_error(params: dict[str, str]) -> tuple[str, str] | None:
    if params.get("response_type") != "code":
        return "unsupported_response_type", "Only response_type=code is supported."
    challenge = params.get("code_challenge", "")
    if not challenge:
        return "invalid_request", "PKCE is required: send code_challenge."
    if params.get("code_challenge_method", "plain") != "S256":
        return "invalid_request", "Only code_challenge_method=S256 is supported."
    if not _PKCE.fullmatch(challenge):
        return "invalid_request", "code_challenge must be 43-128 unreserved characters."
    return None


def _usable_redirect(uri: str) -> bool:
    if len(uri) > 2000 or not _URI_CHARS.fullmatch(uri):
        return False
    try:
        parts = urlsplit(uri)
    except ValueError:
        return False
    if not parts.scheme or parts.fragment:
        return False
    return bool(parts.netloc) or parts.scheme not in ("http", "https")


def _redirect(
    uri: str, answer: dict[str, str], state: str | None, issuer: str
) -> tuple[int, bytes, Headers]:
    """RFC 6749 §4.1.2: back to the client, with ``iss`` (RFC 9207) and ``state``."""
    query = dict(answer)
    if state is not None:
        query["state"] = state
    query["iss"] = issuer
    location = uri + ("&" if "?" in uri else "?") + urlencode(query)
    body = encode_json({"location": location})
    return 302, body, (("content-type", "application/json"), ("location", location))


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of ``verifier``."""
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def redeem(
    ledger: Ledger, params: dict[str, str], request_id: str, now: float
) -> TokenPair | tuple[Failure, str | None]:
    """The ``authorization_code`` grant: a code and its verifier for a new grant."""
    for name in ("code", "redirect_uri", "code_verifier"):
        if not params.get(name):
            return Failure.MISSING_PARAMETER, name
    code = params["code"]
    record = ledger.codes.get(code)
    client = params.get("client_id", "") or (record.client_id if record else "")
    fp = fingerprint(code)
    family = record.family if record is not None else ""

    def log(kind: AuditKind, reason: str = "") -> None:
        ledger.log(now, request_id, client, kind, TokenKind.CODE, fp, family, -1, reason)

    log(AuditKind.PRESENTED)
    if record is None:
        log(AuditKind.REJECTED, "unknown")
        return Failure.CODE_INVALID, None
    if record.state is TokenState.SPENT:
        log(AuditKind.REJECTED, "reused")
        grant = ledger.families.get(record.family)
        if grant is not None:
            ledger.revoke_family(grant, now, request_id, client, "code_reused")
        return Failure.CODE_INVALID, None
    reason = _code_mismatch(record, params, now)
    if reason:
        log(AuditKind.REJECTED, reason)
        return (Failure.PKCE_FAILED if reason == "pkce" else Failure.CODE_INVALID), None
    log(AuditKind.ACCEPTED)
    record.state = TokenState.SPENT
    pair = ledger.login(now, request_id, record.user, record.client_id)
    record.family = pair.family
    return pair


def _code_mismatch(record: Code, params: dict[str, str], now: float) -> str:
    if now >= record.expires_at:
        return "expired"
    client_id = params.get("client_id")
    if client_id and client_id != record.client_id:
        return "client_mismatch"
    if params["redirect_uri"] != record.redirect_uri:
        return "redirect_mismatch"
    verifier = params["code_verifier"]
    if not _PKCE.fullmatch(verifier) or s256(verifier) != record.challenge:
        return "pkce"
    return ""
