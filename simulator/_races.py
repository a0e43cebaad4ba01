"""The race scan of DPOR, in time linear in the length of a run.

At every new state the exhaustive search asks, for each agent's next step,
which is the latest earlier step of another agent that is dependent with it
(``_footprint.dependent``) and not ordered before it by happens-before: that
is where the search must also try the other order (Flanagan and Godefroid,
POPL 2005).  Scanning the run backwards answers it in time proportional to
the run, which makes a whole run quadratic.  ``Trace`` answers it from
indexes kept as steps are recorded: per agent, the latest step that touches
each object, the latest that writes it and the latest that touches
everything.  Happens-before is per agent a prefix of its steps, so the latest
dependent step of each agent decides whether that agent races, and a query
costs ``agents x objects in the footprint``.  ``docs/race-scan.md`` has the
argument; ``tests/test_race_scan.py`` checks it against the backward scan.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence

from ._footprint import Footprint, touches_everything

#: Per agent, the index of its latest step that happens before a point.
VectorClock = dict[str, int]


class Trace:
    """The steps of one run, with happens-before clocks and per-object indexes."""

    __slots__ = (
        "length",
        "_agent_clock",
        "_object_write",
        "_object_read",
        "_own_steps",
        "_last_touch",
        "_last_write",
        "_last_everything",
    )

    def __init__(self) -> None:
        self.length = 0  # steps recorded
        self._agent_clock: dict[str, VectorClock] = {}
        # happens-before: the clock of an object's last write, and of its reads since
        self._object_write: dict[str, VectorClock] = {}
        self._object_read: dict[str, VectorClock] = {}
        # the indexes: per agent, its step indices, and its latest step per kind of access
        self._own_steps: dict[str, list[int]] = {}
        self._last_touch: dict[str, dict[str, int]] = {}
        self._last_write: dict[str, dict[str, int]] = {}
        self._last_everything: dict[str, int] = {}

    def clock(self, agent: str) -> VectorClock:
        """What happened before ``agent``'s latest step (empty before its first)."""
        return self._agent_clock.get(agent, {})

    def record(self, agent: str, footprint: Footprint) -> None:
        """The next step is ``agent``'s and touches ``footprint``: clock it and index it."""
        before = self.clock(agent)
        clock = dict(before)
        last_write, reads_since = self._object_write, self._object_read
        for obj, writes in footprint:
            _join(clock, last_write.get(obj), before)
            if writes:
                _join(clock, reads_since.get(obj), before)
        index = self.length
        self.length += 1
        clock[agent] = index
        self._agent_clock[agent] = clock
        self._own_steps.setdefault(agent, []).append(index)
        everything = touches_everything(footprint)
        if everything:
            self._last_everything[agent] = index
        touched = self._last_touch.setdefault(agent, {})
        written = self._last_write.setdefault(agent, {})
        for obj, writes in footprint:
            if writes:
                last_write[obj] = clock
                reads_since.pop(obj, None)
            elif obj in reads_since:
                _join(reads_since[obj], clock, None)
            else:
                reads_since[obj] = dict(clock)
            if not everything:
                touched[obj] = index
                if writes:
                    written[obj] = index

    def latest_race(self, agent: str, footprint: Footprint) -> int | None:
        """The latest step of another agent dependent with, and unordered before, this one."""
        seen = self.clock(agent)
        everything = touches_everything(footprint)
        found = -1
        for other, own in self._own_steps.items():
            if other == agent:
                continue
            if everything:
                latest = own[-1]
            else:
                latest = self._last_everything.get(other, -1)
                touched = self._last_touch.get(other, {})
                written = self._last_write.get(other, {})
                for obj, writes in footprint:
                    index = (touched if writes else written).get(obj, -1)
                    if index > latest:
                        latest = index
            # the agent's steps up to seen[other] happen before: if its latest dependent
            # one does, so do all its earlier ones
            if latest > seen.get(other, -1) and latest > found:
                found = latest
        return found if found >= 0 else None

    def backtracks(
        self,
        footprints: Mapping[str, Footprint],
        enabled: Callable[[int], Sequence[str]],
    ) -> dict[int, set[str]]:
        """Where the search must try another order, and which agents to try there.

        ``footprints`` are the next steps of the agents at the new state
        (``agent!fault`` options are skipped: faults are tried everywhere
        anyway); ``enabled(index)`` lists the agents that could run at step
        ``index``.  At the latest race with an agent's next step, that agent
        is tried, or else the first enabled agent whose step there leads to
        it, or else every enabled agent.
        """
        found: dict[int, set[str]] = {}
        for agent, footprint in footprints.items():
            if "!" in agent:
                continue
            index = self.latest_race(agent, footprint)
            if index is not None:
                found.setdefault(index, set()).update(self._to_try(index, agent, enabled(index)))
        return found

    def _to_try(self, index: int, agent: str, enabled: Sequence[str]) -> Sequence[str]:
        if agent in enabled:
            return (agent,)
        seen = self.clock(agent)
        first: tuple[int, str] | None = None
        for other in enabled:
            # the other agent's first step after ``index``, if it happens before ``agent``'s
            own = self._own_steps.get(other, [])
            at = bisect_right(own, index)
            if at == len(own) or own[at] > seen.get(other, -1):
                continue
            if first is None or own[at] < first[0]:
                first = (own[at], other)
        return (first[1],) if first is not None else enabled


def _join(into: VectorClock, other: VectorClock | None, known: VectorClock | None) -> None:
    """Raise ``into`` to ``other``; ``known`` is a clock already in ``into``: no need to look."""
    if not other or other is known:
        return
    for agent, index in other.items():
        if into.get(agent, -1) < index:
            into[agent] = index
