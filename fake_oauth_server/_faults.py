"""Faults as data: what to do to one request, and a script of them.

A ``Fault`` is a frozen value; a ``FaultPlan`` scripts them per request the
way respx scripts side effects: a list played in order (then no fault), or a
callable asked for each request.  The core never sleeps or touches a socket:
``AuthServer.deliver`` applies the part of a fault that is about *state*
(answer 5xx or 429 before anything is committed, or commit and mark the
response as lost) and returns a ``Delivery`` saying what reaches the wire;
the surface does the rest (sleep for latency, abort the connection, close
it without a response).  The simulator can take the same decisions as
schedule steps and call ``deliver`` with the fault it chose.

======================= ================================================================
kind (JSON ``kind``)    effect
======================= ================================================================
``pass``                none
``latency``             wait ``latency`` seconds, then handle normally
``5xx``                 answer ``status`` (default 503) before committing anything
``429``                 answer 429 with ``Retry-After`` before committing anything
``reset``               abort the connection (RST) before committing anything
``drop``                commit the request (rotate the token), then close the connection
                        without a response
======================= ================================================================

Any fault may also carry a ``latency`` that the surface waits before it.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import InvalidFault
from ._messages import Request, Response
from ._wire import split_agent

TOKEN_PATH = "/oauth/token"
#: Latencies above this are refused: every fault must end in bounded time.
MAX_LATENCY = 60.0


class FaultKind(enum.Enum):
    PASS = "pass"
    LATENCY = "latency"
    SERVER_ERROR = "5xx"
    RATE_LIMIT = "429"
    RESET = "reset"
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class Fault:
    """What happens to one request; see the module docstring for each kind."""

    kind: FaultKind = FaultKind.PASS
    latency: float = 0.0
    #: The status of a ``5xx`` (500-599) or ``429`` fault; 0 picks the default.
    status: int = 0
    #: Seconds for the ``Retry-After`` header of a ``5xx`` or ``429`` fault.
    retry_after: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, FaultKind):
            raise InvalidFault("kind must be a FaultKind")
        latency = self.latency
        if (
            not isinstance(latency, int | float)
            or isinstance(latency, bool)
            or not math.isfinite(latency)
            or not 0 <= latency <= MAX_LATENCY
        ):
            raise InvalidFault(f"latency must be 0-{MAX_LATENCY:g} seconds, got {latency!r}")
        if self.kind is FaultKind.LATENCY and latency <= 0:
            raise InvalidFault("a latency fault needs latency > 0")
        status = self.status
        if not isinstance(status, int) or isinstance(status, bool):
            raise InvalidFault(f"status must be an integer, got {status!r}")
        if self.kind is FaultKind.SERVER_ERROR:
            if status == 0:
                object.__setattr__(self, "status", 503)
            elif not 500 <= status <= 599:
                raise InvalidFault(f"a 5xx fault needs a status 500-599, got {status}")
        elif self.kind is FaultKind.RATE_LIMIT:
            if status not in (0, 429):
                raise InvalidFault(f"a 429 fault answers 429, got {status}")
            object.__setattr__(self, "status", 429)
            if self.retry_after is None:
                object.__setattr__(self, "retry_after", 1)
        elif status != 0:
            raise InvalidFault(f"a {self.kind.value} fault takes no status")
        retry = self.retry_after
        if retry is not None and (
            not isinstance(retry, int) or isinstance(retry, bool) or not 0 <= retry <= 86400
        ):
            raise InvalidFault(f"retry_after must be 0-86400 whole seconds, got {retry!r}")

    # Constructors, named after what they do.
    @classmethod
    def delay(cls, seconds: float) -> Fault:
        return cls(FaultKind.LATENCY, latency=seconds)

    @classmethod
    def server_error(cls, status: int = 503, *, retry_after: int | None = None) -> Fault:
        return cls(FaultKind.SERVER_ERROR, status=status, retry_after=retry_after)

    @classmethod
    def rate_limit(cls, retry_after: int = 1) -> Fault:
        return cls(FaultKind.RATE_LIMIT, retry_after=retry_after)

    @classmethod
    def reset(cls) -> Fault:
        return cls(FaultKind.RESET)

    @classmethod
    def drop(cls) -> Fault:
        return cls(FaultKind.DROP)

    @property
    def commits(self) -> bool:
        """Whether the server handles (and so may commit) the request."""
        return self.kind in (FaultKind.PASS, FaultKind.LATENCY, FaultKind.DROP)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind.value}
        if self.latency:
            out["latency"] = self.latency
        if self.status:
            out["status"] = self.status
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        return out

    @classmethod
    def from_json(cls, data: object) -> Fault:
        """A fault from ``{"kind": ..., "latency"?, "status"?, "retry_after"?}``."""
        if not isinstance(data, Mapping):
            raise InvalidFault("a fault must be a JSON object with a kind")
        unknown = set(data) - {"kind", "latency", "status", "retry_after"}
        if unknown:
            raise InvalidFault(f"unknown fault field {sorted(str(k) for k in unknown)[0][:40]!r}")
        try:
            kind = FaultKind(data.get("kind"))
        except ValueError:
            known = ", ".join(kind.value for kind in FaultKind)
            raise InvalidFault(f"fault kind must be one of {known}") from None
        latency = data.get("latency", 0.0)
        if isinstance(latency, int) and not isinstance(latency, bool):
            latency = float(latency)
        return cls(kind, latency, data.get("status", 0), data.get("retry_after"))


PASS = Fault()

FaultScript = Callable[[Request], Fault | None]


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Faults for the requests to ``paths``, in arrival order or chosen by a callable.

    ``FaultPlan([Fault.drop()])`` drops the response of the next token
    request and lets every later one through; ``FaultPlan(choose)`` asks
    ``choose(request)`` for each (``None`` means no fault).  The server keeps
    the cursor, so one plan value can be installed on several servers.
    """

    steps: tuple[Fault, ...] | FaultScript = ()
    paths: frozenset[str] = frozenset({TOKEN_PATH})

    def __init__(
        self,
        steps: Iterable[Fault] | FaultScript = (),
        *,
        paths: Iterable[str] = (TOKEN_PATH,),
    ) -> None:
        if callable(steps):
            object.__setattr__(self, "steps", steps)
        else:
            faults = tuple(steps)
            for fault in faults:
                if not isinstance(fault, Fault):
                    raise InvalidFault(f"a fault plan holds Fault values, got {fault!r}")
            object.__setattr__(self, "steps", faults)
        object.__setattr__(self, "paths", frozenset(paths))

    def applies(self, request: Request) -> bool:
        path = request.path.split("?", 1)[0].split("#", 1)[0]
        return path in self.paths or split_agent(path)[1] in self.paths

    def pick(self, request: Request, index: int) -> Fault:
        """The fault for ``request``, the ``index``-th request this plan applied to."""
        if callable(self.steps):
            chosen = self.steps(request)
            if chosen is None:
                return PASS
            if not isinstance(chosen, Fault):
                raise InvalidFault(f"a fault script must return a Fault or None, got {chosen!r}")
            return chosen
        return self.steps[index] if index < len(self.steps) else PASS

    def remaining(self, index: int) -> tuple[Fault, ...]:
        """The scripted faults not played yet (none for a callable plan)."""
        return () if callable(self.steps) else self.steps[index:]


@dataclass(frozen=True, slots=True)
class Delivery:
    """What became of one request under a fault.

    ``response`` is what reaches the client (``None``: the connection closes
    without one); ``committed`` is what the core answered (``None`` when the
    fault struck before the core saw the request).  A ``drop`` has a
    ``committed`` response and no ``response``: the rotation happened, the
    client never learns it.
    """

    fault: Fault
    response: Response | None
    committed: Response | None
