"""The battery ``tokenrace check --engine`` runs: worlds built on the dimensions of the world.

The corpus scenarios were each written around the bug they stand for, so a
battery of them is strong on those bugs and weak beyond.  These worlds vary
one dimension at a time from a plain world (shared store, Linux, agents in
their own processes, OpenAI's policy): the topology (separate processes,
one gateway process, a mix), a server fault during a refresh (5xx, 429,
reset, a lost response with and without a reuse window, an answer 30 s
late), a process fault
(kill, crash, a stall shorter and longer than a lock's stale timeout), a disk
fault (a write, fsync, replace, create or lock that fails; alone, and then a
crash, where an fsync whose failure was ignored costs the save), the store's
population (two profiles refreshed at once, a bystander profile),
an outside writer (a login to another profile while agents refresh), the OS
model and the layout.  Each is a generated world, so its label
replays (``tokenrace replay --scenario LABEL``).  Two-agent worlds are
searched exhaustively (a clean verdict is "ruled out" when the search
finishes); three-agent ones by Hypothesis within a budget.

``check`` runs these and the corpus scenarios the reference claims: the
corpus stays, as regression tests for the bugs it was written for.
``battery_scenarios`` is that list, and ``run_battery`` the one loop that
runs an engine through it in turn; ``tokenrace check --engine`` runs the same
list in parallel cells, and ``tokenrace mutate`` through ``run_battery``, so
the mutation score measures exactly what ``check`` would catch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from simulator import Strategy

from ._campaign import EngineResult, search_engine
from ._engines import EngineEntry
from ._scenario_files import ReferenceClaim, Scenario, builtin_scenarios, load_scenario_file
from ._worlds import GeneratedWorld


@dataclass(frozen=True, slots=True)
class BatteryWorld:
    """One world of the battery: the dimension it varies, and how it is searched."""

    dimension: str
    world: GeneratedWorld
    strategy: Strategy
    examples: int

    @property
    def label(self) -> str:
        return self.world.label

    def scenario(self) -> Scenario:
        """This world as a scenario the reference claims clean, named by its label."""
        return Scenario(
            name=self.label,
            title=f"{self.dimension}: {self.world.title}",
            race_class=None,
            source="the battery",
            world=self.world.world(),
            engine="reference",
            reproduces=False,
            reference=ReferenceClaim.CLEAN,
            anomaly=None,
            strategy=self.strategy,
            examples=self.examples,
            seed=0,
        )


def _world(
    dimension: str, label: str, strategy: Strategy = Strategy.EXHAUSTIVE, examples: int = 3000
) -> BatteryWorld:
    world = GeneratedWorld.parse(label)
    assert world is not None, label
    return BatteryWorld(dimension, world, strategy, examples)


HYPOTHESIS = Strategy.HYPOTHESIS

#: Every world of the default battery, by dimension.
BATTERY: tuple[BatteryWorld, ...] = (
    _world("topology: separate processes", "shared/linux/3xproc/openai/none", HYPOTHESIS, 400),
    _world("topology: one gateway process", "shared/linux/3xgw/openai/none", HYPOTHESIS, 400),
    _world("topology: a gateway and a process", "shared/linux/3xmix/openai/none", HYPOTHESIS, 400),
    _world("topology: gateway, two expiries", "shared/linux/2xgw/openai/none/2exp"),
    _world("server fault: 5xx during a refresh", "shared/linux/2xproc/openai/5xx"),
    _world("server fault: 429 during a refresh", "shared/linux/2xproc/openai/429"),
    _world("server fault: connection reset", "shared/linux/2xproc/openai/reset"),
    _world("server fault: lost response, no window", "shared/linux/2xproc/openai/drop"),
    _world("server fault: lost response, reuse window", "shared/linux/2xproc/okta/drop"),
    _world("server fault: a slow answer (30 s)", "shared/linux/2xproc/openai/slow"),
    _world("process fault: kill", "shared/linux/2xproc/openai/kill"),
    _world("process fault: machine crash", "shared/linux/2xproc/openai/crash"),
    _world("process fault: 1 s stall", "shared/linux/2xproc/openai/stall1"),
    _world("process fault: 10 min stall", "shared/linux/2xproc/openai/stall600"),
    _world("process fault: kill in a gateway", "shared/linux/3xmix/openai/kill", HYPOTHESIS, 300),
    _world("disk fault: a file call or a lock fails", "shared/linux/2xproc/openai/ioerror"),
    _world("disk fault: a call fails, then a crash", "shared/linux/1xproc/openai/ioerror+crash"),
    _world("population: two profiles", "shared/linux/2xproc/openai/none/2prof"),
    _world(
        "population: two profiles, three agents",
        "shared/linux/3xproc/openai/none/2prof",
        HYPOTHESIS,
        400,
    ),
    _world("population: a bystander profile", "mirrored/linux/2xproc/openai/none/bystander"),
    _world("population: an outside login", "shared/linux/2xproc/openai/none/login"),
    _world("population: two profiles, a kill", "shared/linux/2xproc/openai/kill/2prof"),
    _world("os: windows", "shared/windows/3xproc/openai/none", HYPOTHESIS, 300),
    _world("os: macos", "shared/macos/3xproc/openai/none", HYPOTHESIS, 300),
    _world("os: windows gateway, a kill", "shared/windows/2xgw/openai/kill"),
    _world("layout: mirrored copies", "mirrored/linux/3xproc/openai/none", HYPOTHESIS, 400),
    _world("layout: separate logins", "separate-logins/linux/2xproc/openai/none"),
)


def battery_scenarios(files: Sequence[Path | str] = ()) -> list[Scenario]:
    """What ``check`` holds an engine to: the battery's worlds, then every shipped scenario
    the reference claims clean; with ``files``, those files' claimed scenarios only."""
    worlds = [] if files else [entry.scenario() for entry in BATTERY]
    shipped = [load_scenario_file(Path(path)) for path in files or builtin_scenarios()]
    return worlds + [s for s in shipped if s.reference is ReferenceClaim.CLEAN]


def run_battery(
    entry: EngineEntry,
    scenarios: Sequence[Scenario],
    *,
    examples: int | None = None,
    seed: int | None = None,
    strategy: Strategy | None = None,
    database: str | None = None,
    stop: Callable[[EngineResult], bool] = lambda result: False,
) -> Iterator[tuple[Scenario, EngineResult]]:
    """Search ``entry`` in each scenario in turn, with the scenario's own budget unless
    overridden; ``stop`` ends the battery early after a result (``mutate``: the first kill)."""
    for scenario in scenarios:
        result = search_engine(
            scenario.name,
            scenario.world,
            entry,
            max_examples=examples or scenario.examples,
            seed=scenario.seed if seed is None else seed,
            strategy=strategy or scenario.strategy,
            database=database,
        )
        result = dataclasses.replace(result, title=scenario.title)
        yield scenario, result
        if stop(result):
            return
