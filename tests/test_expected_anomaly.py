"""Scenarios pin what they catch: each known bug must show the anomaly its class stands for.

A known-bug scenario names an anomaly kind (``[expect] anomaly``); a search
that catches the engine only by other anomalies ends ``other anomaly`` and
the cell is not as expected.  The verdict rule is checked against brute force
(every schedule of small worlds, explored exhaustively), the corpus against
its own anomalies and against another class's.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance import AnomalyKind, Verdict, check, fatal, replay
from conformance._campaign import search_engine, search_world
from conformance._cli import main
from conformance._engines import Expectation, load_engine
from conformance._matrix import default_cells, run_cell
from conformance._scenario_files import (
    Scenario,
    ScenarioError,
    builtin_scenarios,
    load_scenario_file,
)
from simulator import RunResult, Strategy

SCENARIOS = [load_scenario_file(path) for path in builtin_scenarios()]
KNOWN_BUGS = [scenario for scenario in SCENARIOS if scenario.reproduces]

#: Another class's anomaly, one the engine of each class never shows (see docs/scenarios.md).
MISLABEL = {
    AnomalyKind.REFRESH_TOKEN_REUSE: AnomalyKind.LOST_UPDATE,
    AnomalyKind.LOST_UPDATE: AnomalyKind.TORN_READ,
    AnomalyKind.TORN_READ: AnomalyKind.REFRESH_TOKEN_REUSE,
    AnomalyKind.TOKEN_LOST: AnomalyKind.TORN_READ,
    AnomalyKind.AGENT_STRANDED: AnomalyKind.REFRESH_TOKEN_REUSE,
    AnomalyKind.AVOIDABLE_LOSS: AnomalyKind.TORN_READ,
}
#: Searches that take ~10 s each when the anomaly is never found (5 agents; a Windows world).
SLOW = {"headline", "no-lock-on-windows"}


def _ids(scenario: Scenario) -> str:
    return scenario.name


def _param(scenario: Scenario) -> object:
    marks = [pytest.mark.slow] if scenario.name in SLOW else []
    return pytest.param(scenario, id=scenario.name, marks=marks)


def test_every_known_bug_scenario_names_its_anomaly() -> None:
    assert KNOWN_BUGS
    for scenario in SCENARIOS:
        assert (scenario.anomaly is not None) is scenario.reproduces, scenario.name
    pinned = {scenario.race_class: scenario.anomaly for scenario in KNOWN_BUGS}
    assert pinned[7] is AnomalyKind.LOST_UPDATE  # the class is named for it
    assert pinned[8] is AnomalyKind.TORN_READ


@pytest.mark.parametrize("scenario", KNOWN_BUGS, ids=_ids)
def test_each_corpus_scenario_reproduces_its_own_anomaly(scenario: Scenario) -> None:
    """Through ``tokenrace run``'s cells: the known-bug cell searches for its class's anomaly."""
    (cell,) = default_cells(scenarios=[scenario.name], engines=[scenario.engine])
    assert cell.expectation is Expectation.BUGGY
    assert cell.anomaly is scenario.anomaly
    result = run_cell(cell)
    assert result.verdict is Verdict.REPRODUCED, result.bound
    assert result.passed
    assert result.headline is not None
    assert result.headline.kind is scenario.anomaly
    assert result.schedule is not None
    replayed = replay(scenario.world, load_engine(scenario.engine), result.schedule)
    assert scenario.anomaly in {anomaly.kind for anomaly in fatal(check(replayed))}


@pytest.mark.parametrize("scenario", [_param(s) for s in KNOWN_BUGS])
def test_a_corpus_engine_caught_only_by_another_anomaly_is_not_as_expected(
    scenario: Scenario,
) -> None:
    """Each scenario mislabelled with another class's anomaly: the cell must fail."""
    assert scenario.anomaly is not None
    wrong = MISLABEL[scenario.anomaly]
    result = search_engine(
        scenario.name,
        scenario.world,
        load_engine(scenario.engine),
        max_examples=scenario.examples,
        seed=scenario.seed,
        strategy=scenario.strategy,
        anomaly=wrong,
    )
    assert result.verdict is Verdict.OTHER_ANOMALY, result.verdict
    assert not result.passed
    seen = {anomaly.kind for anomaly in fatal(result.anomalies)}
    assert seen
    assert wrong not in seen
    assert f"names {wrong.value}" in result.expectation_note()
    assert result.schedule is not None  # the run that caught it replays
    replayed = replay(scenario.world, load_engine(scenario.engine), result.schedule)
    assert check(replayed) == result.anomalies


# the verdict rule against brute force ------------------------------------------

#: Enough for the largest of these worlds (5,418 schedules: a lock that locks nothing).
BRUTE_FORCE_BUDGET = 8000

#: Small worlds exhaustive search covers completely: (scenario, engine).  Those of
#: ``incompatible-locks`` and ``nfs-nolock`` whose locks exclude nothing take 5,418
#: schedules (about 30 s each on a busy machine), so they are the slow test's.
WORLDS = [
    (scenario.name, engine)
    for scenario in SCENARIOS
    if scenario.name in ("incompatible-locks", "nfs-nolock", "copy-to-main-after-unlock")
    for engine in (scenario.engine, "reference")
]
LOCKLESS = {("incompatible-locks", "incompatible-locks"), ("nfs-nolock", "trusts-network-flock")}
LOCKLESS |= {("nfs-nolock", "reference")}


@functools.cache
def _every_fatal_kind(name: str, engine: str) -> frozenset[AnomalyKind]:
    """Brute force: the fatal anomaly kinds of every schedule of the world."""
    scenario = next(s for s in SCENARIOS if s.name == name)
    seen: set[AnomalyKind] = set()

    def collect(result: RunResult) -> bool:
        seen.update(anomaly.kind for anomaly in fatal(check(result)))
        return False  # never stop: visit every schedule

    search = search_world(
        scenario.world,
        load_engine(engine),
        Strategy.EXHAUSTIVE,
        max_examples=BRUTE_FORCE_BUDGET,
        seed=0,
        is_failure=collect,
    )
    assert search.complete, search.bound
    return frozenset(seen)


def _agrees_with_brute_force(world: tuple[str, str], kind: AnomalyKind) -> None:
    name, engine = world
    scenario = next(s for s in SCENARIOS if s.name == name)
    every = _every_fatal_kind(name, engine)
    result = search_engine(
        name,
        scenario.world,
        load_engine(engine),
        max_examples=BRUTE_FORCE_BUDGET,
        seed=0,
        strategy=Strategy.EXHAUSTIVE,
        anomaly=kind,
    )
    if kind in every:
        assert result.verdict is Verdict.REPRODUCED
        assert kind in {anomaly.kind for anomaly in fatal(result.anomalies)}
    elif every:
        assert result.verdict is Verdict.OTHER_ANOMALY
        assert {anomaly.kind for anomaly in fatal(result.anomalies)} <= every
    else:
        assert result.verdict is Verdict.RULED_OUT


@settings(max_examples=24, deadline=None, derandomize=True)
@given(
    world=st.sampled_from([w for w in WORLDS if w not in LOCKLESS]),
    kind=st.sampled_from(list(AnomalyKind)),
)
def test_verdict_for_an_expected_anomaly_agrees_with_brute_force(
    world: tuple[str, str], kind: AnomalyKind
) -> None:
    _agrees_with_brute_force(world, kind)


@pytest.mark.slow
@settings(max_examples=12, deadline=None, derandomize=True)
@given(world=st.sampled_from(sorted(LOCKLESS)), kind=st.sampled_from(list(AnomalyKind)))
def test_verdict_agrees_with_brute_force_where_the_lock_excludes_nothing(
    world: tuple[str, str], kind: AnomalyKind
) -> None:
    _agrees_with_brute_force(world, kind)


# the scenario file field -------------------------------------------------------


def _scenario_file(tmp_path: Path, expect: str) -> Path:
    path = tmp_path / "mine.toml"
    path.write_text(
        '[scenario]\nname = "mine"\n[world]\nagents = ["a", "b"]\n[expect]\n' + expect,
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("expect", "message"),
    [
        (
            'engine = "no-lock"\nreproduces = true\nanomaly = "lost-updates"\n',
            "[expect] anomaly: unknown value 'lost-updates'; expected one of refresh-token-reuse",
        ),
        ('engine = "no-lock"\nreproduces = true\nanomaly = 3\n', "[expect] anomaly: must be a str"),
        (
            'engine = "reference"\nreproduces = false\nanomaly = "lost-update"\n',
            "[expect] anomaly: only a scenario with reproduces = true names one",
        ),
    ],
)
def test_a_bad_anomaly_field_is_one_clear_line(tmp_path: Path, expect: str, message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        load_scenario_file(_scenario_file(tmp_path, expect))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_bad_anomaly_field_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _scenario_file(tmp_path, 'engine = "no-lock"\nreproduces = true\nanomaly = "boom"\n')
    assert main(["reproduce", str(path), "--report-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown value 'boom'" in err
    assert "Traceback" not in err


def test_a_mislabelled_report_says_not_as_expected_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``tokenrace reproduce`` of a scenario naming the wrong anomaly: exit 1, and why."""
    shipped = next(p for p in builtin_scenarios() if "copy-to-main-after-unlock" in p.name)
    text = shipped.read_text(encoding="utf-8")
    text = text.replace('anomaly = "refresh-token-reuse"', 'anomaly = "lost-update"')
    text = text.replace('reference = "clean"', 'reference = "unclaimed"')
    path = tmp_path / "mislabelled.toml"
    path.write_text(text, encoding="utf-8")
    reports = tmp_path / "report"
    assert main(["reproduce", str(path), "--report-dir", str(reports)]) == 1
    out = re.sub(r"\s+", " ", capsys.readouterr().out)
    assert "OTHER ANOMALY" in out
    assert "not as expected: the scenario names lost-update" in out
    results = json.loads((reports / "results.json").read_text(encoding="utf-8"))
    (cell,) = results["cells"]
    assert cell["verdict"] == "other anomaly"
    assert cell["expected_anomaly"] == "lost-update"
    assert cell["passed"] is False
    assert cell["replay"] is not None
    junit = (reports / "junit.xml").read_text(encoding="utf-8")
    assert 'type="other-anomaly"' in junit
    summary = (reports / "summary.md").read_text(encoding="utf-8")
    assert "## Not as expected" in summary
    assert "not as expected: the scenario names lost-update" in summary
    page = (reports / "index.html").read_text(encoding="utf-8")
    assert 'class="v v-other-anomaly unexpected"' in page
    assert len(re.findall(r"<svg ", page)) == 1  # its run is drawn like a reproduction
