"""The token authority: a pure, deterministic state machine behind one lock.

``AuthServer.handle(request, now)`` is the whole HTTP surface as a function:
no sockets, no clock, no randomness.  Time comes in as ``now`` and tokens are
minted from (seed, counter), so a schedule that sends the same requests at
the same virtual times gets byte-identical responses and audit log.  Every
state change happens under one ``threading.Lock``, so even when real threads
call ``handle`` at once, two refreshes of one token can never both pass the
single-use check (Keycloak once let that happen: GHSA-m2w5-7xhv-w6fh).

Faults (``FaultPlan``) are data too: ``next_fault`` advances the plan and
``deliver`` applies a fault's effect on state and says what reaches the wire.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from ._authcode import AUTHORIZE_PATH, AuthorizeError, authorize, redeem
from ._dialects import Failure, error_response
from ._faults import PASS, TOKEN_PATH, Delivery, Fault, FaultKind, FaultPlan
from ._jwt import SigningKey, jwks, openai_access_token, openai_id_token, signing_key
from ._ledger import Ledger
from ._messages import AccessCheck, AuditEvent, AuditKind, Request, Response, TokenKind, TokenPair
from ._policy import Policy
from ._tokens import fingerprint, inner_token
from ._wire import BadRequest, Headers, ok_json, parse_params, split_agent, split_target

__all__ = [
    "AUTHORIZE_PATH",
    "DEFAULT_ISSUER",
    "JWKS_PATH",
    "METADATA_PATH",
    "OPENID_PATH",
    "ME_PATH",
    "TOKEN_PATH",
    "AuthServer",
]

DEFAULT_ISSUER = "http://127.0.0.1:8900"
ME_PATH = "/v1/me"
METADATA_PATH = "/.well-known/oauth-authorization-server"
#: The JWK Set of the keys that sign the server's JWTs (RFC 7517; empty under HS256).
JWKS_PATH = "/.well-known/jwks.json"
#: OpenID Connect discovery: the issuer, its endpoints and ``jwks_uri``.
OPENID_PATH = "/.well-known/openid-configuration"

DEFAULT_POLICY = Policy()
_ROUTES = {
    TOKEN_PATH: "POST",
    ME_PATH: "GET",
    METADATA_PATH: "GET",
    AUTHORIZE_PATH: "GET",
    JWKS_PATH: "GET",
    OPENID_PATH: "GET",
}

Answer = tuple[int, bytes, Headers]


class AuthServer:
    """A deterministic OAuth token authority with a configurable refresh policy."""

    def __init__(
        self, policy: Policy = DEFAULT_POLICY, *, seed: str = "0", issuer: str = DEFAULT_ISSUER
    ) -> None:
        self._seed = seed
        self._issuer = issuer.rstrip("/")
        self._lock = threading.Lock()
        self._ledger = Ledger(seed, policy)
        self._plan = FaultPlan()
        self._plan_index = 0

    def __repr__(self) -> str:
        return f"AuthServer(policy={self.policy!r}, families={len(self._ledger.families)})"

    @property
    def policy(self) -> Policy:
        return self._ledger.policy

    @property
    def issuer(self) -> str:
        return self._issuer

    @property
    def audit(self) -> tuple[AuditEvent, ...]:
        """A snapshot of the audit log, oldest first."""
        with self._lock:
            return tuple(self._ledger.audit)

    def audit_since(self, index: int) -> tuple[AuditEvent, ...]:
        """The audit events from position ``index`` on (for tailing the log)."""
        with self._lock:
            return tuple(self._ledger.audit[max(0, index) :])

    # ---------------------------------------------------------------- configuration

    def set_policy(self, policy: Policy) -> None:
        """Change the policy from the next request on; tokens and grants are kept."""
        with self._lock:
            self._ledger.policy = policy

    def reset(self, *, seed: str | None = None, policy: Policy | None = None) -> None:
        """Forget every token, grant, audit event and fault, as a fresh server would."""
        with self._lock:
            if seed is not None:
                self._seed = seed
            self._ledger = Ledger(self._seed, policy or self._ledger.policy)
            self._plan, self._plan_index = FaultPlan(), 0

    def set_faults(
        self, plan: FaultPlan | Iterable[Fault] | Callable[[Request], Fault | None] | None
    ) -> None:
        """Script faults for the next requests (replacing any plan); ``None`` clears."""
        if plan is None:
            plan = FaultPlan()
        elif not isinstance(plan, FaultPlan):
            plan = FaultPlan(plan)
        with self._lock:
            self._plan, self._plan_index = plan, 0

    @property
    def pending_faults(self) -> tuple[Fault, ...]:
        """Scripted faults not played yet."""
        with self._lock:
            return self._plan.remaining(self._plan_index)

    @property
    def fault_paths(self) -> frozenset[str]:
        with self._lock:
            return self._plan.paths

    # ---------------------------------------------------------------- queries

    def family_of(self, token: str) -> tuple[str, int] | None:
        """(family, generation) of any token this server minted, else ``None``."""
        with self._lock:
            record = self._ledger.tokens.get(token)
            return None if record is None else (record.family, record.generation)

    def token_state(self, token: str) -> str:
        """``live``, ``spent`` (rotated away), ``revoked`` or ``unknown``: what a store holds."""
        with self._lock:
            record = self._ledger.tokens.get(token)
            return "unknown" if record is None else record.state.value

    def check_access(self, access_token: str, now: float) -> AccessCheck:
        """Would a resource server accept ``access_token`` at ``now``?  Read-only, not audited."""
        with self._lock:
            return self._ledger.check_access(inner_token(access_token), now)

    # ---------------------------------------------------------------- commands

    def seed_grant(
        self, now: float, *, user: str = "user", client_id: str = "tokenrace"
    ) -> TokenPair:
        """A fresh login: a new family at generation 0 (audited with request_id "seed")."""
        with self._lock:
            return self._ledger.login(now, "seed", user, client_id)

    def handle(self, request: Request, now: float) -> Response:
        """Answer one HTTP request.  Never raises: bad input gets an OAuth-style JSON error."""
        try:
            status, body, headers = self._route(request, now)
        except Exception:  # a bug here must not become a traceback on the wire
            status, body, headers = self._error(Failure.SERVER_ERROR, request, now)
        return Response(status, body, headers)

    def next_fault(self, request: Request) -> Fault:
        """The fault the plan holds for ``request`` (advancing the plan), or no fault."""
        with self._lock:
            plan = self._plan
            if not plan.applies(request):
                return PASS
            index = self._plan_index
            self._plan_index += 1
        return plan.pick(request, index)

    def deliver(self, request: Request, now: float, fault: Fault | None = None) -> Delivery:
        """Handle ``request`` under ``fault`` (by default the plan's next one).

        The core does not sleep: a surface waits ``fault.latency`` before
        calling this.  A fault other than ``pass``/``latency`` is audited as
        a ``FAULT`` event carrying the fault's kind.
        """
        if fault is None:
            fault = self.next_fault(request)
        if fault.kind in (FaultKind.PASS, FaultKind.LATENCY):
            response = self.handle(request, now)
            return Delivery(fault, response, response)
        if fault.kind is FaultKind.DROP:
            response = self.handle(request, now)
            self._log_fault(request, now, fault)
            return Delivery(fault, None, response)
        self._log_fault(request, now, fault)
        if fault.kind is FaultKind.RESET:
            return Delivery(fault, None, None)
        limited = fault.kind is FaultKind.RATE_LIMIT
        failure = Failure.RATE_LIMITED if limited else Failure.UNAVAILABLE
        retry: Headers = ()
        if fault.retry_after is not None:
            retry = (("retry-after", str(fault.retry_after)),)
        status, body, headers = self._error(
            failure, request, now, status=fault.status, extra_headers=retry
        )
        return Delivery(fault, Response(status, body, headers), None)

    # ---------------------------------------------------------------- routing

    def _route(self, request: Request, now: float) -> Answer:
        agent, path = split_agent(split_target(request.path)[0])
        query = split_target(request.path)[1]
        method = request.method.upper()
        allowed = _ROUTES.get(path)
        if allowed is None:
            return self._error(Failure.NOT_FOUND, request, now)
        if method != allowed:
            allow = (("allow", allowed),)
            return self._error(Failure.METHOD_NOT_ALLOWED, request, now, extra_headers=allow)
        if path == TOKEN_PATH:
            return self._token_endpoint(request, now, agent)
        if path == ME_PATH:
            return self._me_endpoint(request, now)
        if path == AUTHORIZE_PATH:
            with self._lock:
                try:
                    return authorize(self._ledger, query, now, request.request_id, self._issuer)
                except AuthorizeError as error:
                    return self._error(
                        error.failure, request, now, message=error.message, param=error.param
                    )
        if path == JWKS_PATH:
            return ok_json(self.jwks())
        if path == OPENID_PATH:
            return ok_json(self.openid_configuration())
        return ok_json(self.metadata())

    def metadata(self) -> dict[str, object]:
        """RFC 8414 authorization server metadata."""
        return {
            "issuer": self._issuer,
            "authorization_endpoint": self._issuer + AUTHORIZE_PATH,
            "token_endpoint": self._issuer + TOKEN_PATH,
            "jwks_uri": self._issuer + JWKS_PATH,
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "authorization_response_iss_parameter_supported": True,
        }

    def openid_configuration(self) -> dict[str, object]:
        """OpenID Connect Discovery 1.0 metadata: RFC 8414's plus what OpenID requires."""
        algorithm = self._signer().algorithm
        return self.metadata() | {
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [algorithm],
        }

    def jwks(self) -> dict[str, object]:
        """The JWK Set at ``JWKS_PATH``: the RS256 public key, or no key under HS256."""
        with self._lock:
            seed, signing = self._seed, self._ledger.policy.jwt_signing
        return jwks(seed, signing)

    def _error(
        self,
        failure: Failure,
        request: Request,
        now: float,
        *,
        message: str | None = None,
        param: str | None = None,
        status: int | None = None,
        extra_headers: Headers = (),
    ) -> Answer:
        return error_response(
            self._ledger.policy.dialect,
            failure,
            message=message,
            param=param,
            status=status,
            extra_headers=extra_headers,
            now=now,
            request_id=request.request_id,
        )

    # ---------------------------------------------------------------- /oauth/token

    def _token_endpoint(self, request: Request, now: float, agent: str = "") -> Answer:
        params = parse_params(request.body, request.header("content-type"))
        if isinstance(params, BadRequest):
            return self._error(
                Failure.INVALID_REQUEST, request, now, message=params.message, param=params.param
            )
        grant_type = params.get("grant_type", "")
        if not grant_type:
            return self._error(Failure.MISSING_PARAMETER, request, now, param="grant_type")
        if grant_type == "authorization_code":
            with self._lock:
                result = redeem(self._ledger, params, request.request_id, now)
            if isinstance(result, TokenPair):
                return ok_json(result.to_json(now), no_store=True)
            failure, param = result
            return self._error(failure, request, now, param=param)
        if grant_type != "refresh_token":
            return self._error(Failure.UNSUPPORTED_GRANT, request, now, param="grant_type")
        presented = params.get("refresh_token", "")
        if not presented:
            return self._error(Failure.MISSING_PARAMETER, request, now, param="refresh_token")
        client_id = agent or params.get("client_id", "")  # the agent's own endpoint names it
        with self._lock:
            outcome = self._ledger.refresh(presented, client_id, request.request_id, now)
            if isinstance(outcome, Failure):
                return self._error(outcome, request, now)
            user = self._ledger.families[outcome.pair.family].user
        answer = outcome.pair.to_json(now)
        if self.policy.jwt_access_tokens:
            answer["access_token"] = self.access_jwt(outcome.pair, user)
        if self.policy.id_tokens:
            answer["id_token"] = self.id_token(user, now)
        return ok_json(answer, no_store=True)

    def access_jwt(self, pair: TokenPair, user: str) -> str:
        """``pair``'s access token as the JWT ``Policy.jwt_access_tokens`` hands out."""
        return openai_access_token(
            pair.access_token, user, pair.expires_at, issuer=self._issuer, key=self._signer()
        )

    def id_token(self, user: str, now: float) -> str:
        """An OpenID id_token for ``user`` as OpenAI's issuer shapes it (see ``_jwt``)."""
        return openai_id_token(user, now, issuer=self._issuer, key=self._signer())

    def _signer(self) -> SigningKey:
        """The key the JWTs are signed with now (``Policy.jwt_signing``, the seed)."""
        with self._lock:
            seed, signing = self._seed, self._ledger.policy.jwt_signing
        return signing_key(seed, signing)  # outside the lock: deriving an RSA key takes a while

    # ---------------------------------------------------------------- /v1/me

    def _me_endpoint(self, request: Request, now: float) -> Answer:
        token = _bearer(request)
        if not token:
            challenge = (("www-authenticate", 'Bearer realm="tokenrace"'),)
            return self._error(Failure.ACCESS_MISSING, request, now, extra_headers=challenge)
        with self._lock:
            ledger = self._ledger
            check = ledger.check_access(token, now)
            record = ledger.tokens.get(token)
            kind = record.kind if record is not None else TokenKind.ACCESS
            family = ledger.families.get(check.family)
            client = family.client_id if family is not None else ""
            fp = fingerprint(token)

            def log(audit_kind: AuditKind, reason: str = "") -> None:
                ledger.log(
                    now,
                    request.request_id,
                    client,
                    audit_kind,
                    kind,
                    fp,
                    check.family,
                    check.generation,
                    reason,
                )

            log(AuditKind.PRESENTED)
            if not check.ok:
                log(AuditKind.REJECTED, check.reason)
            else:
                log(AuditKind.ACCEPTED)
        if not check.ok:
            challenge = (("www-authenticate", 'Bearer error="invalid_token"'),)
            failure = _ACCESS_FAILURES[check.reason]
            return self._error(failure, request, now, extra_headers=challenge)
        assert family is not None
        return ok_json({"user": family.user, "family": family.name})

    # ---------------------------------------------------------------- faults

    def _log_fault(self, request: Request, now: float, fault: Fault) -> None:
        kind, token = _presented(request)
        with self._lock:
            record = self._ledger.tokens.get(token) if token else None
            family = record.family if record is not None else ""
            generation = record.generation if record is not None else -1
            client = ""
            if record is not None:
                client = self._ledger.families[record.family].client_id
            self._ledger.log(
                now,
                request.request_id,
                client,
                AuditKind.FAULT,
                record.kind if record is not None else kind,
                fingerprint(token) if token else "",
                family,
                generation,
                fault.kind.value,
            )


_ACCESS_FAILURES = {
    "expired": Failure.ACCESS_EXPIRED,
    "revoked": Failure.ACCESS_REVOKED,
    "unknown": Failure.ACCESS_UNKNOWN,
}


def _bearer(request: Request) -> str:
    scheme, _, token = (request.header("authorization") or "").strip().partition(" ")
    return inner_token(token.strip()) if scheme.lower() == "bearer" else ""


def _presented(request: Request) -> tuple[TokenKind, str]:
    """The token a request carries, as far as can be told without judging it."""
    path = split_agent(split_target(request.path)[0])[1]
    if path != TOKEN_PATH:
        return TokenKind.ACCESS, _bearer(request)
    params = parse_params(request.body, request.header("content-type"))
    if isinstance(params, BadRequest):
        return TokenKind.REFRESH, ""
    if params.get("grant_type") == "authorization_code":
        return TokenKind.CODE, params.get("code", "")
    return TokenKind.REFRESH, params.get("refresh_token", "")
