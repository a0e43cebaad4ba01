"""Witness worlds: the default battery's scenarios stretched along one dimension each.

A mutant the battery misses is said to need a dimension of the world
(``Gap``).  Where the simulator can already express that dimension, a
witness world (a shipped scenario with one field changed) checks the claim:
``tokenrace mutate --witness`` runs each survivor there, and the reference
engine too, which must stay clean for the witness to count.  Gaps the model
cannot express yet (a second profile, an outside writer, I/O errors, pid
reuse, the checker's mutual-exclusion anomaly) have no witness.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from simulator import FaultKind, OsModel, WorldSpec

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
        case Gap.PROCESS_FAULTS | Gap.PID_MODEL:
            crash = variant("stale-lock-break", "crash", faults=frozenset({FaultKind.CRASH}))
            kill = variant("stale-lock-break", "kill", faults=frozenset({FaultKind.KILL}))
            two = (3600.0, 7200.0)
            return [
                dataclasses.replace(crash, world=_turns(crash.world, two)),
                dataclasses.replace(kill, world=_turns(kill.world, two)),
            ]
    return []
