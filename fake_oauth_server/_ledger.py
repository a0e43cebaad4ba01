"""The token ledger: every token, every grant, and the refresh state machine.

Not thread-safe by itself: ``AuthServer`` calls it under one lock.  Pure:
time comes in as ``now`` and tokens are minted from (seed, counter), so the
same calls give byte-identical tokens and audit events.

A grant (a *family*) starts at a login and grows one pair per refresh.  A
refresh token is LIVE until it is presented once (then SPENT, under
rotation) or its grant is revoked (REVOKED).  Presenting a SPENT token again
is *reuse*: tolerated inside the policy's reuse window (audited ACCEPTED with
reason "grace"), otherwise refused with reason "reused", and, under
``revoke_family_on_reuse``, the end of the whole grant.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from ._dialects import AUDIT_REASONS, Failure
from ._messages import AccessCheck, AuditEvent, AuditKind, TokenKind, TokenPair
from ._policy import Policy, ReuseResponse, ReuseScope
from ._tokens import ACCESS_PREFIX, CODE_PREFIX, REFRESH_PREFIX, Minter, fingerprint

_PREFIX = {TokenKind.ACCESS: ACCESS_PREFIX, TokenKind.REFRESH: REFRESH_PREFIX}


class TokenState(enum.Enum):
    LIVE = "live"
    SPENT = "spent"  # a rotated-away refresh token (or a redeemed code)
    REVOKED = "revoked"


@dataclass(slots=True)
class Record:
    kind: TokenKind
    family: str
    generation: int
    expires_at: float | None
    state: TokenState = TokenState.LIVE
    #: For a refresh token: the access token minted with it.
    sibling: str = ""
    #: For a spent refresh token: when it was first spent, the pair it bought, reuses since.
    spent_at: float = 0.0
    successor: TokenPair | None = field(default=None, repr=False)
    reuses: int = 0

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


@dataclass(slots=True)
class Family:
    """One grant: every token minted from a single login, in minting order."""

    name: str
    user: str
    client_id: str
    created_at: float
    last_used: float
    generation: int = 0
    #: The refresh token spent most recently (what ``ReuseScope.PREVIOUS`` covers).
    last_spent: str = field(default="", repr=False)
    #: Why the grant was revoked ("" while it lives).
    revoked: str = ""
    tokens: list[str] = field(default_factory=list, repr=False)


@dataclass(slots=True)
class Code:
    """An authorization code waiting to be redeemed (RFC 6749 §4.1, PKCE RFC 7636)."""

    client_id: str
    redirect_uri: str
    challenge: str
    user: str
    expires_at: float
    state: TokenState = TokenState.LIVE
    #: The grant the code was redeemed for (revoked if the code is replayed).
    family: str = ""


@dataclass(frozen=True, slots=True)
class Refreshed:
    """A refresh that succeeded: the pair to send and whether it came through the window."""

    pair: TokenPair
    grace: bool = False


class Ledger:
    """Tokens, grants and the audit log, with the rules of one ``Policy``."""

    def __init__(self, seed: str, policy: Policy) -> None:
        self.policy = policy
        self.minter = Minter(seed)
        self.tokens: dict[str, Record] = {}
        self.families: dict[str, Family] = {}
        self.audit: list[AuditEvent] = []
        self.codes: dict[str, Code] = {}

    # ------------------------------------------------------------------ logins

    def login(
        self, now: float, request_id: str, user: str, client_id: str, *, grant_record: str = ""
    ) -> TokenPair:
        """A new grant at generation 0, after making room under ``max_grants_per_user``."""
        cap = self.policy.max_grants_per_user
        if cap is not None:
            live = [
                family
                for family in self.families.values()
                if family.user == user
                and family.client_id == client_id
                and not family.revoked
                and self.grant_failure(family, None, now) is None
            ]
            for family in live[: max(0, len(live) - cap + 1)]:
                self.revoke_family(family, now, request_id, client_id, "superseded")
        family = Family(f"fam-{len(self.families) + 1}", user, client_id, now, now)
        self.families[family.name] = family
        return self.mint_pair(family, now, request_id, client_id, refresh=None)

    # ------------------------------------------------------------------ refresh

    def refresh(
        self, presented: str, client_id: str, request_id: str, now: float
    ) -> Refreshed | Failure:
        """The refresh grant (RFC 6749 §6) under the policy's rotation and reuse rules."""
        record = self.tokens.get(presented)
        family = self.families.get(record.family) if record is not None else None
        client = client_id or (family.client_id if family is not None else "")
        token_kind = record.kind if record is not None else TokenKind.REFRESH
        fp = fingerprint(presented)
        fam_name = record.family if record is not None else ""
        generation = record.generation if record is not None else -1

        def log(kind: AuditKind, reason: str = "") -> None:
            self.log(now, request_id, client, kind, token_kind, fp, fam_name, generation, reason)

        log(AuditKind.PRESENTED)
        if record is None or family is None or record.kind is not TokenKind.REFRESH:
            return self._refuse(log, Failure.REFRESH_UNKNOWN)
        if family.revoked or record.state is TokenState.REVOKED:
            superseded = family.revoked == "superseded"
            return self._refuse(
                log, Failure.REFRESH_SUPERSEDED if superseded else Failure.REFRESH_REVOKED
            )
        if record.state is TokenState.SPENT:
            if not self._in_window(record, family, presented, now):
                stale = presented != family.last_spent
                self._refuse(log, Failure.REFRESH_STALE if stale else Failure.REFRESH_REUSED)
                if self.policy.revoke_family_on_reuse:
                    self.revoke_family(family, now, request_id, client, "reused")
                return Failure.REFRESH_STALE if stale else Failure.REFRESH_REUSED
            expiry = self.grant_failure(family, record, now)
            if expiry is not None:
                return self._refuse(log, expiry)
            log(AuditKind.ACCEPTED, "grace")
            record.reuses += 1
            family.last_used = now
            if self.policy.reuse_response is ReuseResponse.SAME and record.successor is not None:
                return Refreshed(record.successor, grace=True)
            family.generation += 1
            return Refreshed(self.mint_pair(family, now, request_id, client, refresh=None), True)
        expiry = self.grant_failure(family, record, now)
        if expiry is not None:
            return self._refuse(log, expiry)
        log(AuditKind.ACCEPTED)
        family.generation += 1
        family.last_used = now
        if self.policy.revoke_access_on_refresh and record.sibling:
            self._revoke(record.sibling, family, now, request_id, client, "rotated")
        if not self.policy.rotation:
            return Refreshed(self.mint_pair(family, now, request_id, client, refresh=presented))
        record.state = TokenState.SPENT
        record.spent_at = now
        family.last_spent = presented
        pair = self.mint_pair(family, now, request_id, client, refresh=None)
        record.successor = pair
        return Refreshed(pair)

    @staticmethod
    def _refuse(log: Callable[[AuditKind, str], None], failure: Failure) -> Failure:
        log(AuditKind.REJECTED, AUDIT_REASONS[failure])
        return failure

    def _in_window(self, record: Record, family: Family, presented: str, now: float) -> bool:
        policy = self.policy
        if not policy.grace:
            return False
        if policy.reuse_scope is ReuseScope.PREVIOUS and presented != family.last_spent:
            return False
        if policy.reuse_window is not None and now - record.spent_at >= policy.reuse_window:
            return False
        return policy.max_reuse is None or record.reuses < policy.max_reuse

    def grant_failure(self, family: Family, record: Record | None, now: float) -> Failure | None:
        """Why the grant (or this token of it) has run out of time, if it has."""
        if record is not None and record.expired(now):
            return Failure.REFRESH_EXPIRED
        idle = self.policy.refresh_idle_lifetime
        if idle is not None and now >= family.last_used + idle:
            return Failure.REFRESH_IDLE
        absolute = self.policy.refresh_absolute_lifetime
        if absolute is not None and now >= family.created_at + absolute:
            return Failure.REFRESH_ENDED
        return None

    # ------------------------------------------------------------------ revocation

    def revoke_family(
        self, family: Family, now: float, request_id: str, client: str, reason: str
    ) -> None:
        """Revoke every live token of the grant, access tokens included (RFC 9700 §4.14.2)."""
        family.revoked = family.revoked or reason
        for token in family.tokens:
            self._revoke(token, family, now, request_id, client, reason)

    def _revoke(
        self, token: str, family: Family, now: float, request_id: str, client: str, reason: str
    ) -> None:
        record = self.tokens[token]
        if record.state is TokenState.LIVE and not record.expired(now):
            record.state = TokenState.REVOKED
            self.log(
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

    # ------------------------------------------------------------------ access tokens

    def check_access(self, token: str, now: float) -> AccessCheck:
        record = self.tokens.get(token)
        if record is None or record.kind is not TokenKind.ACCESS:
            return AccessCheck(False, "unknown")
        if record.state is TokenState.REVOKED:
            return AccessCheck(False, "revoked", record.family, record.generation)
        if record.expired(now):
            return AccessCheck(False, "expired", record.family, record.generation)
        return AccessCheck(True, "", record.family, record.generation)

    # ------------------------------------------------------------------ minting and audit

    def mint_pair(
        self, family: Family, now: float, request_id: str, client: str, *, refresh: str | None
    ) -> TokenPair:
        """Mint an access token (and a refresh token unless ``refresh`` is kept)."""
        generation = family.generation
        access_expiry = now + self.policy.access_token_lifetime
        access = self.mint(TokenKind.ACCESS, family, access_expiry, now, request_id, client)
        if refresh is None:
            lifetime = self.policy.refresh_token_lifetime
            expiry = None if lifetime is None else now + lifetime
            refresh = self.mint(TokenKind.REFRESH, family, expiry, now, request_id, client)
            self.tokens[refresh].sibling = access
        return TokenPair(access, refresh, access_expiry, family.name, generation)

    def mint(
        self,
        kind: TokenKind,
        family: Family,
        expires_at: float | None,
        now: float,
        request_id: str,
        client: str,
    ) -> str:
        token = self.mint_raw(_PREFIX[kind])
        self.tokens[token] = Record(kind, family.name, family.generation, expires_at)
        family.tokens.append(token)
        self.log(
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

    def mint_raw(self, prefix: str) -> str:
        """A fresh token or code with ``prefix``, distinct from every one minted before."""
        token = self.minter.mint(prefix)
        while token in self.tokens:  # a sha256 collision; never seen, but stay single-use
            token = self.minter.mint(prefix)
        return token

    def mint_code(self) -> str:
        code = self.minter.mint(CODE_PREFIX)
        while code in self.codes:
            code = self.minter.mint(CODE_PREFIX)
        return code

    def log(
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
        self.audit.append(
            AuditEvent(now, request_id, client, kind, token_kind, fp, family, generation, reason)
        )
