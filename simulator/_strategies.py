"""Search strategies: how the choice at each step is made, and the search loops.

Every strategy ends in the same thing, a ``RunResult`` whose schedule string
replays it exactly:

- ``hypothesis`` draws *switch points* (a step, an agent rank, a fault) and
  shrinks a failing run toward fewer and earlier switches and fewer faults;
- ``random`` switches agents and injects faults by coin flips;
- ``pct`` is probabilistic concurrency testing (Burckhardt et al., ASPLOS
  2010): random agent priorities and ``depth - 1`` priority change points,
  which finds any bug of depth ``d`` with probability at least
  ``1 / (n * k^(d-1))`` per run;
- ``exhaustive`` (``_explore.py``) visits every schedule up to equivalence.
"""

from __future__ import annotations

import contextlib
import enum
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from ._result import RunResult
from ._schedule import Chooser, DefaultChooser, StepView, candidates


class Strategy(enum.Enum):
    HYPOTHESIS = "hypothesis"
    RANDOM = "random"
    PCT = "pct"
    EXHAUSTIVE = "exhaustive"


def _with_fault(view: StepView, agent: str, pick: int) -> str:
    """``agent``, or ``agent!fault`` when ``pick`` > 0 and a fault may strike it."""
    if pick <= 0:
        return agent
    faults = view.faults(agent)
    if not faults:
        return agent
    return f"{agent}!{faults[(pick - 1) % len(faults)].value}"


class SwitchPointChooser:
    """The default order, except at chosen steps.

    ``points`` maps a step to ``(rank, fault)``: the agent at ``rank`` among
    the candidates (0 is the default one) runs, struck by the ``fault``-th
    possible fault when ``fault`` > 0.  Most races need only a few
    preemptions, so a handful of points reaches them.
    """

    __slots__ = ("points",)

    def __init__(self, points: dict[int, tuple[int, int]]) -> None:
        self.points = points

    def choose(self, view: StepView) -> str:
        options = candidates(view.runnable, view.last)
        point = self.points.get(view.step)
        if point is None:
            return options[0]
        rank, fault = point
        return _with_fault(view, options[rank % len(options)], fault)


def switch_points(
    horizon: int, max_switches: int = 24, faults: bool = False
) -> st.SearchStrategy[dict[int, tuple[int, int]]]:
    """Up to ``max_switches`` points at steps below ``horizon``; zeros shrink to no-ops."""
    fault = st.integers(0, 7) if faults else st.just(0)
    point = st.tuples(st.integers(0, max(0, horizon - 1)), st.tuples(st.integers(0, 63), fault))
    return st.lists(point, max_size=max_switches).map(dict)


class RandomChooser:
    """Switch to a random other agent with probability ``switch``; fault with ``fault``."""

    __slots__ = ("_rng", "_switch", "_fault")

    def __init__(self, rng: random.Random, switch: float = 0.25, fault: float = 0.02) -> None:
        self._rng = rng
        self._switch = switch
        self._fault = fault

    def choose(self, view: StepView) -> str:
        options = candidates(view.runnable, view.last)
        agent = options[0]
        if len(options) > 1 and self._rng.random() < self._switch:
            agent = self._rng.choice(options[1:])
        strike = self._rng.random() < self._fault
        return _with_fault(view, agent, 1 + self._rng.randrange(8) if strike else 0)


class PctPriorities:
    """PCT's priorities (Burckhardt et al.): agents ranked at random, ``depth - 1`` change
    points among the first ``horizon`` decisions, each demoting the agent going there
    below all.  The simulator's ``PctChooser`` and the FUSE harness's picker share it."""

    __slots__ = ("priority", "changes")

    def __init__(self, rng: random.Random, agents: Sequence[str], depth: int, horizon: int) -> None:
        order = list(agents)
        rng.shuffle(order)
        # initial priorities depth .. depth+n-1; change point i lowers to depth-1-i
        self.priority = {name: depth + rank for rank, name in enumerate(order)}
        points = rng.sample(range(max(horizon, depth)), k=max(0, depth - 1))
        self.changes = {point: depth - 1 - index for index, point in enumerate(sorted(points))}

    def highest(self, ready: Sequence[str]) -> str:
        return max(ready, key=self.priority.__getitem__)

    def change_at(self, point: int, agent: str) -> bool:
        """Demote ``agent`` if ``point`` is a change point; whether it was."""
        lowered = self.changes.get(point)
        if lowered is not None:
            self.priority[agent] = lowered
        return lowered is not None


class PctChooser:
    """PCT: the highest-priority runnable agent runs; change points demote the runner."""

    __slots__ = ("_priorities", "_rng", "_fault")

    def __init__(
        self,
        rng: random.Random,
        agents: Sequence[str],
        depth: int,
        horizon: int,
        fault: float = 0.0,
    ) -> None:
        self._priorities = PctPriorities(rng, agents, depth, horizon)
        self._rng = rng
        self._fault = fault

    def choose(self, view: StepView) -> str:
        agent = self._priorities.highest(view.runnable)
        if self._priorities.change_at(view.step, agent):
            agent = self._priorities.highest(view.runnable)
        strike = self._fault > 0 and self._rng.random() < self._fault
        return _with_fault(view, agent, 1 + self._rng.randrange(8) if strike else 0)


@dataclass(frozen=True, slots=True)
class SearchResult:
    """How a search ended: the (minimal, where the strategy shrinks) failing run, if any."""

    strategy: Strategy
    failing: RunResult | None
    examples: int  # schedules run in all, shrinking included
    first_failure_at: int | None  # how many schedules it took to find the first failure
    elapsed: float  # seconds, wall clock
    time_to_first_failure: float | None
    complete: bool = False  # exhaustive only: every schedule within the bound was covered
    bound: str = ""  # what the search covered, in words
    pruned: int = 0  # exhaustive only: runs cut short by sleep sets
    subtrees: tuple[int, int] = (0, 0)  # a shard's: its own subtrees, and all it met


def _seeded(
    seed: int, database: str | None
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``@seed`` for a reproducible search, unless there is a database: Hypothesis does not
    read or write its database under a fixed seed, and the database is the point then."""
    if database is not None:
        return lambda test: test
    return hypothesis_seed(seed)


class _Found(Exception):
    """Raised inside the property so Hypothesis shrinks toward the minimal run."""


Run = Callable[[Chooser], RunResult]
IsFailure = Callable[[RunResult], bool]


def search_hypothesis(
    run: Run,
    is_failure: IsFailure,
    *,
    max_examples: int = 1000,
    seed: int = 0,
    shrink: bool = True,
    max_switches: int = 24,
    faults: bool = False,
    database: str | None = None,
    key: str = "",
) -> SearchResult:
    """Draw schedules until ``is_failure`` holds, then shrink; at most ``max_examples``.

    The default order runs first: it fixes the horizon within which switch
    points are drawn, and a bug it shows needs no search at all.  With
    ``database`` (a directory), Hypothesis keeps the minimal failing schedules
    under ``key`` there and tries them first next time, so a CI run that
    caches the directory re-finds a known counterexample at once; the search
    is then not seeded (Hypothesis ignores its database under a fixed seed).
    """
    examples = 0
    first_at: int | None = None
    first_time: float | None = None
    failing: RunResult | None = None
    started = time.perf_counter()
    phases = [Phase.generate, Phase.shrink] if shrink else [Phase.generate]
    if database is not None:
        phases.insert(0, Phase.reuse)  # saved failing schedules first
    horizon = run(DefaultChooser()).steps + 1

    @_seeded(seed, database)
    @settings(
        max_examples=max_examples,
        database=None if database is None else DirectoryBasedExampleDatabase(database),
        deadline=None,
        phases=phases,
        verbosity=Verbosity.quiet,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        print_blob=False,
    )
    @given(switch_points(horizon, max_switches, faults))
    def probe(points: dict[int, tuple[int, int]]) -> None:
        nonlocal examples, first_at, first_time, failing
        result = run(SwitchPointChooser(points))
        examples += 1
        if is_failure(result):
            if first_at is None:
                first_at = examples
                first_time = time.perf_counter() - started
            failing = result
            raise _Found()

    if key:  # one probe function serves every cell: tell their database entries apart
        inner = getattr(getattr(probe, "hypothesis", None), "inner_test", None)
        if inner is not None:
            inner._hypothesis_internal_add_digest = key.encode()
    with contextlib.suppress(_Found):
        probe()
    return SearchResult(
        strategy=Strategy.HYPOTHESIS,
        failing=failing,
        examples=examples,
        first_failure_at=first_at,
        elapsed=time.perf_counter() - started,
        time_to_first_failure=first_time,
        bound=f"{examples} schedules with up to {max_switches} switch points",
    )


def search_sampled(
    strategy: Strategy,
    run: Run,
    is_failure: IsFailure,
    make_chooser: Callable[[random.Random, int], Chooser],
    *,
    max_examples: int,
    seed: int,
    bound: str,
) -> SearchResult:
    """Run independently seeded choosers until one fails; no shrinking."""
    started = time.perf_counter()
    horizon = run(DefaultChooser()).steps + 1
    for index in range(max_examples):
        result = run(make_chooser(random.Random(f"{seed}:{index}"), horizon))
        if is_failure(result):
            elapsed = time.perf_counter() - started
            return SearchResult(strategy, result, index + 1, index + 1, elapsed, elapsed, False)
    elapsed = time.perf_counter() - started
    return SearchResult(strategy, None, max_examples, None, elapsed, None, False, bound)


def search_random(
    run: Run, is_failure: IsFailure, *, max_examples: int = 1000, seed: int = 0
) -> SearchResult:
    return search_sampled(
        Strategy.RANDOM,
        run,
        is_failure,
        lambda rng, _horizon: RandomChooser(rng),
        max_examples=max_examples,
        seed=seed,
        bound=f"{max_examples} random schedules",
    )


def search_pct(
    run: Run,
    is_failure: IsFailure,
    agents: Sequence[str],
    *,
    depth: int = 3,
    max_examples: int = 1000,
    seed: int = 0,
) -> SearchResult:
    return search_sampled(
        Strategy.PCT,
        run,
        is_failure,
        lambda rng, horizon: PctChooser(rng, agents, depth, horizon),
        max_examples=max_examples,
        seed=seed,
        bound=f"{max_examples} PCT schedules of depth {depth}",
    )
