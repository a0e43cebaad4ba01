"""The token authority: a pure, deterministic state machine behind one lock.

``AuthServer.handle(request, now)`` is the whole HTTP surface as a function:
no sockets, no clock, no randomness.  Time comes in as ``now`` and tokens are
minted from (seed, counter), so a schedule that sends the same requests at
the same virtual times gets byte-identical responses and audit log.  Every
state change happens under one ``threading.Lock``, so even when real threads
call ``handle`` at once, two refreshes of one token can never both pass the
single-use check (Keycloak once let that happen).
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field

from ._messages import (
    AccessCheck,
    AuditEvent,
    AuditKind,
    Request,
    Response,
    TokenKind,
    TokenPair,
)
from ._policy import Policy
from ._tokens import ACCESS_PREFIX, REFRESH_PREFIX, Minter, fingerprint
from ._wire import (
    ACCESS_FAILURES,
    REFRESH_FAILURES,
    BadRequest,
    Failure,
    Headers,
    error_json,
    ok_json,
    parse_params,
)

__all__ = [
    "DEFAULT_ISSUER",
    "METADATA_PATH",
    "ME_PATH",
    "TOKEN_PATH",
    "AccessCheck",
    "AuditEvent",
    "AuditKind",
    "AuthServer",
    "Request",
    "Response",
    "TokenKind",
    "TokenPair",
]

DEFAULT_ISSUER = "http://127.0.0.1:8900"
TOKEN_PATH = "/oauth/token"
ME_PATH = "/v1/me"
METADATA_PATH = "/.well-known/oauth-authorization-server"

DEFAULT_POLICY = Policy()


# -------------------------------------------------------------------- ledger


class _State(enum.Enum):
    LIVE = "live"
    SPENT = "spent"  # a rotated-away refresh token: presenting it again is reuse
    REVOKED = "revoked"


@dataclass(slots=True)
class _Record:
    kind: TokenKind
    family: str
    generation: int
    expires_at: float | None
    state: _State = _State.LIVE

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


@dataclass(slots=True)
class _Family:
    """One grant: every token minted from a single login, in minting order."""

    name: str
    user: str
    client_id: str
    generation: int = 0
    tokens: list[str] = field(default_factory=list, repr=False)


# -------------------------------------------------------------------- server


class AuthServer:
    """A deterministic OAuth token authority with a configurable refresh policy."""

    def __init__(
        self, policy: Policy = DEFAULT_POLICY, *, seed: str = "0", issuer: str = DEFAULT_ISSUER
    ) -> None:
        self._policy = policy
        self._issuer = issuer.rstrip("/")
        self._minter = Minter(seed)
        self._lock = threading.Lock()
        self._tokens: dict[str, _Record] = {}
        self._families: dict[str, _Family] = {}
        self._audit: list[AuditEvent] = []

    def __repr__(self) -> str:
        return f"AuthServer(policy={self._policy!r}, families={len(self._families)})"

    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def audit(self) -> tuple[AuditEvent, ...]:
        """A snapshot of the audit log, oldest first."""
        with self._lock:
            return tuple(self._audit)

    # ---------------------------------------------------------------- queries

    def family_of(self, token: str) -> tuple[str, int] | None:
        """(family, generation) of any token this server minted, else ``None``."""
        with self._lock:
            record = self._tokens.get(token)
            return None if record is None else (record.family, record.generation)

    def check_access(self, access_token: str, now: float) -> AccessCheck:
        """Would a resource server accept ``access_token`` at ``now``?  Read-only, not audited."""
        with self._lock:
            return self._check_access(access_token, now)

    # ---------------------------------------------------------------- commands

    def seed_grant(
        self, now: float, *, user: str = "user", client_id: str = "tokenrace"
    ) -> TokenPair:
        """A fresh login: a new family at generation 0 (audited with request_id "seed")."""
        with self._lock:
            family = _Family(f"fam-{len(self._families) + 1}", user, client_id)
            self._families[family.name] = family
            return self._mint_pair(family, now, "seed", client_id, refresh=None)

    def handle(self, request: Request, now: float) -> Response:
        """Answer one HTTP request.  Never raises: bad input gets an OAuth-style JSON error."""
        try:
            status, body, headers = self._route(request, now)
        except Exception:  # a bug here must not become a traceback on the wire
            status, body, headers = self._error(Failure.SERVER_ERROR)
        return Response(status, body, headers)

    # ---------------------------------------------------------------- routing

    def _route(self, request: Request, now: float) -> tuple[int, bytes, Headers]:
        path = request.path.split("?", 1)[0].split("#", 1)[0]
        method = request.method.upper()
        routes = {TOKEN_PATH: "POST", ME_PATH: "GET", METADATA_PATH: "GET"}
        allowed = routes.get(path)
        if allowed is None:
            return self._error(Failure.NOT_FOUND)
        if method != allowed:
            return self._error(Failure.METHOD_NOT_ALLOWED, extra_headers=(("allow", allowed),))
        if path == TOKEN_PATH:
            return self._token_endpoint(request, now)
        if path == ME_PATH:
            return self._me_endpoint(request, now)
        return ok_json(
            {
                "issuer": self._issuer,
                "token_endpoint": self._issuer + TOKEN_PATH,
                "grant_types_supported": ["refresh_token"],
                "token_endpoint_auth_methods_supported": ["none"],
            }
        )

    def _error(
        self,
        failure: Failure,
        *,
        message: str | None = None,
        param: str | None = None,
        extra_headers: Headers = (),
    ) -> tuple[int, bytes, Headers]:
        return error_json(
            self._policy.dialect,
            failure,
            message=message,
            param=param,
            extra_headers=extra_headers,
        )

    # ---------------------------------------------------------------- /oauth/token

    def _token_endpoint(self, request: Request, now: float) -> tuple[int, bytes, Headers]:
        params = parse_params(request.body, request.header("content-type"))
        if isinstance(params, BadRequest):
            return self._error(Failure.INVALID_REQUEST, message=params.message, param=params.param)
        grant_type = params.get("grant_type", "")
        if not grant_type:
            return self._missing("grant_type")
        if grant_type != "refresh_token":
            return self._error(Failure.UNSUPPORTED_GRANT, param="grant_type")
        presented = params.get("refresh_token", "")
        if not presented:
            return self._missing("refresh_token")
        with self._lock:
            return self._refresh(presented, params.get("client_id", ""), request.request_id, now)

    def _missing(self, param: str) -> tuple[int, bytes, Headers]:
        message = f"Missing required parameter: {param}."
        return self._error(Failure.INVALID_REQUEST, message=message, param=param)

    def _refresh(
        self, presented: str, client_id: str, request_id: str, now: float
    ) -> tuple[int, bytes, Headers]:
        """The refresh grant (RFC 6749 §6) with one-time rotation; caller holds the lock."""
        record = self._tokens.get(presented)
        family = self._families[record.family] if record is not None else None
        client = client_id or (family.client_id if family is not None else "")
        token_kind = record.kind if record is not None else TokenKind.REFRESH
        fp = fingerprint(presented)
        fam_name = record.family if record is not None else ""
        generation = record.generation if record is not None else -1

        def log(kind: AuditKind, reason: str = "") -> None:
            self._log(now, request_id, client, kind, token_kind, fp, fam_name, generation, reason)

        log(AuditKind.PRESENTED)
        reason = self._refresh_rejection(record, now)
        if reason:
            log(AuditKind.REJECTED, reason)
            if reason == "reused" and self._policy.revoke_family_on_reuse and family is not None:
                self._revoke_family(family, now, request_id, client, "reused")
            return self._error(REFRESH_FAILURES[reason])
        # No rejection means a live refresh token of a known family.
        assert record is not None
        assert family is not None
        log(AuditKind.ACCEPTED)
        family.generation += 1
        if self._policy.rotation:
            record.state = _State.SPENT
            pair = self._mint_pair(family, now, request_id, client, refresh=None)
        else:
            pair = self._mint_pair(family, now, request_id, client, refresh=presented)
        return ok_json(
            {
                "access_token": pair.access_token,
                "refresh_token": pair.refresh_token,
                "token_type": "Bearer",
                "expires_in": int(self._policy.access_token_lifetime),
            },
            no_store=True,
        )

    @staticmethod
    def _refresh_rejection(record: _Record | None, now: float) -> str:
        if record is None or record.kind is not TokenKind.REFRESH:
            return "unknown"
        if record.state is _State.REVOKED:
            return "revoked"
        if record.state is _State.SPENT:
            return "reused"
        if record.expired(now):
            return "expired"
        return ""

    def _revoke_family(
        self, family: _Family, now: float, request_id: str, client: str, reason: str
    ) -> None:
        """RFC 9700 §4.14.2: revoke every live token of the grant, access tokens included."""
        for token in family.tokens:
            record = self._tokens[token]
            if record.state is _State.LIVE and not record.expired(now):
                record.state = _State.REVOKED
                self._log(
                    now,
                    request_id,
                    client,
                    AuditKind.REVOKED,
                    record.kind,
                    fingerprint(token),
                    family.name,
                    record.generation,
                    reason,
                )

    # ---------------------------------------------------------------- /v1/me

    def _me_endpoint(self, request: Request, now: float) -> tuple[int, bytes, Headers]:
        scheme, _, token = (request.header("authorization") or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            challenge = (("www-authenticate", 'Bearer realm="tokenrace"'),)
            return self._error(Failure.ACCESS_MISSING, extra_headers=challenge)
        with self._lock:
            check = self._check_access(token, now)
            record = self._tokens.get(token)
            kind = record.kind if record is not None else TokenKind.ACCESS
            family = self._families.get(check.family)
            client = family.client_id if family is not None else ""
            args = (request.request_id, client)
            fp = fingerprint(token)
            self._log(now, *args, AuditKind.PRESENTED, kind, fp, check.family, check.generation)
            if not check.ok:
                self._log(
                    now,
                    *args,
                    AuditKind.REJECTED,
                    kind,
                    fp,
                    check.family,
                    check.generation,
                    check.reason,
                )
                challenge = (("www-authenticate", 'Bearer error="invalid_token"'),)
                return self._error(ACCESS_FAILURES[check.reason], extra_headers=challenge)
            self._log(now, *args, AuditKind.ACCEPTED, kind, fp, check.family, check.generation)
        assert family is not None
        return ok_json({"user": family.user, "family": family.name})

    def _check_access(self, token: str, now: float) -> AccessCheck:
        record = self._tokens.get(token)
        if record is None or record.kind is not TokenKind.ACCESS:
            return AccessCheck(False, "unknown")
        if record.state is _State.REVOKED:
            return AccessCheck(False, "revoked", record.family, record.generation)
        if record.expired(now):
            return AccessCheck(False, "expired", record.family, record.generation)
        return AccessCheck(True, "", record.family, record.generation)

    # ---------------------------------------------------------------- minting and audit

    def _mint_pair(
        self, family: _Family, now: float, request_id: str, client: str, *, refresh: str | None
    ) -> TokenPair:
        """Mint an access token (and a refresh token unless ``refresh`` is kept)."""
        generation = family.generation
        access_expiry = now + self._policy.access_token_lifetime
        access = self._mint(TokenKind.ACCESS, family, access_expiry, now, request_id, client)
        if refresh is None:
            lifetime = self._policy.refresh_token_lifetime
            expiry = None if lifetime is None else now + lifetime
            refresh = self._mint(TokenKind.REFRESH, family, expiry, now, request_id, client)
        return TokenPair(access, refresh, access_expiry, family.name, generation)

    def _mint(
        self,
        kind: TokenKind,
        family: _Family,
        expires_at: float | None,
        now: float,
        request_id: str,
        client: str,
    ) -> str:
        prefix = ACCESS_PREFIX if kind is TokenKind.ACCESS else REFRESH_PREFIX
        token = self._minter.mint(prefix)
        while token in self._tokens:  # a sha256 collision; never seen, but stay single-use
            token = self._minter.mint(prefix)
        self._tokens[token] = _Record(kind, family.name, family.generation, expires_at)
        family.tokens.append(token)
        self._log(
            now,
            request_id,
            client,
            AuditKind.ISSUED,
            kind,
            fingerprint(token),
            family.name,
            family.generation,
        )
        return token

    def _log(
        self,
        now: float,
        request_id: str,
        client: str,
        kind: AuditKind,
        token_kind: TokenKind,
        fp: str,
        family: str,
        generation: int,
        reason: str = "",
    ) -> None:
        self._audit.append(
            AuditEvent(now, request_id, client, kind, token_kind, fp, family, generation, reason)
        )
