"""Holding token requests at the door so a test can choose their order.

While holding is on, every ``POST /oauth/token`` waits in a queue before the
server looks at it.  A controller lists the queue (``GET /_control/held``),
lets one request through (``POST /_control/release``) and learns, once it has
been handled, what it was answered; so "Atlas's refresh commits before
Nova's" can be forced on real processes.  Every wait is bounded: a request
held longer than the hold timeout is answered 503 and leaves the queue.

Lives on the event loop of the real server: no locks, only asyncio.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from ._messages import Request
from ._tokens import fingerprint
from ._wire import BadRequest, parse_params, split_agent, split_target

#: Longest a controller may wait for requests to arrive or to be handled.
MAX_WAIT = 30.0


@dataclass(slots=True, eq=False)
class Held:
    """One request waiting at the door."""

    id: str
    seq: int
    request: Request
    client_id: str
    grant_type: str
    token_fp: str
    arrived: float
    released: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set to the HTTP status once handled (0: no response was sent, -1: timed out).
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    status: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "seq": self.seq,
            "request_id": self.request.request_id,
            "method": self.request.method,
            "path": self.request.path,
            "client_id": self.client_id,
            "grant_type": self.grant_type,
            "token_fp": self.token_fp,
            "waited": round(time.monotonic() - self.arrived, 3),
        }

    def finish(self, status: int) -> None:
        self.status = status
        self.finished.set()


class HoldQueue:
    """The queue of held requests; ``holding`` turns the door on and off."""

    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.holding = False
        self._held: dict[str, Held] = {}
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._held)

    def listing(self) -> list[dict[str, Any]]:
        return [held.to_json() for held in self._held.values()]

    def enter(self, request: Request) -> Held:
        params = parse_params(request.body, request.header("content-type"))
        if isinstance(params, BadRequest):
            params = {}
        token = params.get("refresh_token") or params.get("code") or ""
        seq = next(self._ids)
        held = Held(
            id=f"h{seq}",
            seq=seq,
            request=request,
            # the agent's own endpoint names it, whatever client_id it sends
            client_id=(
                split_agent(split_target(request.path)[0])[0] or params.get("client_id", "")
            )[:100],
            grant_type=params.get("grant_type", "")[:100],
            token_fp=fingerprint(token) if token else "",
            arrived=time.monotonic(),
        )
        self._held[held.id] = held
        return held

    async def wait(self, held: Held) -> bool:
        """Wait until released (True) or the hold timeout passes (False)."""
        try:
            await asyncio.wait_for(held.released.wait(), self.timeout)
        except TimeoutError:
            self._held.pop(held.id, None)
            held.finish(-1)
            return False
        return True

    def release(self, held_id: str) -> Held | None:
        held = self._held.pop(held_id, None)
        if held is not None:
            held.released.set()
        return held

    def release_all(self) -> list[Held]:
        released = list(self._held.values())
        self._held.clear()
        for held in released:
            held.released.set()
        return released

    def set_holding(self, enabled: bool) -> list[Held]:
        """Turn holding on or off; turning it off lets every held request through."""
        self.holding = enabled
        return [] if enabled else self.release_all()

    async def wait_for_count(self, count: int, timeout: float) -> None:
        """Return once ``count`` requests are held, or after ``timeout`` (at most ``MAX_WAIT``)."""
        deadline = time.monotonic() + min(max(timeout, 0.0), MAX_WAIT)
        while len(self._held) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.002)


async def wait_finished(held: Held, timeout: float) -> int | None:
    """The status ``held`` was answered with, once handled; ``None`` if not within ``timeout``."""
    try:
        await asyncio.wait_for(held.finished.wait(), min(max(timeout, 0.0), MAX_WAIT))
    except TimeoutError:
        return None
    return held.status
