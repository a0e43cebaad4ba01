"""Server faults and hold times for the black-box harness (``check --command``, client files).

A release fault strikes the Nth refresh the harness lets through the door,
with the fake server's own fault machinery (``fake_oauth_server.Fault``): the
harness scripts exactly that one fault just before it releases that request,
so the fault lands on a known agent's refresh whatever the program does.

``KIND[:VALUE]@N``, N counting released refreshes from 1 (a kill's release
is not counted):

=========  ==================================================================
``5xx``    answer 503 (``5xx:500``: that status, 500-599) before committing
``429``    answer 429 with ``Retry-After: 1`` (``429:30``: 30 s) before committing
``reset``  abort the connection before committing anything
``drop``   commit the rotation, then close the connection without a response
=========  ==================================================================

A hold keeps each request at the door at least ``hold`` seconds after it
arrived before it is let through, so the agent whose refresh it is keeps its
lock that long: long enough for another agent's own lock-wait timeout to run
out.  Bounded by ``MAX_HOLD``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fake_oauth_server import Fault, FaultKind

__all__ = ["KINDS", "MAX_HOLD", "ReleaseFault", "check_hold", "parse_release_fault"]

#: Longest a request may be held before its release (seconds).
MAX_HOLD = 120.0
#: The fault kinds a release may get, by the name written before ``@``.
KINDS = {
    "5xx": FaultKind.SERVER_ERROR,
    "429": FaultKind.RATE_LIMIT,
    "reset": FaultKind.RESET,
    "drop": FaultKind.DROP,
}
_SYNTAX = re.compile(r"(?P<kind>[a-z0-9]+)(?::(?P<value>[0-9]+))?@(?P<release>[0-9]+)")


@dataclass(frozen=True, slots=True)
class ReleaseFault:
    """``fault`` strikes the ``release``-th refresh let through (1 for the first)."""

    fault: Fault
    release: int
    text: str  # as written: 5xx@1, 429:30@2

    def __str__(self) -> str:
        return self.text

    def describe(self) -> str:
        """What the run's history says the fault was."""
        fault = self.fault
        match fault.kind:
            case FaultKind.SERVER_ERROR:
                return f"5xx fault (answered {fault.status})"
            case FaultKind.RATE_LIMIT:
                return f"429 fault (Retry-After {fault.retry_after}s)"
            case FaultKind.RESET:
                return "reset fault (connection aborted before the server saw it)"
        return "drop fault (committed, connection closed without a response)"


def parse_release_fault(text: str) -> ReleaseFault:
    """``5xx@1``, ``429:30@2``, ``reset@1``, ``drop@2``; a ValueError says what is wrong."""
    found = _SYNTAX.fullmatch(text.strip())
    known = ", ".join(KINDS)
    if found is None:
        raise ValueError(f"bad fault {text!r}: expected KIND[:VALUE]@N, KIND one of {known}")
    kind = KINDS.get(found["kind"])
    if kind is None:
        raise ValueError(f"unknown fault {found['kind']!r} in {text!r}: known faults are {known}")
    release = int(found["release"])
    if not 1 <= release <= 1000:
        raise ValueError(f"bad fault {text!r}: N counts released refreshes from 1 (at most 1000)")
    value = found["value"]
    if value is not None and kind not in (FaultKind.SERVER_ERROR, FaultKind.RATE_LIMIT):
        raise ValueError(f"bad fault {text!r}: only 5xx (a status) and 429 (Retry-After) take one")
    number = int(value) if value is not None else None
    if kind is FaultKind.SERVER_ERROR:
        if number is not None and not 500 <= number <= 599:
            raise ValueError(f"bad fault {text!r}: a 5xx status is 500-599")
        fault = Fault.server_error(number or 503)
    elif kind is FaultKind.RATE_LIMIT:
        if number is not None and number > 86400:
            raise ValueError(f"bad fault {text!r}: Retry-After is at most 86400 seconds")
        fault = Fault.rate_limit(1 if number is None else number)
    else:
        fault = Fault(kind)
    return ReleaseFault(fault, release, text.strip())


def check_hold(seconds: float) -> float:
    """A hold time, or a ValueError: 0 (no hold) to ``MAX_HOLD`` seconds."""
    if not 0 <= seconds <= MAX_HOLD:
        raise ValueError(f"a hold is 0-{MAX_HOLD:g} seconds, got {seconds:g}")
    return float(seconds)
