"""The in-process HTTP surface: route httpx requests to ``AuthServer`` through respx.

A client under test uses a real ``httpx.Client``; respx intercepts at the
transport, so the client's own request building (headers, form or JSON
encoding) is exercised, and the server's answer comes back as a real
``httpx.Response``.  No socket is opened.  The server's fault plan applies
here too: latency is slept, a ``reset`` raises ``httpx.ReadError`` and a
``drop`` (committed, then lost) raises ``httpx.RemoteProtocolError``, as
httpx does against a real server that vanishes.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import respx

from ._core import DEFAULT_ISSUER, TOKEN_PATH, AuthServer
from ._faults import FaultKind
from ._messages import Request, TokenPair
from ._policy import Policy

DEFAULT_BASE_URL = DEFAULT_ISSUER


def mount_respx(
    router: respx.MockRouter,
    server: AuthServer,
    *,
    base_url: str = DEFAULT_BASE_URL,
    clock: Callable[[], float] = time.time,
) -> None:
    """Route every request under ``base_url`` on ``router`` to ``server``.

    Requests get ids ``"r1"``, ``"r2"``, ... in arrival order (per mount), and
    ``clock()`` is read once per request for ``now`` (after any fault
    latency).  A path prefix in ``base_url`` is stripped before the server
    sees the path.  The server's RFC 8414 ``issuer`` is its own; build it
    with ``issuer=base_url`` when mounting elsewhere than the default.
    """
    base = httpx.URL(base_url)
    prefix = base.path.rstrip("/")
    ids = itertools.count(1)
    ids_lock = threading.Lock()

    def respond(request: httpx.Request) -> httpx.Response:
        with ids_lock:
            request_id = f"r{next(ids)}"
        path = request.url.path
        if prefix and (path == prefix or path.startswith(prefix + "/")):
            path = path[len(prefix) :] or "/"
        query = request.url.query.decode("ascii", "replace")
        core_request = Request(
            method=request.method,
            path=f"{path}?{query}" if query else path,
            body=request.read(),
            headers=tuple(request.headers.multi_items()),
            request_id=request_id,
        )
        fault = server.next_fault(core_request)
        if fault.latency:
            time.sleep(fault.latency)
        delivery = server.deliver(core_request, clock(), fault)
        if delivery.response is None:
            if fault.kind is FaultKind.RESET:
                raise httpx.ReadError("[Errno 104] Connection reset by peer", request=request)
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        answer = delivery.response
        headers = [*answer.headers, ("x-request-id", request_id)]
        return httpx.Response(answer.status, content=answer.body, headers=headers)

    pattern: dict[str, Any] = {"scheme": base.scheme, "host": base.host}
    if base.port is not None:
        pattern["port"] = base.port
    if prefix:
        pattern["path__startswith"] = prefix
    router.route(**pattern).mock(side_effect=respond)


@dataclass(slots=True)
class ManualClock:
    """A clock that moves only when told to: ``now``, ``advance(seconds)``."""

    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@dataclass(slots=True)
class InProcessServer:
    """A fake server mounted on respx: ``server``, ``base_url``, ``clock``, ``router``."""

    server: AuthServer
    base_url: str
    router: respx.MockRouter
    clock: ManualClock = field(default_factory=ManualClock)

    @property
    def token_url(self) -> str:
        return self.base_url + TOKEN_PATH

    def seed_grant(self, *, user: str = "user", client_id: str = "tokenrace") -> TokenPair:
        """A fresh login at the clock's current time."""
        return self.server.seed_grant(self.clock.now, user=user, client_id=client_id)


@contextlib.contextmanager
def respx_server(
    policy: Policy | str = "openai",
    *,
    seed: str = "0",
    base_url: str = DEFAULT_BASE_URL,
    clock: ManualClock | None = None,
) -> Iterator[InProcessServer]:
    """A fake server behind respx for the duration of the ``with`` block.

    Every httpx request to ``base_url`` reaches the server; any other
    request raises, as ``respx.mock`` does by default.  ``policy`` is a
    ``Policy`` or a preset name.  Time is a ``ManualClock``: advance it to
    expire tokens.
    """
    chosen = Policy.preset(policy) if isinstance(policy, str) else policy
    server = AuthServer(chosen, seed=seed, issuer=base_url)
    clock = clock or ManualClock()
    with respx.mock(assert_all_called=False) as router:
        mount_respx(router, server, base_url=base_url, clock=clock)
        yield InProcessServer(server, base_url.rstrip("/"), router, clock)
