"""Random and PCT schedules of file steps and refreshes, and shrinking a failing one.

The sampled strategies of ``check --command … --fs`` pick at each decision
of a run (``_fs_run.Picker``), seeded per run (``SEED:RUN``) so the same
``--seed`` draws the same schedules:

Departures matter at *races* (another ready agent's step conflicts with the
default's: a common path, one of them changing it) and at *hot* steps (another
ready agent's step touches a path some step of the default run changed: an
unlocked read long before the write it races with is waiting);
elsewhere they only lengthen the schedule.  The default run is run first.

- ``random``: at each race a coin says whether the default (keep the agent
  that went last) or one of the agents racing it goes; at a hot step another
  agent goes with probability 1/(decisions of the default run);
- ``pct`` (Burckhardt et al., ASPLOS 2010) counted in races and hot steps:
  random agent priorities, the highest ready agent goes, and at ``depth - 1``
  of them, picked at random among the default run's, the one about to go
  drops below everyone.

Whatever picked, a run's schedule is the departures it took, so a
failure replays with ``--schedule``.  ``shrink`` then drops departures the
failure does not need, Hypothesis-style: each candidate (the default, a
half, a detour fewer, one departure fewer) is run, and kept when it fails
with an anomaly of the same kind; the result's own departures (it may not take all it was
given) are the new schedule, until no single drop still fails.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence

from simulator import PctPriorities

from ._fs_run import Deviation, Door, FsRun

__all__ = ["PctPicker", "RandomPicker", "counted", "hot_paths", "sample_schedules", "shrink"]


def hot_paths(run: FsRun) -> frozenset[str]:
    """The paths some step of ``run`` changed (the store, the lock, a temp file, the server)."""
    changed: set[str] = set()
    for decision in run.decisions:
        door = decision.door(decision.chosen)
        if door is not None and door.mutates:
            changed |= door.touches
    return frozenset(changed)


def _warm(
    doors: Mapping[str, Door], ready: tuple[str, ...], default: str, hot: frozenset[str]
) -> list[str]:
    """The ready agents other than the default whose step touches a hot path."""
    if not hot:
        return []
    return [agent for agent in ready if agent != default and doors[agent].touches & hot]


class RandomPicker:
    """At each race a coin: the default goes, or one of the agents racing it; and, with
    probability ``spread``, an agent whose step touches a ``hot`` path goes early."""

    def __init__(
        self, rng: random.Random, hot: frozenset[str] = frozenset(), spread: float = 0.0
    ) -> None:
        self.rng = rng
        self.hot = hot
        self.spread = spread

    def pick(
        self,
        index: int,
        doors: Mapping[str, Door],
        ready: tuple[str, ...],
        racing: tuple[str, ...],
        default: str,
    ) -> str:
        if racing and self.rng.random() < 0.5:
            return self.rng.choice(racing)
        warm = _warm(doors, ready, default, self.hot)
        if warm and self.rng.random() < self.spread:
            return self.rng.choice(warm)
        return default


class PctPicker:
    """PCT over races and hot steps: the ready agent of highest priority goes; at ``depth - 1``
    of those decisions (picked at random among the first ``horizon``) the one going drops
    below all."""

    def __init__(
        self,
        rng: random.Random,
        agents: Sequence[str],
        depth: int,
        horizon: int,
        hot: frozenset[str] = frozenset(),
    ) -> None:
        self.priorities = PctPriorities(rng, agents, depth, horizon)
        self.hot = hot
        self.counted = 0

    def pick(
        self,
        index: int,
        doors: Mapping[str, Door],
        ready: tuple[str, ...],
        racing: tuple[str, ...],
        default: str,
    ) -> str:
        agent = self.priorities.highest(ready)
        if racing or _warm(doors, ready, default, self.hot):
            self.counted += 1
            if self.priorities.change_at(self.counted - 1, agent):
                agent = self.priorities.highest(ready)
        return agent


def counted(run: FsRun, hot: frozenset[str]) -> int:
    """How many decisions of ``run`` PCT counts: races, and hot steps waiting."""
    found = 0
    for decision in run.decisions:
        doors = {door.agent: door for door in decision.doors}
        ready = tuple(doors)
        if decision.racing or _warm(doors, ready, decision.default, hot):
            found += 1
    return found


def sample_schedules(
    run_with: Callable[[RandomPicker | PctPicker | None], FsRun],
    make: Callable[[random.Random, FsRun], RandomPicker | PctPicker],
    *,
    seed: int,
    limit: int,
) -> Iterator[FsRun]:
    """The default run, then ``limit - 1`` runs picked by ``make(rng, default_run)``."""
    first = run_with(None)
    yield first
    for number in range(1, limit):
        yield run_with(make(random.Random(f"{seed}:{number}"), first))


def _kinds(run: FsRun) -> frozenset[str]:
    return frozenset(anomaly.kind.value for anomaly in run.client.run.anomalies)


def _candidates(schedule: tuple[Deviation, ...]) -> Iterator[tuple[Deviation, ...]]:
    """Smaller schedules, the most promising first: none, each half, a detour fewer, one
    departure fewer.

    A detour is two departures in a row, ``i:q`` and ``j:p``: q's ``j - i`` steps went first.
    Without them, everyone else's steps come ``j - i`` decisions earlier, so the departures
    after it move as much earlier to stay at the same steps."""
    yield ()
    if len(schedule) >= 4:
        half = len(schedule) // 2
        yield schedule[half:]
        yield schedule[:half]
    for at in range(len(schedule) - 1):
        first, back = schedule[at], schedule[at + 1]
        length = back.index - first.index
        later = tuple(Deviation(d.index - length, d.agent) for d in schedule[at + 2 :])
        if not later or later[0].index > first.index:
            yield schedule[:at] + later
    for drop in range(len(schedule)):
        yield schedule[:drop] + schedule[drop + 1 :]


def shrink(
    run_one: Callable[[tuple[Deviation, ...]], FsRun], failing: FsRun, *, budget: int = 40
) -> tuple[FsRun, int]:
    """The failing run with departures dropped while it still fails the same way; and the runs
    that took (at most ``budget``)."""
    best, kinds, runs = failing, _kinds(failing), 0
    tried: set[tuple[Deviation, ...]] = {failing.schedule}
    improved = True
    while improved and best.schedule and runs < budget:
        improved = False
        for candidate in _candidates(best.schedule):
            if candidate in tried:
                continue
            if runs >= budget:
                break
            tried.add(candidate)
            run = run_one(candidate)
            runs += 1
            fails_alike = run.client.run.failed and _kinds(run) & kinds
            if fails_alike and len(run.schedule) < len(best.schedule):
                best, improved = run, True
                break
    return best, runs
