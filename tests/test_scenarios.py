"""Shipped scenario files: each known-bug engine is caught, the reference passes what it claims."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance import BUILTIN_ENGINES, EngineResult, Verdict, check, fatal, replay, search_engine
from conformance._cli import main
from conformance._scenario_files import (
    ReferenceClaim,
    ScenarioError,
    builtin_scenarios,
    load_scenario_file,
)

SCENARIOS = builtin_scenarios()


def _search(path: Path, engine: str, budget: int | None = None) -> EngineResult:
    """Search ``engine`` in the scenario file's world with the file's own budget, or at
    most ``budget`` schedules."""
    scenario = load_scenario_file(path)
    return search_engine(
        scenario.name,
        scenario.world,
        BUILTIN_ENGINES[engine],
        max_examples=min(budget or scenario.examples, scenario.examples),
        seed=scenario.seed,
        strategy=scenario.strategy,
    )


def test_every_corpus_engine_has_a_scenario() -> None:
    covered = {load_scenario_file(path).engine for path in SCENARIOS}
    corpus = {name for name in BUILTIN_ENGINES if name not in ("reference", "broker")}
    assert corpus <= covered
    assert SCENARIOS[0].name.startswith("01-headline")


REPORTS = [path for path in SCENARIOS if load_scenario_file(path).reproduces]


def test_clean_designs_are_only_the_broker() -> None:
    assert [path.stem for path in SCENARIOS if path not in REPORTS] == ["15-broker-process"]


@pytest.mark.parametrize("path", REPORTS, ids=lambda path: path.stem)
def test_scenario_catches_its_engine(path: Path) -> None:
    scenario = load_scenario_file(path)
    entry = BUILTIN_ENGINES[scenario.engine]
    result = _search(path, scenario.engine)
    assert result.verdict is Verdict.REPRODUCED, result.bound
    assert fatal(result.anomalies)
    assert result.schedule is not None
    replayed = replay(scenario.world, entry, result.schedule)  # the minimal schedule replays
    assert check(replayed) == result.anomalies


CLAIMED = [p for p in SCENARIOS if load_scenario_file(p).reference is ReferenceClaim.CLEAN]
UNCLAIMED = [p for p in SCENARIOS if p not in CLAIMED]


def test_the_reference_claims_all_but_the_documented_exceptions() -> None:
    assert [path.stem for path in UNCLAIMED] == ["11-nfs-nolock"]


@pytest.mark.parametrize("path", UNCLAIMED, ids=lambda path: path.stem)
def test_unclaimed_worlds_really_break_the_reference(path: Path) -> None:
    """What the reference does not promise, it says, and the suite shows why."""
    result = _search(path, "reference")
    assert result.verdict is Verdict.REPRODUCED


#: Schedules per claimed scenario in the default selection; ``-m slow`` runs each file's own
QUICK = 300
BUDGETS = [pytest.param(QUICK, id="ci"), pytest.param(None, marks=pytest.mark.slow, id="full")]


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("path", CLAIMED, ids=lambda path: path.stem)
def test_reference_passes_what_it_claims(path: Path, budget: int | None) -> None:
    result = _search(path, "reference", budget)
    assert result.verdict is not Verdict.REPRODUCED, [str(a) for a in result.anomalies]


def test_check_fails_a_corpus_engine_and_names_its_anomaly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [str(SCENARIOS[2]), str(SCENARIOS[1])]
    argv = ["check", "--engine", "no-lock", "--scenario", files[0], "--scenario", files[1]]
    # one job: a Windows host under Wine cannot run a process pool (.ci/windows-tests)
    assert main([*argv, "--jobs", "1", "--report-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "refresh-token-reuse" in out


def test_check_passes_the_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(SCENARIOS[2]), str(SCENARIOS[1])]
    argv = ["check", "--engine", "reference", "--scenario", files[0], "--scenario", files[1]]
    assert main([*argv, "--jobs", "1", "--report-dir", str(tmp_path)]) == 0
    assert "ruled out" in capsys.readouterr().out


def test_reproduce_exits_0_when_the_report_is_reproduced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["reproduce", str(SCENARIOS[0]), "--examples", "30", "--report-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "REPRODUCED" in out
    assert "tokenrace replay --scenario" in out
    assert (tmp_path / "results.json").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[scenario\nname = 1", "not valid TOML"),
        ('[scenario]\nname = "x"\n', "[world] agents: is required"),
        (
            '[scenario]\nname = "x"\n[world]\nagents = ["a"]\nlayout = "nope"',
            "unknown value 'nope'",
        ),
        ('[scenario]\nname = "x"\n[world]\nagents = ["a"]\npolicy = "nope"', "[world] policy"),
        ('[scenario]\nname = "x"\n[world]\nagents = ["a"]\nfaults = ["boom"]', "unknown fault"),
        ('[scenario]\nname = "x"\n[world]\nagents = []', "non-empty list"),
        ('[scenario]\nname = "x"\n[wrld]\n', "unknown table"),
        (
            '[scenario]\nname = "x"\n[world]\nagents = ["a"]\npolicy_overrides = {nope = 1}',
            "unknown policy field 'nope'",
        ),
    ],
)
def test_bad_scenario_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError, match="bad.toml") as caught:
        load_scenario_file(path)
    assert message in str(caught.value)


def test_bad_scenario_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[scenario\n", encoding="utf-8")
    assert main(["reproduce", str(path)]) == 2
    err = capsys.readouterr().err
    assert "not valid TOML" in err
    assert "line 1" in err


def test_the_broker_design_comes_out_clean() -> None:
    path = next(path for path in SCENARIOS if path.name == "15-broker-process.toml")
    scenario = load_scenario_file(path)
    result = _search(path, "broker")
    assert result.verdict is Verdict.NOT_FOUND
    assert result.examples == scenario.examples
