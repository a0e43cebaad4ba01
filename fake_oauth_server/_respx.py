"""The in-process HTTP surface: route httpx requests to ``AuthServer.handle`` through respx.

A client under test uses a real ``httpx.Client``; respx intercepts at the
transport, so the client's own request building (headers, form or JSON
encoding) is exercised, and the server's answer comes back as a real
``httpx.Response``.  No socket is opened.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import respx

from ._core import DEFAULT_ISSUER, AuthServer
from ._messages import Request

DEFAULT_BASE_URL = DEFAULT_ISSUER


def mount_respx(
    router: respx.MockRouter,
    server: AuthServer,
    *,
    base_url: str = DEFAULT_BASE_URL,
    clock: Callable[[], float] = time.time,
) -> None:
    """Route every request under ``base_url`` on ``router`` to ``server.handle``.

    Requests get ids ``"r1"``, ``"r2"``, ... in arrival order (per mount), and
    ``clock()`` is read once per request for ``now``.  A path prefix in
    ``base_url`` is stripped before the server sees the path.  The server's
    RFC 8414 ``issuer`` is its own; build it with ``issuer=base_url`` when
    mounting elsewhere than the default.
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
        answer = server.handle(core_request, clock())
        return httpx.Response(answer.status, content=answer.body, headers=list(answer.headers))

    pattern: dict[str, Any] = {"scheme": base.scheme, "host": base.host}
    if base.port is not None:
        pattern["port"] = base.port
    if prefix:
        pattern["path__startswith"] = prefix
    router.route(**pattern).mock(side_effect=respond)
