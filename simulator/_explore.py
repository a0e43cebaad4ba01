"""Exhaustive search: every schedule of a world, up to equivalence, or a stated bound.

A stateless model checker in the manner of CHESS and of Flanagan and
Godefroid's dynamic partial-order reduction (POPL 2005): every run replays
its prefix from the start (the simulator is deterministic), then explores
new states.  With ``reduction=True`` it adds, at each new state, only the
backtracking points that a race between dependent steps calls for (DPOR;
``_races`` finds the races in time linear in the run), and skips orders
that sleep sets prove equivalent; with ``reduction=False`` it tries every
runnable agent at every step, which is only feasible for tiny
worlds but states the reduction factor honestly.

A search that finishes within ``max_schedules`` *rules the bug out* for that
world: every interleaving of its agents, steps and fault budget is covered.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ._footprint import Footprint, dependent, touches_everything
from ._races import Trace
from ._result import RunResult
from ._schedule import Chooser, StepView, candidates
from ._shard import Shard, Splitter, SubtreeSkipped
from ._strategies import SearchResult, Strategy


class _Pruned(Exception):
    """Every runnable option sleeps: this run only repeats an explored order."""


@dataclass(slots=True)
class _Node:
    """One state on the current path: what could run, what was tried, what sleeps."""

    options: tuple[str, ...]  # default candidate first; fault variants after
    footprints: dict[str, Footprint]  # of every option, and of waiting agents
    sleep: dict[str, Footprint]  # options proven redundant here, with their footprints
    chosen: str = ""
    # the backtrack set: options to try here, each with whether it has been tried (a dict
    # of str and bool, not two sets: the garbage collector need not track it)
    to_try: dict[str, bool] = field(default_factory=dict)


class _Explorer:
    """One exhaustive search; ``run_once`` drives one replay-and-extend run."""

    def __init__(self, reduction: bool, splitter: Splitter | None = None) -> None:
        self.reduction = reduction
        self.splitter = splitter  # a shard's: every option above its depth, its subtrees only
        self.path: list[_Node] = []  # the stack of states of the current run's prefix
        self.depth = 0  # position in the current run
        self.trace = Trace()  # executed steps of the current run
        self.shared: dict[Footprint, Footprint] = {}  # one copy of each footprint, for nodes

    # ----------------------------------------------------------- one run

    def reset_run(self) -> None:
        self.depth = 0
        self.trace = Trace()

    def choose(self, view: StepView) -> str:
        if self.depth < len(self.path) and self.path[self.depth].chosen:
            node = self.path[self.depth]  # replaying the prefix
        else:
            if self.splitter is not None:
                self.splitter.enter(self.depth)  # another shard's subtree: SubtreeSkipped
            node = self._new_node(view)
        option = node.chosen
        self.trace.record(option.partition("!")[0], node.footprints[option])
        self.depth += 1
        return option

    def stuck(self, view: StepView) -> None:
        """The run ends with agents waiting forever: race their pending steps too.

        No choice is asked for at a deadlock, so without this a lock taken
        by one agent would never be tried in the order where a waiter gets it.
        """
        if self.reduction:
            footprints = {agent: view.footprint(agent) for agent in view.waiting}
            self._add_race_backtracks(_Node((), footprints, {}))

    def _new_node(self, view: StepView) -> _Node:
        listed = []
        for agent in candidates(view.runnable, view.last):
            listed.append(agent)
            for fault in view.faults(agent):
                listed.append(f"{agent}!{fault.value}")
        options = tuple(listed)
        footprints = {option: self._footprint(view, option) for option in options}
        for agent in view.waiting:
            footprints[agent] = self._footprint(view, agent)
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
            # faults are not reduced: each one is a different world, not a reordering
            unreduced = self.splitter is not None and self.splitter.unreduced(self.depth)
            for option in awake:
                if "!" in option or unreduced:  # a shard's prefix state: every option
                    node.to_try[option] = False
        else:
            first = options[0]
            node.to_try.update(dict.fromkeys(options, False))
        node.chosen = first
        node.to_try[first] = True
        return node

    def _footprint(self, view: StepView, option: str) -> Footprint:
        """``option``'s footprint; equal ones share one object, so a long path holds few."""
        footprint = view.footprint(option)
        if touches_everything(footprint):
            return footprint  # known by identity: never swap it for an equal one
        return self.shared.setdefault(footprint, footprint)

    def _inherited_sleep(self) -> dict[str, Footprint]:
        if not self.reduction or self.depth == 0:
            return {}
        parent = self.path[self.depth - 1]
        chosen = parent.footprints[parent.chosen]
        candidates_asleep = dict(parent.sleep)
        for option, tried in parent.to_try.items():
            if tried and option != parent.chosen:
                candidates_asleep[option] = parent.footprints[option]
        return {
            option: footprint
            for option, footprint in candidates_asleep.items()
            if not option.startswith(parent.chosen.partition("!")[0] + "!")
            and option.partition("!")[0] != parent.chosen.partition("!")[0]
            and not dependent(footprint, chosen)
        }

    def _add_race_backtracks(self, node: _Node) -> None:
        """Each agent's next step gets to run before the latest step it races with."""
        above = self.splitter.depth if self.splitter is not None else 0
        for index, options in self.trace.backtracks(node.footprints, self._enabled).items():
            if index < above:
                continue  # a prefix state: every option is tried there already
            to_try = self.path[index].to_try
            for option in options:
                to_try.setdefault(option, False)

    def _enabled(self, index: int) -> list[str]:
        return [option for option in self.path[index].options if "!" not in option]

    # ------------------------------------------------------- backtracking

    def next_prefix(self) -> bool:
        """Move to the deepest state with an untried option; False when all are tried."""
        while self.path:
            node = self.path[-1]
            todo = [
                option
                for option in node.options
                if node.to_try.get(option) is False and option not in node.sleep
            ]
            if todo:
                node.chosen = todo[0]
                node.to_try[todo[0]] = True
                return True
            self.path.pop()
        return False


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
    shard: Shard | None = None,
) -> SearchResult:
    """Explore until a failure, every schedule, ``max_schedules`` runs or ``max_seconds``.

    With ``shard``, only that shard's subtrees (``_shard``): ``complete`` then means the
    shard covered all of its own, and the shards' union is the whole search."""
    splitter = Splitter(shard) if shard is not None else None
    explorer = _Explorer(reduction, splitter)
    started = time.perf_counter()
    schedules = pruned = 0
    complete = False
    while True:
        explorer.reset_run()
        result: RunResult | None = None
        try:
            result = run(_ExplorerChooser(explorer))
        except _Pruned:
            pruned += splitter is None or splitter.cut_above(explorer.depth)
        except SubtreeSkipped:
            pass  # another shard's subtree: the next prefix
        else:
            # the run ended: drop nodes a shorter replay would not reach
            del explorer.path[explorer.depth :]
            if splitter is None or splitter.ended_above(explorer.depth):
                schedules += 1
            else:
                result = None  # above the split, another shard's: not counted, not checked
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
                _bound(describe, schedules, pruned, reduction, False, splitter),
                pruned,
                _subtrees(splitter),
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
        _bound(describe, schedules, pruned, reduction, complete, splitter),
        pruned,
        _subtrees(splitter),
    )


def _subtrees(splitter: Splitter | None) -> tuple[int, int]:
    return (0, 0) if splitter is None else (splitter.owned, splitter.subtrees)


def _bound(
    describe: str,
    schedules: int,
    pruned: int,
    reduction: bool,
    finished: bool,
    splitter: Splitter | None,
) -> str:
    method = "DPOR with sleep sets" if reduction else "no reduction"
    extent = "all" if finished else "stopped after"
    text = f"{extent} {schedules} schedules ({method}"
    text += f", {pruned} redundant prefixes cut)" if reduction else ")"
    if splitter is not None:
        text = (
            f"shard {splitter.shard} split at depth {splitter.depth}: {text}, "
            f"in {splitter.owned} of {splitter.subtrees} subtrees"
            + ("" if finished else " met so far")
        )
    return f"{describe}: {text}" if describe else text


class _ExplorerChooser:
    __slots__ = ("_explorer",)

    def __init__(self, explorer: _Explorer) -> None:
        self._explorer = explorer

    def choose(self, view: StepView) -> str:
        return self._explorer.choose(view)

    def stuck(self, view: StepView) -> None:
        self._explorer.stuck(view)
