"""Search strategies: how the choice at each step is made, and a search loop.

``search_hypothesis`` lets Hypothesis draw the choices (``st.data()``) and
shrink a failing run toward fewer context switches; ``DefaultChooser`` and
``ReplayChooser`` need no search at all.  Every strategy ends in the same
thing: a ``RunResult`` whose schedule string replays it exactly.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from ._kernel import RunResult
from ._schedule import Chooser, DefaultChooser, StepView, candidates


class SwitchPointChooser:
    """The default order, except at chosen steps, where another runnable agent goes.

    ``switches`` maps a step to a rank among the *other* runnable agents (taken
    modulo their number).  Most races need only a few preemptions, so a
    handful of switch points reaches them; Hypothesis shrinks the map toward
    fewer and earlier switches, so the minimal schedule is the simplest story.
    """

    __slots__ = ("switches",)

    def __init__(self, switches: dict[int, int]) -> None:
        self.switches = switches

    def choose(self, view: StepView) -> str:
        options = candidates(view.runnable, view.last)
        rank = self.switches.get(view.step)
        if rank is None or len(options) == 1:
            return options[0]
        return options[1 + rank % (len(options) - 1)]


def switch_points(horizon: int, max_switches: int = 24) -> st.SearchStrategy[dict[int, int]]:
    """Up to ``max_switches`` preemptions at steps below ``horizon``."""
    point = st.tuples(st.integers(0, max(0, horizon - 1)), st.integers(0, 63))
    return st.lists(point, max_size=max_switches).map(dict)


@dataclass(frozen=True, slots=True)
class SearchResult:
    """How a search ended: the minimal failing run, if one was found."""

    failing: RunResult | None
    examples: int  # schedules run in all, shrinking included
    first_failure_at: int | None  # how many schedules it took to find the first failure
    elapsed: float  # seconds, wall clock
    time_to_first_failure: float | None


class _Found(Exception):
    """Raised inside the property so Hypothesis shrinks toward the minimal run."""


def search_hypothesis(
    run: Callable[[Chooser], RunResult],
    is_failure: Callable[[RunResult], bool],
    *,
    max_examples: int = 1000,
    seed: int = 0,
    shrink: bool = True,
    max_switches: int = 24,
) -> SearchResult:
    """Draw schedules until ``is_failure`` holds, then shrink; at most ``max_examples``.

    The default order runs first: it fixes the horizon within which switch
    points are drawn, and a bug it shows needs no search at all.
    """
    examples = 0
    first_at: int | None = None
    first_time: float | None = None
    failing: RunResult | None = None
    started = time.perf_counter()

    phases = [Phase.generate, Phase.shrink] if shrink else [Phase.generate]
    horizon = run(DefaultChooser()).steps + 1

    @hypothesis_seed(seed)
    @settings(
        max_examples=max_examples,
        database=None,
        deadline=None,
        phases=phases,
        verbosity=Verbosity.quiet,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        print_blob=False,
    )
    @given(switch_points(horizon, max_switches))
    def probe(switches: dict[int, int]) -> None:
        nonlocal examples, first_at, first_time, failing
        result = run(SwitchPointChooser(switches))
        examples += 1
        if is_failure(result):
            if first_at is None:
                first_at = examples
                first_time = time.perf_counter() - started
            failing = result
            raise _Found()

    with contextlib.suppress(_Found):
        probe()
    return SearchResult(
        failing=failing,
        examples=examples,
        first_failure_at=first_at,
        elapsed=time.perf_counter() - started,
        time_to_first_failure=first_time,
    )
