"""Forcing agents to overlap at the token endpoint, so a missing lock cannot be missed.

A free-running stress test finds a missing lock only when its agents happen
to be inside the refresh at the same moment; under Wine, whose start-up
varies by more than the race window, that is luck (tokenrace issue 19).  A
test that must not depend on luck uses a ``ForcedOverlap`` instead: the fake
server holds every token request of the turn at its door until ``agents`` of
them wait there together, or until ``settle`` seconds after the first one
arrived, and then lets them all through and stops holding.

Why this decides the question rather than tilting the odds:

- Engines without mutual exclusion all read the same refresh token and all
  arrive: the server sees them at once and the reuse always happens.
- An engine with a working lock lets only the holder reach the server; the
  others wait on the lock and never arrive, however long the hold lasts.
  ``peak`` (the most requests held at once) is then 1, which the caller can
  assert: it is the lock observed from outside, not a lucky miss.

``settle`` only bounds how long a correct engine's holder waits; it must stay
under the agents' HTTP timeout (30 s in ``agent_worker.py``).  Every wait is
bounded; the server's own hold timeout answers 503 to anything left behind.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from types import TracebackType

from fake_oauth_server import ControlClient

#: the longest any turn is held, whatever ``settle`` says (under the agents' 30 s HTTP timeout)
MAX_HOLD = 25.0
#: how long one poll of the server's queue may wait for the count to be reached
POLL = 0.25


@dataclass(frozen=True, slots=True)
class ForcedOverlap:
    """Hold a turn's token requests until ``agents`` wait together or ``settle`` s pass."""

    agents: int
    settle: float = 3.0

    def __post_init__(self) -> None:
        if self.agents < 1:
            raise ValueError(f"ForcedOverlap needs at least one agent, got {self.agents}")
        if not 0 < self.settle <= MAX_HOLD:
            raise ValueError(f"settle must be 0-{MAX_HOLD} seconds, got {self.settle}")


class OverlapBarrier:
    """A turn under a ``ForcedOverlap``: ``with OverlapBarrier(control, overlap) as barrier:``.

    Holding starts on entry, before any agent is started; a thread watches the
    queue and releases it.  On exit holding is always turned off, so no
    request is left waiting.  ``peak`` and ``released_full`` say what was seen.
    """

    def __init__(self, control: ControlClient, overlap: ForcedOverlap) -> None:
        self._control = control
        self._overlap = overlap
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="overlap-barrier", daemon=True)
        self.peak = 0
        self.released_full = False

    def __enter__(self) -> OverlapBarrier:
        self._control.hold(True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=MAX_HOLD + 5.0)
        self._control.hold(False)

    def _watch(self) -> None:
        wanted = self._overlap.agents
        hard_deadline = time.monotonic() + MAX_HOLD + 60.0  # start-up included
        first: float | None = None
        while not self._stop.is_set() and time.monotonic() < hard_deadline:
            held = self._control.held(at_least=wanted, timeout=POLL)
            if held and first is None:
                first = time.monotonic()
            self.peak = max(self.peak, len(held))
            if len(held) >= wanted:
                self.released_full = True
                break
            if first is not None and time.monotonic() - first >= self._overlap.settle:
                break
        self._control.hold(False)
