"""No false alarms: correct engines that go about it unusually come out clean.

The battery (``unusual_engines``) runs in every scenario the reference claims, under
each scenario's own search strategy, and under a kill or a crash at every step of a
two-agent world; nothing fatal may show.  The corpus tests (``test_scenarios``) show
the known-bug engines are still caught by the same checker.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from unusual_engines import UNUSUAL_ENGINES, ChunkedReads

from conformance import BATTERY, EngineEntry, Expectation, Severity, check, fatal, search_engine
from conformance._cli import main
from conformance._scenario_files import ReferenceClaim, builtin_scenarios, load_scenario_file
from fake_oauth_server import Policy
from refresh_engine import ReadData, ReferenceEngine
from simulator import (
    AgentSpec,
    DefaultChooser,
    EventKind,
    FaultKind,
    ReplayChooser,
    Schedule,
    StepView,
    StoreLayout,
    WorldSpec,
    default_choice,
    simulate,
)

CLAIMED = [
    path
    for path in builtin_scenarios()
    if load_scenario_file(path).reference is ReferenceClaim.CLEAN
]
#: Schedules per scenario in the default selection; the slow variant uses each file's own.
QUICK = 60


def _search_clean(engine: str, path: Path, budget: int | None) -> None:
    scenario = load_scenario_file(path)
    entry = EngineEntry(engine, UNUSUAL_ENGINES[engine], Expectation.CLEAN, engine)
    result = search_engine(
        scenario.name,
        scenario.world,
        entry,
        max_examples=min(budget or scenario.examples, scenario.examples),
        seed=scenario.seed,
        strategy=scenario.strategy,
    )
    assert fatal(result.anomalies) == [], [str(anomaly) for anomaly in result.anomalies]
    assert result.passed


@pytest.mark.parametrize("path", CLAIMED, ids=lambda path: path.stem)
@pytest.mark.parametrize("engine", sorted(UNUSUAL_ENGINES))
def test_unusual_engine_is_clean_in_every_claimed_scenario(engine: str, path: Path) -> None:
    _search_clean(engine, path, QUICK)


@pytest.mark.slow
@pytest.mark.parametrize("path", CLAIMED, ids=lambda path: path.stem)
@pytest.mark.parametrize("engine", sorted(UNUSUAL_ENGINES))
def test_unusual_engine_is_clean_with_each_scenarios_own_budget(engine: str, path: Path) -> None:
    _search_clean(engine, path, None)


def test_the_claimed_scenarios_are_all_but_the_documented_exception() -> None:
    assert len(CLAIMED) == len(builtin_scenarios()) - 1
    assert "11-nfs-nolock" not in {path.stem for path in CLAIMED}


def _one_agent() -> WorldSpec:
    return WorldSpec(agents=(AgentSpec("atlas", (0.0,)),), policy=Policy.preset("openai"))


def test_chunked_reads_are_judged_as_one_parse_not_per_call() -> None:
    """Each 64-byte chunk alone is no JSON (the old per-call rule called six of them torn);
    what the agent parsed, the chunks together, is."""
    result = simulate(_one_agent(), ChunkedReads(), DefaultChooser())
    stores = set(result.stores)
    chunks = [
        event.outcome.data
        for event in result.events
        if event.kind is EventKind.EFFECT
        and event.path in stores
        and isinstance(event.outcome, ReadData)
    ]
    unparseable = 0
    for chunk in chunks:
        try:
            json.loads(chunk)
        except ValueError:
            unparseable += 1
    assert unparseable >= 6
    assert check(result) == ()


def test_an_empty_read_of_a_truncated_store_is_still_torn() -> None:
    """The rule still catches class 8: the in-place writer's reader sees an empty file."""
    from conformance._corpus import InPlaceRewrite

    scenario = load_scenario_file(next(p for p in CLAIMED if p.stem == "08-in-place-torn-read"))
    entry = EngineEntry("in-place", InPlaceRewrite, Expectation.BUGGY, "")
    result = search_engine(
        scenario.name, scenario.world, entry, max_examples=400, seed=scenario.seed
    )
    assert any(anomaly.kind.value == "torn-read" for anomaly in fatal(result.anomalies))


class StrikeAt:
    """The default order, with ``fault`` striking whoever runs at ``step``."""

    def __init__(self, step: int, fault: FaultKind) -> None:
        self.step = step
        self.fault = fault

    def choose(self, view: StepView) -> str:
        pick = default_choice(view.runnable, view.last)
        if view.step == self.step and self.fault in view.faults(pick):
            return f"{pick}!{self.fault.value}"
        return pick


def _fault_world(layout: StoreLayout = StoreLayout.SHARED) -> WorldSpec:
    preset = Policy.preset("openai")
    turns = (0.0, preset.access_token_lifetime)
    return WorldSpec(
        agents=(AgentSpec("atlas", turns), AgentSpec("nova", turns)),
        policy=preset,
        layout=layout,
        faults=frozenset({FaultKind.KILL, FaultKind.CRASH}),
        max_faults=1,
    )


ENGINES: dict[str, Callable[[], ReferenceEngine]] = {
    "reference": ReferenceEngine,
    **UNUSUAL_ENGINES,
}


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_an_io_error_at_any_step_costs_a_correct_engine_nothing_fatal(engine: str) -> None:
    """A failed write, fsync, replace, create or lock that the engine reports ends its turn
    with an ``io-fault`` warning; a token it kept from the store is an unavoidable loss."""
    spec = dataclasses.replace(_fault_world(), faults=frozenset({FaultKind.IO_ERROR}))
    steps = simulate(spec, ENGINES[engine](), DefaultChooser()).steps
    struck = excused = 0
    for step in range(steps):
        run = simulate(spec, ENGINES[engine](), StrikeAt(step, FaultKind.IO_ERROR))
        anomalies = check(run)
        assert fatal(anomalies) == [], (step, [str(a) for a in anomalies])
        struck += any(event.fault is FaultKind.IO_ERROR for event in run.events)
        excused += any("(unavoidable: a ioerror" in anomaly.message for anomaly in anomalies)
    assert struck >= 6  # the lock, the temp file, its write, fsync and replace can fail
    assert excused > 0  # some failure does keep the new token from the store


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_a_kill_or_a_crash_at_any_step_costs_a_correct_engine_nothing_fatal(engine: str) -> None:
    """Where a fault loses a rotated token nothing can be done: warnings, never blame."""
    spec = _fault_world()
    steps = simulate(spec, ENGINES[engine](), DefaultChooser()).steps
    excused = 0
    for step in range(steps):
        for fault in (FaultKind.KILL, FaultKind.CRASH):
            anomalies = check(simulate(spec, ENGINES[engine](), StrikeAt(step, fault)))
            assert fatal(anomalies) == [], (step, fault, [str(a) for a in anomalies])
            excused += any("(unavoidable: " in anomaly.message for anomaly in anomalies)
    assert excused > 0  # some step does lose the token: the rule was exercised


def test_crash_is_judged_exactly_like_kill() -> None:
    """``atlas*N atlas!kill`` and ``atlas*N atlas!crash`` give the same verdicts at every N
    (the old checker decided "killed" from the note's text and blamed the engine)."""
    spec = _fault_world(StoreLayout.MIRRORED)
    spec = WorldSpec(
        agents=tuple(AgentSpec(a.name, (spec.policy.access_token_lifetime,)) for a in spec.agents),
        policy=spec.policy,
        layout=spec.layout,
        faults=spec.faults,
        max_faults=1,
    )
    plain = simulate(spec, ReferenceEngine(), DefaultChooser())
    request = next(e.step for e in plain.events if e.kind is EventKind.REQUEST)
    warned = []
    for count in range(1, request + 6):  # atlas runs alone up to its request and beyond
        verdicts = []
        for fault in ("kill", "crash"):
            schedule = Schedule.parse(f"atlas*{count} atlas!{fault}")
            result = simulate(spec, ReferenceEngine(), ReplayChooser(schedule))
            verdicts.append([(a.kind, a.severity) for a in check(result)])
        assert verdicts[0] == verdicts[1], count
        assert all(severity is Severity.WARNING for _, severity in verdicts[1])
        if verdicts[1]:
            warned.append(count)
    assert request + 1 in warned  # killed holding the answer: lost, and excused


def test_check_cli_passes_the_chunked_reads_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``tokenrace check --engine unusual_engines:ChunkedReads``: clean in every scenario
    it is checked in (the default selection caps each search; the full budgets are the
    slow test above and the CLI without ``--examples``)."""
    argv = ["check", "--engine", "unusual_engines:ChunkedReads", "--examples", str(QUICK)]
    assert main([*argv, "--report-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "reproduced" not in out
    assert "tokenrace check: passed" in out
    report = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    checked = {cell["scenario"] for cell in report["cells"]}
    assert {load_scenario_file(path).name for path in CLAIMED} <= checked
    assert {entry.label for entry in BATTERY} <= checked
    assert len(report["cells"]) == len(CLAIMED) + len(BATTERY)
    assert all(
        anomaly["severity"] != "fatal" for cell in report["cells"] for anomaly in cell["anomalies"]
    )
