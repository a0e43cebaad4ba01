"""Guarding the real server's connections: read timeouts, a connection cap, quiet errors.

uvicorn's h11 protocol hands a request to the application as soon as its
headers are in, waits as long as a client likes for the headers and the
body, accepts every connection the kernel gives it and logs each accept
failure with a traceback.  ``GuardedProtocol`` puts deadlines on both reads
(headers from the first byte, or from the connection for a silent one;
the body from the end of the headers), caps the live connections (evicting
the oldest one still waiting for its headers before refusing a newcomer),
and answers a protocol failure itself, as an RFC 6749 JSON error, where the
socket still allows an answer: a body cut short by end-of-file, a timeout,
bytes that are not HTTP.  Its request cycle is then marked disconnected, so
the application never acts on a request whose body did not arrive.

``Guard.note`` prints one line per kind of trouble per minute (counting the
rest), which is also how the event loop's own errors (EMFILE on accept) are
reported: never a traceback.
"""

from __future__ import annotations

import asyncio
import errno
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, ClassVar, cast

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from ._dialects import Failure, error_response
from ._policy import ErrorDialect

#: (server address, client address) -> the connection's transport, for faults that cut it.
CONNECTIONS: dict[tuple[object, object], asyncio.Transport] = {}

_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: Seconds between two lines about the same kind of trouble.
NOTE_INTERVAL = 60.0


def default_max_connections() -> int:
    """Half the file descriptors this process may open (less a reserve), within 8..1024."""
    if sys.platform == "win32":  # no resource module; sockets are not file descriptors
        return 512
    import resource

    try:
        soft = int(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    except (OSError, ValueError):
        return 512
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return 1024
    return max(8, min(1024, (soft - 64) // 2))


@dataclass(frozen=True, slots=True)
class Limits:
    """How long a client may take to send a request, and how many may be connected."""

    header_timeout: float = 10.0
    body_timeout: float = 10.0
    max_connections: int = field(default_factory=default_max_connections)

    def __post_init__(self) -> None:
        for name in ("header_timeout", "body_timeout"):
            if not 0 < getattr(self, name) <= 3600:
                raise ValueError(f"{name} must be within 0-3600 seconds")
        if not 1 <= self.max_connections <= 1_000_000:
            raise ValueError("max_connections must be at least 1")


class Guard:
    """The connection limits of one server, its live connections and its quiet log."""

    def __init__(self, limits: Limits, log: Callable[[str], None] | None = None) -> None:
        self.limits = limits
        self._log = log or _stderr
        self._live: dict[GuardedProtocol, None] = {}  # insertion order: oldest first
        self._noted: dict[str, tuple[float, int]] = {}  # kind -> (last line, suppressed)

    def __len__(self) -> int:
        return len(self._live)

    def note(self, kind: str, line: str) -> None:
        """``line``, unless a line of this ``kind`` went out in the last minute (then counted)."""
        now = time.monotonic()
        last, suppressed = self._noted.get(kind, (-NOTE_INTERVAL, 0))
        if now - last < NOTE_INTERVAL:
            self._noted[kind] = (last, suppressed + 1)
            return
        more = f" ({suppressed} more since the last such line)" if suppressed else ""
        self._noted[kind] = (now, 0)
        self._log(f"fake_oauth_server: {line}{more}")

    def admit(self, protocol: GuardedProtocol) -> bool:
        """Room for ``protocol``: evict the oldest connection still waiting, or say no."""
        if len(self._live) >= self.limits.max_connections:
            idle = next((p for p in self._live if p.waiting_for_headers()), None)
            if idle is None:
                self.note("cap", f"{len(self._live)} connections open: refusing new ones")
                return False
            self.note("evict", "connection cap reached: closing the oldest idle connections")
            idle.transport.abort()
            self.forget(idle)
        self._live[protocol] = None
        return True

    def forget(self, protocol: GuardedProtocol) -> None:
        self._live.pop(protocol, None)

    def loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """The event loop's exception handler: one line, no traceback."""
        error = context.get("exception")
        message = str(context.get("message", "event loop error"))
        if isinstance(error, OSError) and error.errno in _OUT_OF_RESOURCES:
            reason = error.strerror or errno.errorcode.get(error.errno or 0, "")
            self.note("accept", f"cannot accept connections ({reason}); retrying")
        elif error is not None:
            self.note(f"loop:{type(error).__name__}", f"{message}: {type(error).__name__}")
        else:
            self.note("loop", message[:200])


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class GuardedProtocol(H11Protocol):
    """uvicorn's h11 protocol with read deadlines, a connection cap and JSON protocol errors.

    It also registers each connection in ``CONNECTIONS`` so faults can cut it.
    """

    guard: ClassVar[Guard]
    _timer: asyncio.TimerHandle | None = None
    _phase = ""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        CONNECTIONS[(self.server, self.client)] = transport
        if not self.guard.admit(self):
            self._refuse(Failure.UNAVAILABLE, 503, "Too many connections; try again later.")
            return
        self._arm("headers", self.guard.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.guard.forget(self)
        CONNECTIONS.pop((self.server, self.client), None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def eof_received(self) -> bool | None:  # type: ignore[override]
        """The client stopped sending: a request cut short is answered 400, never acted on.

        A complete request still being handled keeps the connection half open,
        so its answer goes out (the token it spent is not lost on the way).
        """
        cycle = self.cycle
        if self.conn.their_state is h11.DONE and cycle is not None and not cycle.response_complete:
            cycle.keep_alive = False  # close once answered
            return True
        if self.conn.their_state is h11.SEND_BODY:
            self._refuse(
                Failure.INVALID_REQUEST, 400, "The request body ended before its declared length."
            )
        elif self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:
            self._refuse(Failure.INVALID_REQUEST, 400, "The request ended inside its headers.")
        return None  # the transport closes

    def send_400_response(self, msg: str) -> None:
        """Bytes that are not HTTP/1.1: a JSON ``invalid_request`` instead of uvicorn's text."""
        self._refuse(Failure.INVALID_REQUEST, 400, "The request is not valid HTTP/1.1.")

    def waiting_for_headers(self) -> bool:
        """True while no request is being read or answered on this connection."""
        in_flight = self.cycle is not None and not self.cycle.response_complete
        return not in_flight and self.conn.their_state is h11.IDLE

    # ---------------------------------------------------------------- deadlines

    def _watch(self) -> None:
        """Keep the deadline that fits what is being read now."""
        if self.transport.is_closing():
            self._disarm()
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            if self.conn.trailing_data[0] and self._phase != "headers":
                self._arm("headers", self.guard.limits.header_timeout)
        elif state is h11.SEND_BODY:
            if self._phase != "body":
                self._arm("body", self.guard.limits.body_timeout)
        else:
            self._disarm()

    def _arm(self, phase: str, seconds: float) -> None:
        self._disarm()
        self._phase = phase
        self._timer = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._phase = None, ""

    def _expired(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self._phase == "body" and self.conn.their_state is h11.SEND_BODY:
            self._refuse(Failure.INVALID_REQUEST, 408, "The request body did not arrive in time.")
        elif self._phase == "headers" and self.conn.their_state is h11.IDLE:
            if self.conn.trailing_data[0]:
                self._refuse(Failure.INVALID_REQUEST, 408, "The request did not arrive in time.")
            elif self.waiting_for_headers():
                self._disarm()
                self.transport.close()  # silent from the start: nothing to answer

    # ---------------------------------------------------------------- answering

    def _refuse(self, failure: Failure, status: int, message: str) -> None:
        """Answer ``status`` with an RFC 6749 error where nothing was answered yet, then close."""
        self._disarm()
        cycle = self.cycle
        in_flight = cycle is not None and not cycle.response_complete
        if not (in_flight and cycle.response_started) and not self.transport.is_closing():
            self.transport.write(_raw_response(failure, status, message))
        if in_flight:  # the application sees a disconnect and acts on nothing
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()


def _raw_response(failure: Failure, status: int, message: str) -> bytes:
    """A complete HTTP/1.1 response, written below h11 (whose state may not allow one)."""
    code, body, headers = error_response(
        ErrorDialect.RFC6749, failure, message=message, status=status
    )
    lines = [f"HTTP/1.1 {code} {HTTPStatus(code).phrase}"]
    lines += [f"{key}: {value}" for key, value in headers]
    lines += [f"content-length: {len(body)}", "connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


def protocol_for(guard: Guard) -> type[GuardedProtocol]:
    """A protocol class bound to one server's ``guard`` (uvicorn instantiates a class)."""
    bound = type("GuardedProtocol", (GuardedProtocol,), {"guard": guard})
    return cast(type[GuardedProtocol], bound)
