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


class _AgentSteps:
    """One agent's steps in a run, and its latest step per kind of access."""

    __slots__ = ("indices", "touched", "written", "everything")

    def __init__(self) -> None:
        self.indices: list[int] = []  # ascending
        self.touched: dict[str, int] = {}  # object -> its latest step touching it
        self.written: dict[str, int] = {}  # object -> its latest step writing it
        self.everything = -1  # its latest step touching everything

    def latest_dependent(self, footprint: Footprint, everything: bool) -> int:
        """Its latest step ``dependent`` with ``footprint`` (-1 if none)."""
        if everything:
            return self.indices[-1]
        latest = self.everything
        for obj, writes in footprint:
            index = (self.touched if writes else self.written).get(obj, -1)
            if index > latest:
                latest = index
        return latest


class Trace:
    """The steps of one run, with happens-before clocks and per-agent indexes."""

    __slots__ = (
        "length",
        "_agent_clock",
        "_object_write",
        "_object_read",
        "_last_everything",
        "_agents",
    )

    def __init__(self) -> None:
        self.length = 0  # steps recorded
        self._agent_clock: dict[str, VectorClock] = {}
        # happens-before: the clock of an object's last write, and of its reads since
        self._object_write: dict[str, VectorClock] = {}
        self._object_read: dict[str, VectorClock] = {}
        # the clock of the latest step that touches everything (a kill, a crash)
        self._last_everything: VectorClock | None = None
        self._agents: dict[str, _AgentSteps] = {}

    def clock(self, agent: str) -> VectorClock:
        """What happened before ``agent``'s latest step (empty before its first)."""
        return self._agent_clock.get(agent, {})

    def record(self, agent: str, footprint: Footprint) -> None:
        """The next step is ``agent``'s and touches ``footprint``: clock it and index it."""
        before = self.clock(agent)
        clock = dict(before)
        everything = touches_everything(footprint)
        _join(clock, self._last_everything, before)  # every step comes after the last kill
        if everything:  # ... and a kill or crash after every step so far
            for seen in (*self._object_write.values(), *self._object_read.values()):
                _join(clock, seen, before)
            self._object_write, self._object_read = {}, {}  # its clock covers them all
        last_write, reads_since = self._object_write, self._object_read
        if not everything:
            for obj, writes in footprint:
                _join(clock, last_write.get(obj), before)
                if writes:
                    _join(clock, reads_since.get(obj), before)
        index = self.length
        self.length += 1
        clock[agent] = index
        self._agent_clock[agent] = clock
        own = self._agents.get(agent)
        if own is None:
            own = self._agents[agent] = _AgentSteps()
        own.indices.append(index)
        if everything:
            own.everything = index
            self._last_everything = clock
            return
        for obj, writes in footprint:
            if writes:
                last_write[obj] = clock
                reads_since.pop(obj, None)
            elif obj in reads_since:
                _join(reads_since[obj], clock, None)
            else:
                reads_since[obj] = dict(clock)
            own.touched[obj] = index
            if writes:
                own.written[obj] = index

    def latest_race(self, agent: str, footprint: Footprint) -> int | None:
        """The latest step of another agent dependent with, and unordered before, this one."""
        races = self.races(agent, footprint)
        return max(races) if races else None

    def races(self, agent: str, footprint: Footprint) -> list[int]:
        """Per other agent, its latest step dependent with, and unordered before, this one.

        Flanagan and Godefroid need only the latest of these; their argument
        assumes a step's footprint is the same in every state, and an open's
        is not (it takes the lowest free descriptor): after two agents' opens
        are swapped, a third agent's call on a descriptor races with the other
        open.  Trying the agent before each other agent's racing step as well
        reaches those orders (``tests/test_soundness.py``).
        """
        seen = self.clock(agent)
        everything = touches_everything(footprint)
        found = []
        for other, own in self._agents.items():
            if other == agent:
                continue
            latest = own.latest_dependent(footprint, everything)
            # the other's steps up to seen[other] happen before this one: if its latest
            # dependent step does, so do all its earlier ones
            if latest > seen.get(other, -1):
                found.append(latest)
        return found

    def backtracks(
        self,
        footprints: Mapping[str, Footprint],
        enabled: Callable[[int], Sequence[str]],
    ) -> dict[int, set[str]]:
        """Where the search must try another order, and which agents to try there.

        ``footprints`` are the next steps at the new state, an ``agent!fault``
        option's too (a fault is a step of the agent it strikes, and races
        like one); ``enabled(index)`` lists the agents that could run at step
        ``index``.  At the latest race with an agent's next step, that agent
        is tried, or else the first enabled agent whose step there leads to
        it, or else every enabled agent.
        """
        found: dict[int, set[str]] = {}
        for option, footprint in footprints.items():
            agent = option.partition("!")[0]
            for index in self.races(agent, footprint):
                found.setdefault(index, set()).update(self._to_try(index, agent, enabled(index)))
        return found

    def _to_try(self, index: int, agent: str, enabled: Sequence[str]) -> Sequence[str]:
        if agent in enabled:
            return (agent,)
        seen = self.clock(agent)
        first: tuple[int, str] | None = None
        for other in enabled:
            # the other agent's first step after ``index``, if it happens before ``agent``'s
            own = self._agents[other].indices if other in self._agents else []
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
