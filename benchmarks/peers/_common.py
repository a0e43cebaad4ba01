"""What the peer engines share: the store format, one refresh over httpx, and the engine shape.

A peer engine does its own I/O (that is the point: it is built on a real
library, not on tokenrace's effects), so its shape differs from a flow
engine's: ``access_token(ctx, http, clock) -> str``, raising
``ReloginRequired`` when the server refuses the refresh token.  ``clock`` is
the agent's clock (the benchmarks move it to drive expiries without waiting).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Protocol

import httpx

from refresh_engine import (
    AgentContext,
    Credential,
    RefreshFailed,
    ReloginRequired,
    credential_from,
    parse_store,
    parse_token_error,
    render_store,
    with_credential,
)

Clock = Callable[[], float]


class PeerEngine(Protocol):
    name: str

    def access_token(self, ctx: AgentContext, http: httpx.Client, clock: Clock) -> str: ...


def lock_name(ctx: AgentContext) -> str:
    """A file name for a lock keyed by provider + profileId (as the reference engine keys it)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", ctx.key) + ".lock"


def load_credential(text: str, ctx: AgentContext, path: str) -> Credential:
    return credential_from(parse_store(text.encode(), path), ctx.key, path)


def updated_document(text: str, ctx: AgentContext, path: str, new: Credential) -> str:
    """The store document with this profile replaced (other profiles kept)."""
    document: dict[str, Any] = parse_store(text.encode(), path)
    return render_store(with_credential(document, ctx.key, ctx.provider, new)).decode()


def refresh(ctx: AgentContext, http: httpx.Client, clock: Clock, refresh_token: str) -> Credential:
    """One refresh_token grant, form-encoded, as most clients send it."""
    sent_at = clock()
    response = http.post(
        ctx.token_url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": ctx.client_id,
        },
    )
    if response.status_code != 200:
        error = parse_token_error(response.status_code, response.content)
        if error.token_rejected:
            raise ReloginRequired(f"{ctx.agent}: refresh rejected ({error.code})")
        raise RefreshFailed(f"{ctx.agent}: token endpoint answered {error.status} {error.code}")
    payload = json.loads(response.content)
    return Credential(
        access=str(payload["access_token"]),
        refresh=str(payload.get("refresh_token") or refresh_token),
        expires_at=sent_at + float(payload["expires_in"]),
    )
