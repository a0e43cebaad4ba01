"""The pytest plugin: ``pytest --tokenrace-engine module:attribute`` gates a project's CI.

Each shipped scenario that the reference engine passes becomes one ordinary
test item, ``tokenrace[<scenario>]``, which searches the engine's schedules in
that world and fails with the anomaly and the line that replays it.  Items run
under pytest-xdist like any other test.  Without the option the plugin adds
nothing.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterator
from typing import Any

import pytest

from ._campaign import EngineResult, replay_command, search_engine
from ._engines import Expectation, load_engine
from ._errors import ConformanceError
from ._scenario_files import ReferenceClaim, Scenario, builtin_scenarios, load_scenario_file


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tokenrace", "refresh-token race conformance")
    group.addoption(
        "--tokenrace-engine",
        action="append",
        default=[],
        metavar="MODULE:ATTRIBUTE",
        help="check this refresh engine against every scenario the reference passes",
    )
    group.addoption(
        "--tokenrace-examples",
        type=int,
        default=None,
        help="schedules per scenario (default: each scenario's own budget)",
    )
    group.addoption(
        "--tokenrace-scenario",
        action="append",
        default=[],
        metavar="NAME",
        help="only these scenarios (by name; default: all the reference passes)",
    )


class TokenraceFailure(Exception):
    """An engine showed a fatal anomaly in a scenario."""

    def __init__(self, result: EngineResult) -> None:
        super().__init__(result.engine)
        self.result = result


class ScenarioItem(pytest.Item):
    """One (engine, scenario) cell as a test."""

    def __init__(self, *, engine: str, scenario: Scenario, examples: int | None, **kw: Any):
        super().__init__(**kw)
        self.engine = engine
        self.scenario = scenario
        self.examples = examples

    def runtest(self) -> None:
        entry = dataclasses.replace(load_engine(self.engine), expectation=Expectation.CLEAN)
        scenario = self.scenario
        result = search_engine(
            scenario.name,  # shipped: its replay line names it, not a path into site-packages
            scenario.world,
            entry,
            max_examples=self.examples or scenario.examples,
            seed=scenario.seed,
            strategy=scenario.strategy,
            hang_after=scenario.hang_after,
        )
        if not result.passed:
            raise TokenraceFailure(result)

    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: Any = None,
    ) -> str:
        if not isinstance(excinfo.value, TokenraceFailure):
            return str(super().repr_failure(excinfo))
        result = excinfo.value.result
        lines = [f"{result.engine} in {self.scenario.name} ({self.scenario.title}):"]
        lines += [f"  {anomaly}" for anomaly in result.anomalies]
        lines += [f"  {result.hang}"] if result.hang is not None else []
        if result.schedule is not None:
            lines.append("minimal schedule, to replay:")
            lines.append("  " + replay_command(result.scenario, result.engine, result.schedule))
        return "\n".join(lines)

    def reportinfo(self) -> tuple[str, int | None, str]:
        return str(self.scenario.path), None, f"tokenrace[{self.scenario.name}]"


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    engines: list[str] = config.getoption("tokenrace_engine")
    if not engines:
        return
    wanted: list[str] = config.getoption("tokenrace_scenario")
    examples: int | None = config.getoption("tokenrace_examples")
    if examples is not None and examples < 1:
        raise pytest.UsageError(f"--tokenrace-examples {examples}: must be at least 1")
    _check_wanted(wanted)
    for engine in engines:
        try:
            load_engine(engine)
        except ConformanceError as exc:
            raise pytest.UsageError(f"--tokenrace-engine {engine}: {exc}") from None
        for scenario in _claimed(wanted):
            items.append(
                ScenarioItem.from_parent(
                    session,
                    name=f"tokenrace[{engine}-{scenario.name}]",
                    engine=engine,
                    scenario=scenario,
                    examples=examples,
                )
            )


def _claimed(wanted: list[str]) -> Iterator[Scenario]:
    for path in builtin_scenarios():
        scenario = load_scenario_file(path)
        if scenario.reference is not ReferenceClaim.CLEAN:
            continue
        if wanted and scenario.name not in wanted:
            continue
        yield scenario


def _check_wanted(wanted: list[str]) -> None:
    """Every ``--tokenrace-scenario`` names a shipped scenario the reference passes."""
    claimed = {
        scenario.name: scenario.reference is ReferenceClaim.CLEAN
        for scenario in map(load_scenario_file, builtin_scenarios())
    }
    for name in wanted:
        if name not in claimed:
            close = difflib.get_close_matches(name, list(claimed), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"one of {', '.join(claimed)}"
            raise pytest.UsageError(f"--tokenrace-scenario {name}: no such scenario; {hint}")
        if not claimed[name]:
            raise pytest.UsageError(
                f"--tokenrace-scenario {name}: the reference engine does not claim it, "
                "so no engine is held to it"
            )
