"""The indexed race scan adds exactly the backtrack points the backward scan adds: for
each agent's next step, one at each other agent's latest dependent step unordered before it.

The backward scan below is the explorer's scan before it was indexed
(quadratic in the length of a run); it is kept here as the oracle.  Hypothesis
generates runs of a few agents over a few objects, with reads, writes, steps
that touch nothing shared, waiting agents, faults and steps that touch
everything (kills), and at every new state compares the two scans.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from simulator._footprint import EVERYTHING, Footprint, dependent
from simulator._races import Trace, VectorClock

AGENTS = ("atlas", "nova", "orion", "vega")  # four: two can lead to a third
OBJECTS = ("path:/s", "ino:1", "lock:1", "server")


@dataclass(frozen=True, slots=True)
class Recorded:
    agent: str
    footprint: Footprint
    clock: VectorClock


def reference_backtracks(
    steps: Sequence[Recorded],
    clock: Callable[[str], VectorClock],
    footprints: Mapping[str, Footprint],
    enabled: Callable[[int], Sequence[str]],
) -> dict[int, set[str]]:
    """The backward scan: for each agent's next step, walk the run back to each other
    agent's latest dependent step; where that step is not ordered before it, a race."""
    found: dict[int, set[str]] = {}
    for option, footprint in footprints.items():
        agent = option.partition("!")[0]  # a fault races as a step of the agent it strikes
        seen = clock(agent)
        scanned: set[str] = set()  # the other agents whose latest dependent step is seen
        for index in range(len(steps) - 1, -1, -1):
            step = steps[index]
            if step.agent == agent or step.agent in scanned:
                continue
            if not dependent(step.footprint, footprint):
                continue
            scanned.add(step.agent)
            if seen.get(step.agent, -1) >= index:
                continue  # it happens before the agent's next step: ordered, no race
            there = enabled(index)
            chosen: set[str] = set(there)
            if agent in there:
                chosen = {agent}
            else:
                for later in range(index + 1, len(steps)):
                    other = steps[later].agent
                    if other in there and seen.get(other, -1) >= later:
                        chosen = {other}
                        break
            found.setdefault(index, set()).update(chosen)
    return found


footprints = st.one_of(
    st.just(EVERYTHING),
    st.frozensets(st.tuples(st.sampled_from(OBJECTS), st.booleans()), max_size=3),
)


@st.composite
def states(draw: st.DrawFn) -> tuple[dict[str, Footprint], list[str], str]:
    """One state: every present agent's next step, who can run, and the option taken."""
    present = draw(st.lists(st.sampled_from(AGENTS), min_size=1, unique=True))
    enabled = draw(st.lists(st.sampled_from(present), min_size=1, unique=True))
    nexts = {agent: draw(footprints) for agent in present}
    for agent in enabled:
        if draw(st.booleans()):
            nexts[f"{agent}!kill"] = EVERYTHING
    taken = draw(
        st.sampled_from([option for option in nexts if option.partition("!")[0] in enabled])
    )
    return nexts, enabled, taken


def _writes(obj: str) -> Footprint:
    return frozenset({(obj, True)})


# rare at random: orion waits while atlas writes the store; nova then vega run, orion reads
# what both wrote, and its next write races with atlas's; the first of nova and vega to
# run after the race leads to orion's step, so the backtrack point tries nova
LEADS_TO_THE_RACER = [
    (
        {
            "atlas": _writes("path:/s"),
            "nova": _writes("ino:1"),
            "vega": _writes("lock:1"),
            "orion": _writes("path:/s"),
        },
        ["atlas", "nova", "vega"],
        "atlas",
    ),
    ({"nova": _writes("ino:1"), "vega": _writes("lock:1")}, ["nova", "vega"], "nova"),
    ({"vega": _writes("lock:1")}, ["vega"], "vega"),
    ({"orion": frozenset({("ino:1", False), ("lock:1", False)})}, ["orion"], "orion"),
    ({"orion": _writes("path:/s")}, ["orion"], "orion"),
]


@settings(max_examples=400, deadline=None)
@given(run=st.lists(states(), max_size=30))
@example(run=LEADS_TO_THE_RACER)
def test_indexed_scan_adds_exactly_the_backward_scans_backtracks(
    run: list[tuple[dict[str, Footprint], list[str], str]],
) -> None:
    trace = Trace()
    steps: list[Recorded] = []
    enabled_at: list[list[str]] = []
    for nexts, enabled, taken in run:
        enabled_at.append(enabled)
        expected = reference_backtracks(steps, trace.clock, nexts, enabled_at.__getitem__)
        assert trace.backtracks(nexts, enabled_at.__getitem__) == expected
        agent = taken.partition("!")[0]
        trace.record(agent, nexts[taken])
        steps.append(Recorded(agent, nexts[taken], trace.clock(agent)))


def test_the_benchmark_runs_and_prints_a_row_per_loop_and_length(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``benchmarks/bench_race_scan.py`` is not a test; this keeps it from rotting."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    bench_race_scan = importlib.import_module("bench_race_scan")
    assert bench_race_scan.main(["--steps", "80", "120", "--repeat", "1"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [row.split()[:2] for row in rows] == [
        ["stat", "80"],
        ["stat", "120"],
        ["poll", "80"],
        ["poll", "120"],
    ]
    for row in rows:
        steps = int(row.split()[2])
        assert 60 <= steps <= 120  # the loop count is sized to the asked length
