"""The vocabulary of the fake server: requests, responses, token pairs, audit events.

Plain frozen values, so they can be compared, hashed and replayed.  Their
``repr`` shows fingerprints in place of tokens, so printing one in a failing
test or a log never leaks a credential.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._tokens import fingerprint, redact
from ._wire import header


@dataclass(frozen=True, slots=True)
class Request:
    """An HTTP request as the core sees it; ``request_id`` tags its audit events."""

    method: str
    path: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    request_id: str = ""

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``None``."""
        return header(self.headers, name)

    def __repr__(self) -> str:
        body = redact(self.body.decode("utf-8", "replace"))
        headers = tuple((k, redact(v)) for k, v in self.headers)
        return (
            f"Request(method={self.method!r}, path={redact(self.path)!r}, body={body!r}, "
            f"headers={headers!r}, request_id={self.request_id!r})"
        )


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP response; the body is always JSON."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)

    def json(self) -> Any:
        """The decoded JSON body."""
        return json.loads(self.body)

    def __repr__(self) -> str:
        body = redact(self.body.decode("utf-8", "replace"))
        return f"Response(status={self.status!r}, body={body!r}, headers={self.headers!r})"


@dataclass(frozen=True, slots=True)
class TokenPair:
    """What a login hands the client; ``generation`` counts refreshes in the family."""

    access_token: str
    refresh_token: str
    expires_at: float
    family: str
    generation: int

    def __repr__(self) -> str:
        return (
            f"TokenPair(access_token={fingerprint(self.access_token)!r}, "
            f"refresh_token={fingerprint(self.refresh_token)!r}, expires_at={self.expires_at!r}, "
            f"family={self.family!r}, generation={self.generation!r})"
        )

    def to_json(self, now: float) -> dict[str, Any]:
        """The RFC 6749 §5.1 token response for this pair, as seen at ``now``."""
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "Bearer",
            "expires_in": max(0, round(self.expires_at - now)),
        }


class AuditKind(enum.Enum):
    """What happened to a token (or, for ``FAULT``, to the request that carried it)."""

    ISSUED = "issued"
    PRESENTED = "presented"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    REVOKED = "revoked"
    #: A fault struck the request; ``reason`` is the fault's kind ("5xx", "drop", ...).
    FAULT = "fault"


class TokenKind(enum.Enum):
    ACCESS = "access"
    REFRESH = "refresh"
    #: An authorization code (``/authorize`` then the ``authorization_code`` grant).
    CODE = "code"


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One entry of the server's audit log, the ground truth the checker reads.

    ``token_fp`` is a fingerprint, never the raw token.  For a token the
    server never minted, ``family`` is ``""`` and ``generation`` is ``-1``.
    """

    time: float
    request_id: str
    client_id: str
    kind: AuditKind
    token_kind: TokenKind
    token_fp: str
    family: str
    generation: int
    #: REJECTED: "reused", "expired", "revoked" or "unknown".  ACCEPTED: "" or
    #: "grace" (a spent token accepted inside the reuse window).  REVOKED: what
    #: caused it ("reused", "superseded", "rotated", "code_reused").  FAULT: the
    #: fault's kind.
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        """The event as JSON-ready values (what ``GET /_control/audit`` sends, one per line)."""
        return {
            "time": self.time,
            "request_id": self.request_id,
            "client_id": self.client_id,
            "kind": self.kind.value,
            "token_kind": self.token_kind.value,
            "token_fp": self.token_fp,
            "family": self.family,
            "generation": self.generation,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuditEvent:
        """The inverse of ``to_json``."""
        return cls(
            time=float(data["time"]),
            request_id=str(data["request_id"]),
            client_id=str(data["client_id"]),
            kind=AuditKind(data["kind"]),
            token_kind=TokenKind(data["token_kind"]),
            token_fp=str(data["token_fp"]),
            family=str(data["family"]),
            generation=int(data["generation"]),
            reason=str(data.get("reason", "")),
        )


@dataclass(frozen=True, slots=True)
class AccessCheck:
    """Whether a resource server would accept an access token right now."""

    ok: bool
    #: "" when ok, else "expired", "revoked" or "unknown".
    reason: str
    family: str = ""
    generation: int = -1
