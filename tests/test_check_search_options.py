"""``tokenrace check --engine`` searches as ``run`` does: strategy, seed and examples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conformance import load_engine, search_engine
from conformance._cli import main
from conformance._scenario_files import builtin_scenarios, load_scenario_file
from simulator import Strategy

NO_LOCK_WORLD = next(path for path in builtin_scenarios() if "no-cross-process-lock" in path.name)


def _check(tmp_path: Path, engine: str, *options: str) -> tuple[int, dict[str, Any]]:
    reports = tmp_path / "report"
    argv = ["check", "--engine", engine, "--scenario", str(NO_LOCK_WORLD), *options]
    code = main([*argv, "--report-dir", str(reports)])
    (cell,) = json.loads((reports / "results.json").read_text(encoding="utf-8"))["cells"]
    return code, cell


@pytest.mark.parametrize("strategy", [Strategy.RANDOM, Strategy.PCT, Strategy.HYPOTHESIS])
def test_check_searches_with_the_strategy_and_seed_given(
    strategy: Strategy, tmp_path: Path
) -> None:
    """The schedule check reports is the one that strategy and seed find, seed by seed."""
    scenario = load_scenario_file(NO_LOCK_WORLD)
    found = set()
    for seed in range(3):
        options = ("--strategy", strategy.value, "--seed", str(seed), "--examples", "40")
        code, cell = _check(tmp_path / str(seed), "no-lock", *options)
        assert code == 1  # no-lock is held to the reference's promise, and breaks it
        assert cell["strategy"] == strategy.value
        direct = search_engine(
            scenario.name,
            scenario.world,
            load_engine("no-lock"),
            max_examples=40,
            seed=seed,
            strategy=strategy,
        )
        assert cell["schedule"] == str(direct.schedule)
        assert cell["schedules_tried"] == direct.examples
        found.add((cell["schedule"], cell["schedules_tried"]))
    assert len(found) > 1  # the seed changed the search


def test_check_keeps_each_scenarios_own_search_by_default(tmp_path: Path) -> None:
    code, cell = _check(tmp_path, "reference")
    assert code == 0
    assert cell["strategy"] == load_scenario_file(NO_LOCK_WORLD).strategy.value == "exhaustive"
    assert cell["verdict"] == "ruled out"


def test_check_stops_at_the_examples_given(tmp_path: Path) -> None:
    code, cell = _check(tmp_path, "reference", "--strategy", "exhaustive", "--examples", "7")
    assert code == 0
    assert cell["schedules_tried"] <= 7  # the budget counts pruned prefixes too
    assert "stopped after" in cell["bound"]
    assert cell["verdict"] == "not found"  # 7 runs do not cover the world: not ruled out


def test_check_command_refuses_a_strategy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--command", "true", "--strategy", "random"]) == 2
    err = capsys.readouterr().err
    assert "--strategy applies to --engine" in err
    assert err.count("\n") == 1
