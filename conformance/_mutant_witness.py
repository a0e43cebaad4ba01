"""Witness worlds: the default battery's scenarios stretched along one dimension each.

A mutant the battery misses is said to need a dimension of the world
(``Gap``).  Where the simulator can already express that dimension, a
witness world (a shipped scenario with one field changed) checks the claim:
``tokenrace mutate --witness`` runs each survivor there, and the reference
engine too, which must stay clean for the witness to count.  Gaps the model
cannot express yet (a second profile, an outside writer, I/O errors, pid
reuse, a fresh engine per process) have no witness.  The mutual-exclusion gap has one judged by
``lock_holders_overlap`` (two holders of one lock at once) instead of the
checker, until the checker reports that anomaly itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from refresh_engine import Close, Failed, Flock, Lockf, LockFileEx, LockOp
from simulator import EventKind, FaultKind, OsModel, RunResult, Strategy, WorldSpec

from ._mutants import Gap
from ._scenario_files import Scenario


def _turns(world: WorldSpec, turns: tuple[float, ...]) -> WorldSpec:
    agents = tuple(dataclasses.replace(agent, turns=turns) for agent in world.agents)
    return dataclasses.replace(world, agents=agents)


def witnesses(battery: Sequence[Scenario], gap: Gap) -> list[Scenario]:
    """The witness scenarios for ``gap``, built from the battery's; [] where none is
    expressible."""
    named = {scenario.name: scenario for scenario in battery}

    def variant(base: str, suffix: str, **changes: object) -> Scenario:
        scenario = named[base]
        world = dataclasses.replace(scenario.world, **changes)  # type: ignore[arg-type]
        return dataclasses.replace(scenario, name=f"{base}@{suffix}", world=world)

    match gap:
        case Gap.OS_MODELS:
            return [variant("lock-per-agent-dir", "macos", os=OsModel.MACOS)]
        case Gap.LONG_STALLS:
            return [variant("stale-lock-break", "stall-700s", stall_seconds=700.0)]
        case Gap.MUTUAL_EXCLUSION:  # schedules by Hypothesis: the exhaustive bound misses some
            world = variant(EXCLUSION_WORLD, "two-holders")
            return [dataclasses.replace(world, strategy=Strategy.HYPOTHESIS, examples=1000)]
        case Gap.PROCESS_FAULTS:
            crash = variant("stale-lock-break", "crash", faults=frozenset({FaultKind.CRASH}))
            kill = variant("stale-lock-break", "kill", faults=frozenset({FaultKind.KILL}))
            two = (3600.0, 7200.0)
            return [
                dataclasses.replace(crash, world=_turns(crash.world, two)),
                dataclasses.replace(kill, world=_turns(kill.world, two)),
            ]
    return []


#: the witness world of ``Gap.MUTUAL_EXCLUSION``: judged by ``lock_holders_overlap``, not
#: by the checker, which judges outcomes only (issue 18, item 2 adds the anomaly)
EXCLUSION_WORLD = "lock-per-agent-dir"


def lock_holders_overlap(result: RunResult) -> bool:
    """Two agents held the lock of one lock-file name at once: each took an exclusive lock
    on a descriptor of that path, and neither had unlocked, closed it or died since."""
    holders: dict[str, set[str]] = {}
    for event in result.events:
        if event.kind is EventKind.FAULT and event.killed:
            for held in holders.values():
                held.discard(event.agent)
        effect = event.effect
        if (
            event.kind is not EventKind.EFFECT
            or not event.path
            or isinstance(event.outcome, Failed)
        ):
            continue
        held = holders.setdefault(event.path, set())
        if isinstance(effect, Flock | Lockf | LockFileEx) and effect.op is LockOp.EXCLUSIVE:
            held.add(event.agent)
            if len(held) > 1:
                return True
        elif isinstance(effect, Flock | Lockf | LockFileEx | Close):
            held.discard(event.agent)
    return False
