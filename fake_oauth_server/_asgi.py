"""The real HTTP surface: an ASGI application over one ``AuthServer``.

Plain ASGI (no framework), served by uvicorn (``_serve.py``).  Requests to
the token and resource endpoints go to the core in a small thread pool, so
the core's lock, not the event loop, is what keeps refresh tokens single
use under real concurrency.  ``/_control/...`` is the control API for tests
(``_control.py``).  Faults are real here: latency is slept, ``reset`` aborts
the TCP connection with an RST, ``drop`` commits the request and then closes
the connection without a response.  Those two need the transport, which the
ASGI interface hides, so ``_serve.py`` runs uvicorn with a protocol that
registers each connection in ``CONNECTIONS`` (``_guard.py``); elsewhere they
answer 502.

A request is acted on only once its body is complete (``more_body`` false):
a client that disconnects mid-body has spent nothing.  The control API is
gated by a ``ControlAccess`` (``_access.py``): on or off, a token, and no
requests from web pages.

Nothing raises out of the application: a bug is answered with a JSON 500,
never a traceback, and the access log (off by default) shows fingerprints.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import socket
import struct
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ._access import ControlAccess
from ._core import TOKEN_PATH, AuthServer
from ._dialects import Failure, error_response
from ._faults import Fault, FaultKind
from ._guard import CONNECTIONS
from ._hold import HoldQueue
from ._messages import Request, Response
from ._tokens import redact_log
from ._wire import Headers, encode_json, split_agent, split_target

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Bodies above this are refused with 413.
MAX_BODY = 64 * 1024
CONTROL_PREFIX = "/_control"


class BodyProblem(enum.Enum):
    """Why a request body cannot be acted on."""

    TOO_LARGE = "too large"
    INCOMPLETE = "incomplete"  # the client went away before ``more_body`` was false


class FakeOAuthApp:
    """ASGI application: the fake server's endpoints plus its control API."""

    def __init__(
        self,
        server: AuthServer,
        *,
        hold_timeout: float = 60.0,
        workers: int = 8,
        access_log: Callable[[str], None] | None = None,
        control: ControlAccess | None = None,
    ) -> None:
        self.server = server
        #: Who may use ``/_control/``; by default anyone on loopback, without a token.
        self.control = control if control is not None else ControlAccess()
        self.hold = HoldQueue(hold_timeout)
        #: Seconds added to the wall clock (``POST /_control/clock``).
        self.clock_offset = 0.0
        self._access_log = access_log
        self._ids = itertools.count(1)
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="fake-oauth-core")
        self._loop: asyncio.AbstractEventLoop | None = None

    def now(self) -> float:
        return time.time() + self.clock_offset

    def restart(self) -> None:
        """Request ids from ``r1`` again and the clock back to the wall clock (on a reset)."""
        self._ids = itertools.count(1)
        self.clock_offset = 0.0

    def shutdown_soon(self) -> None:
        """From any thread: let every held request through, so shutdown does not wait on them."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                loop.call_soon_threadsafe(self.hold.set_holding, False)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        self._loop = asyncio.get_running_loop()
        started = [False]

        async def tracked_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                started[0] = True
            await send(message)

        try:
            await self._http(scope, receive, tracked_send)
        except Exception:  # never a traceback on the wire
            if not started[0]:
                request = Request("GET", "/")
                status, body, headers = self._fail(Failure.SERVER_ERROR, request)
                await _send(tracked_send, scope, status, body, headers)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._loop = asyncio.get_running_loop()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.hold.set_holding(False)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = str(scope["method"])
        path = str(scope["path"])
        query = bytes(scope.get("query_string", b"")).decode("latin-1")
        headers = tuple(
            (bytes(key).decode("latin-1"), bytes(value).decode("latin-1"))
            for key, value in scope.get("headers", ())
        )
        target = f"{path}?{query}" if query else path
        body = await _read_body(receive, MAX_BODY)
        if body is BodyProblem.INCOMPLETE:  # nobody to answer, nothing to act on
            self._log(scope, method, target, 0, "-", note="incomplete body")
            return
        control_call = path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/")
        request_id = "" if control_call else f"r{next(self._ids)}"
        if body is BodyProblem.TOO_LARGE:
            request = Request(method, target, b"", headers, request_id)
            status, payload, out = self._fail(Failure.BODY_TOO_LARGE, request)
            await _send(send, scope, status, payload, out, request_id)
            return
        if control_call:
            from ._control import control

            refusal = self.control.refusal(headers)
            if refusal is not None:
                status, out = refusal.status, (("content-type", "application/json"),)
                fields = {"error": refusal.error, "error_description": refusal.description}
                await _send(send, scope, status, encode_json(fields), out)
                self._log(scope, method, target, status, "control", note="refused")
                return
            status, payload, out = await control(self, method, path, query, body)
            await _send(send, scope, status, payload, out)
            self._log(scope, method, target, status, "control")
            return
        request = Request(method, target, body, headers, request_id)
        response, fault = await self._core(request)
        if response is None:
            if await _close(scope, reset=fault.kind is FaultKind.RESET):
                self._log(scope, method, target, 0, request_id, fault)
                return
            message = "This server cannot drop connections; run it with fake_oauth_server.serve."
            status, payload, out = self._fail(Failure.UNAVAILABLE, request, message)
            response = Response(502, payload, out)
        await _send(send, scope, response.status, response.body, response.headers, request_id)
        self._log(scope, method, target, response.status, request_id, fault)

    async def _core(self, request: Request) -> tuple[Response | None, Fault]:
        """Hold, fault and handle one request; ``None`` means close without a response."""
        held = None
        path = split_agent(split_target(request.path)[0])[1]
        if self.hold.holding and request.method.upper() == "POST" and path == TOKEN_PATH:
            held = self.hold.enter(request)
            if not await self.hold.wait(held):
                status, body, headers = self._fail(
                    Failure.UNAVAILABLE, request, "The request was held too long."
                )
                return Response(status, body, headers), Fault()
        try:
            fault = self.server.next_fault(request)
            if fault.latency:
                await asyncio.sleep(fault.latency)
            loop = asyncio.get_running_loop()
            delivery = await loop.run_in_executor(
                self._executor, self.server.deliver, request, self.now(), fault
            )
        except BaseException:
            if held is not None:
                held.finish(500)
            raise
        if held is not None:
            held.finish(0 if delivery.response is None else delivery.response.status)
        return delivery.response, fault

    def _fail(
        self, failure: Failure, request: Request, message: str | None = None
    ) -> tuple[int, bytes, Headers]:
        return error_response(
            self.server.policy.dialect,
            failure,
            message=message,
            now=self.now(),
            request_id=request.request_id,
        )

    def _log(
        self,
        scope: Scope,
        method: str,
        target: str,
        status: int,
        request_id: str,
        fault: Fault | None = None,
        note: str = "",
    ) -> None:
        if self._access_log is None:
            return
        client = scope.get("client") or ("-", 0)
        if fault is not None and fault.kind is not FaultKind.PASS:
            note = f"fault={fault.kind.value}"
        tail = f" {note}" if note else ""
        line = f'{client[0]}:{client[1]} "{method} {target}" {status or "-"} {request_id}{tail}'
        self._access_log(redact_log(line)[:500])


async def _read_body(receive: Receive, limit: int) -> bytes | BodyProblem:
    """The whole request body, once ``more_body`` is false; else why there is none."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return BodyProblem.INCOMPLETE
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > limit:
            return BodyProblem.TOO_LARGE
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(
    send: Send,
    scope: Scope,
    status: int,
    body: bytes,
    headers: Headers,
    request_id: str = "",
) -> None:
    if scope.get("method") == "HEAD":
        body = b""
    raw = [(key.lower().encode("latin-1"), value.encode("latin-1")) for key, value in headers]
    raw.append((b"content-length", str(len(body)).encode("ascii")))
    if request_id:
        raw.append((b"x-request-id", request_id.encode("ascii")))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _close(scope: Scope, *, reset: bool) -> bool:
    """End the connection without a response: RST for a reset, FIN for a drop.

    False when the connection is not one ``_serve.py`` registered.
    """
    key = (scope.get("server"), scope.get("client"))
    transport = CONNECTIONS.get(key)
    if transport is None:
        return False
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()
    for _ in range(200):  # let the server see the connection go, so it sends no 500
        if key not in CONNECTIONS:
            break
        await asyncio.sleep(0)
    return True
