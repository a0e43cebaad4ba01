"""Exhaustive search: every schedule of a world, up to equivalence, or a stated bound.

A stateless model checker in the manner of CHESS and of Flanagan and
Godefroid's dynamic partial-order reduction (POPL 2005): every run replays
its prefix from the start (the simulator is deterministic), then explores
new states.  With ``reduction=True`` it adds, at each new state, only the
backtracking points that a race between dependent steps calls for (DPOR),
and skips orders that sleep sets prove equivalent; with ``reduction=False``
it tries every runnable agent at every step, which is only feasible for tiny
worlds but states the reduction factor honestly.

A search that finishes within ``max_schedules`` *rules the bug out* for that
world: every interleaving of its agents, steps and fault budget is covered.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ._footprint import ANY, Footprint, dependent, touches_everything
from ._result import RunResult
from ._schedule import Chooser, StepView, candidates
from ._strategies import SearchResult, Strategy

VectorClock = dict[str, int]


class _Pruned(Exception):
    """Every runnable option sleeps: this run only repeats an explored order."""


@dataclass(slots=True)
class _Node:
    """One state on the current path: what could run, what was tried, what sleeps."""

    options: list[str]  # default candidate first; fault variants after
    footprints: dict[str, Footprint]  # of every option, and of waiting agents
    sleep: dict[str, Footprint]  # options proven redundant here, with their footprints
    chosen: str = ""
    backtrack: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Step:
    agent: str
    footprint: Footprint
    clock: VectorClock


class _Explorer:
    """One exhaustive search; ``run_once`` drives one replay-and-extend run."""

    def __init__(self, reduction: bool) -> None:
        self.reduction = reduction
        self.path: list[_Node] = []  # the stack of states of the current run's prefix
        self.depth = 0  # position in the current run
        self.steps: list[_Step] = []  # executed steps of the current run
        self.agent_clock: dict[str, VectorClock] = {}
        self.obj_write: dict[str, VectorClock] = {}
        self.obj_read: dict[str, VectorClock] = {}

    # ----------------------------------------------------------- one run

    def reset_run(self) -> None:
        self.depth = 0
        self.steps = []
        self.agent_clock = {}
        self.obj_write = {}
        self.obj_read = {}

    def choose(self, view: StepView) -> str:
        if self.depth < len(self.path) and self.path[self.depth].chosen:
            node = self.path[self.depth]  # replaying the prefix
        else:
            node = self._new_node(view)
        option = node.chosen
        self._record(option, node.footprints[option])
        self.depth += 1
        return option

    def stuck(self, view: StepView) -> None:
        """The run ends with agents waiting forever: race their pending steps too.

        No choice is asked for at a deadlock, so without this a lock taken
        by one agent would never be tried in the order where a waiter gets it.
        """
        if self.reduction:
            footprints = {agent: view.footprint(agent) for agent in view.waiting}
            self._add_race_backtracks(_Node([], footprints, {}))

    def _new_node(self, view: StepView) -> _Node:
        options = []
        for agent in candidates(view.runnable, view.last):
            options.append(agent)
            options.extend(f"{agent}!{fault.value}" for fault in view.faults(agent))
        footprints = {option: view.footprint(option) for option in options}
        for agent in view.waiting:
            footprints[agent] = view.footprint(agent)
        sleep = self._inherited_sleep()
        node = _Node(options, footprints, sleep)
        if self.depth < len(self.path):
            self.path[self.depth] = node
        else:
            self.path.append(node)
        if self.reduction:
            self._add_race_backtracks(node)
            awake = [option for option in options if option not in sleep]
            if not awake:
                raise _Pruned()
            first = awake[0]
            node.backtrack.add(first)
            # faults are not reduced: each one is a different world, not a reordering
            node.backtrack.update(option for option in awake if "!" in option)
        else:
            first = options[0]
            node.backtrack.update(options)
        node.chosen = first
        node.done.add(first)
        return node

    def _inherited_sleep(self) -> dict[str, Footprint]:
        if not self.reduction or self.depth == 0:
            return {}
        parent = self.path[self.depth - 1]
        chosen = parent.footprints[parent.chosen]
        candidates_asleep = dict(parent.sleep)
        for option in parent.done:
            if option != parent.chosen:
                candidates_asleep[option] = parent.footprints[option]
        return {
            option: footprint
            for option, footprint in candidates_asleep.items()
            if not option.startswith(parent.chosen.partition("!")[0] + "!")
            and option.partition("!")[0] != parent.chosen.partition("!")[0]
            and not dependent(footprint, chosen)
        }

    def _record(self, option: str, footprint: Footprint) -> None:
        agent = option.partition("!")[0]
        clock = dict(self.agent_clock.get(agent, {}))
        everything = touches_everything(footprint)
        _join(clock, self.obj_write.get(ANY, {}))  # every step comes after the last kill
        if everything:  # ... and a kill or crash after every step so far
            for seen in (*self.obj_write.values(), *self.obj_read.values()):
                _join(clock, seen)
        for obj, writes in footprint:
            _join(clock, self.obj_write.get(obj, {}))
            if writes:
                _join(clock, self.obj_read.get(obj, {}))
        index = len(self.steps)
        clock[agent] = index
        if everything:
            self.obj_write = {ANY: clock}
            self.obj_read = {}
        for obj, writes in footprint:
            if writes:
                self.obj_write[obj] = clock
                self.obj_read[obj] = {}
            else:
                _join(self.obj_read.setdefault(obj, {}), clock)
        self.agent_clock[agent] = clock
        self.steps.append(_Step(agent, footprint, clock))

    def _add_race_backtracks(self, node: _Node) -> None:
        """For each option (a fault too), the latest racing step gets a backtrack point."""
        for option, footprint in node.footprints.items():
            agent = option.partition("!")[0]
            seen = self.agent_clock.get(agent, {})
            for index in range(len(self.steps) - 1, -1, -1):
                step = self.steps[index]
                if step.agent == agent or not dependent(step.footprint, footprint):
                    continue
                if seen.get(step.agent, -1) >= index:
                    continue  # it happens before the agent's next step: ordered, no race
                self._backtrack_at(index, agent, seen)
                break

    def _backtrack_at(self, index: int, agent: str, seen: VectorClock) -> None:
        node = self.path[index]
        enabled = [option for option in node.options if "!" not in option]
        if agent in enabled:
            node.backtrack.add(agent)
            return
        for later in range(index + 1, len(self.steps)):
            other = self.steps[later].agent
            if other in enabled and seen.get(other, -1) >= later:
                node.backtrack.add(other)
                return
        node.backtrack.update(enabled)

    # ------------------------------------------------------- backtracking

    def next_prefix(self) -> bool:
        """Move to the deepest state with an untried option; False when all are tried."""
        while self.path:
            node = self.path[-1]
            todo = [
                option
                for option in node.options
                if option in node.backtrack and option not in node.done and option not in node.sleep
            ]
            if todo:
                node.chosen = todo[0]
                node.done.add(todo[0])
                return True
            self.path.pop()
        return False


def _join(into: VectorClock, other: VectorClock) -> None:
    for agent, index in other.items():
        if into.get(agent, -1) < index:
            into[agent] = index


@dataclass(frozen=True, slots=True)
class ExploreResult:
    search: SearchResult
    schedules: int  # complete runs
    pruned: int  # runs cut short by sleep sets


def search_exhaustive(
    run: Callable[[Chooser], RunResult],
    is_failure: Callable[[RunResult], bool],
    *,
    reduction: bool = True,
    max_schedules: int = 100_000,
    max_seconds: float = 300.0,
    describe: str = "",
) -> SearchResult:
    """Explore until a failure, every schedule, ``max_schedules`` runs or ``max_seconds``."""
    explorer = _Explorer(reduction)
    started = time.perf_counter()
    schedules = pruned = 0
    complete = False
    while True:
        explorer.reset_run()
        try:
            result = run(_ExplorerChooser(explorer))
        except _Pruned:
            pruned += 1
            result = None
        else:
            schedules += 1
            # the run ended: drop nodes a shorter replay would not reach
            del explorer.path[explorer.depth :]
        if result is not None and is_failure(result):
            elapsed = time.perf_counter() - started
            return SearchResult(
                Strategy.EXHAUSTIVE,
                result,
                schedules,
                schedules,
                elapsed,
                elapsed,
                False,
                _bound(describe, schedules, pruned, reduction, finished=False),
            )
        if not explorer.next_prefix():
            complete = True
            break
        if schedules + pruned >= max_schedules or time.perf_counter() - started > max_seconds:
            break
    elapsed = time.perf_counter() - started
    return SearchResult(
        Strategy.EXHAUSTIVE,
        None,
        schedules,
        None,
        elapsed,
        None,
        complete,
        _bound(describe, schedules, pruned, reduction, finished=complete),
    )


def _bound(describe: str, schedules: int, pruned: int, reduction: bool, finished: bool) -> str:
    method = "DPOR with sleep sets" if reduction else "no reduction"
    extent = "all" if finished else "stopped after"
    text = f"{extent} {schedules} schedules ({method}"
    text += f", {pruned} redundant prefixes cut)" if reduction else ")"
    return f"{describe}: {text}" if describe else text


class _ExplorerChooser:
    __slots__ = ("_explorer",)

    def __init__(self, explorer: _Explorer) -> None:
        self._explorer = explorer

    def choose(self, view: StepView) -> str:
        return self._explorer.choose(view)

    def stuck(self, view: StepView) -> None:
        self._explorer.stuck(view)
