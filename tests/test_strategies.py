"""Search strategies: each finds the known bugs, and every failing schedule replays exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance import BUILTIN_ENGINES, Verdict, check, fatal, load_scenario, search_engine
from refresh_engine import (
    AgentContext,
    Credential,
    Flow,
    OpenFlags,
    ReferenceEngine,
    credential_from,
    ops,
    parse_store,
    render_store,
    with_credential,
)
from simulator import (
    AgentSpec,
    OsModel,
    ReplayChooser,
    RunResult,
    StoreLayout,
    Strategy,
    WorldSpec,
    search_exhaustive,
    simulate,
)

SAMPLED = [Strategy.HYPOTHESIS, Strategy.RANDOM, Strategy.PCT, Strategy.EXHAUSTIVE]


@pytest.mark.parametrize("strategy", SAMPLED)
@pytest.mark.parametrize("engine", ["mirrored", "no-lock"])
def test_every_strategy_finds_the_known_bugs(strategy: Strategy, engine: str) -> None:
    spec = load_scenario("small")
    entry = BUILTIN_ENGINES[engine]
    result = search_engine("small", spec, entry, max_examples=500, seed=3, strategy=strategy)
    assert result.verdict is Verdict.REPRODUCED, result.bound
    assert result.schedule is not None
    replayed = simulate(spec, entry.factory(), ReplayChooser(result.schedule))
    assert check(replayed) == result.anomalies
    assert replayed.render() == result.history


def test_exhaustive_rules_out_the_reference_engine() -> None:
    spec = load_scenario("small")
    result = search_engine(
        "small",
        spec,
        BUILTIN_ENGINES["reference"],
        max_examples=5000,
        seed=0,
        strategy=Strategy.EXHAUSTIVE,
    )
    assert result.verdict is Verdict.RULED_OUT
    assert result.bound.startswith("3 agents in 3 processes, 1 turns each, 0 faults")
    assert "all " in result.bound
    assert result.examples < 5000


class InPlaceNoLock(ReferenceEngine):
    """A deliberately tiny racy engine: read, refresh, rewrite in place; no lock, no close."""

    def access_token(self, ctx: AgentContext) -> Flow[str]:
        fd = yield from ops.open_file(ctx.main_store, OpenFlags.READ)
        document = parse_store((yield from ops.read(fd)), ctx.main_store)
        credential = credential_from(document, ctx.key, ctx.main_store)
        body = f"grant_type=refresh_token&refresh_token={credential.refresh}".encode()
        response = yield from ops.http_post(
            ctx.token_url, body, "application/x-www-form-urlencoded"
        )
        if response.status != 200:
            return "none"
        payload = json.loads(response.body)
        fresh = Credential(payload["access_token"], payload["refresh_token"], 0.0)
        out = render_store(with_credential(document, ctx.key, ctx.provider, fresh))
        fd = yield from ops.open_file(ctx.main_store, OpenFlags.WRITE | OpenFlags.TRUNCATE)
        yield from ops.write(fd, out)
        return fresh.access


def _final_state(result: RunResult) -> tuple[object, ...]:
    ends = sorted(
        (event.agent, event.error_type, event.note[:12])
        for event in result.events
        if event.kind.value == "turn-end"
    )
    rejected = sum(1 for record in result.audit if record.reason == "reused")
    return (result.final_files, tuple(ends), rejected)


def test_reduction_keeps_every_final_state() -> None:
    """DPOR may skip equivalent orders, never a distinct outcome: compare with brute force."""
    spec = WorldSpec(
        agents=(AgentSpec("atlas", (3600.0,)), AgentSpec("nova", (3600.0,))),
        max_steps=200,
    )
    outcomes: dict[bool, set[tuple[object, ...]]] = {True: set(), False: set()}
    counts = {}
    for reduction in (True, False):

        def collect(result: RunResult, reduction: bool = reduction) -> bool:
            outcomes[reduction].add(_final_state(result))
            return False

        search = search_exhaustive(
            lambda chooser: simulate(spec, InPlaceNoLock(), chooser),
            collect,
            reduction=reduction,
            max_schedules=20_000,
        )
        assert search.complete
        counts[reduction] = search.examples
    assert outcomes[True] == outcomes[False]
    assert len(outcomes[False]) > 1  # the race really has several outcomes
    assert counts[True] < counts[False]


def test_reference_engine_clean_under_pct_and_random() -> None:
    spec = load_scenario("headline")
    for strategy in (Strategy.PCT, Strategy.RANDOM):
        result = search_engine(
            "headline",
            spec,
            BUILTIN_ENGINES["reference"],
            max_examples=200,
            seed=0,
            strategy=strategy,
        )
        assert result.verdict is Verdict.NOT_FOUND
        assert result.examples == 200
        assert not fatal(result.anomalies)


def test_reduction_counts_are_reported() -> None:
    spec = WorldSpec(
        agents=(AgentSpec("atlas", (3600.0,)), AgentSpec("nova", (3600.0,))), max_steps=200
    )

    def run(chooser):  # type: ignore[no-untyped-def]
        return simulate(spec, InPlaceNoLock(), chooser)

    seen: list[str] = []

    def distinct(result: RunResult) -> bool:
        seen.append(
            " ".join(
                event.agent
                for event in result.events
                if event.kind.value in {"effect", "request", "response", "token-use"}
            )
        )
        return False

    reduced = search_exhaustive(run, lambda _: False, reduction=True)
    full = search_exhaustive(run, distinct, reduction=False)
    assert reduced.complete
    assert full.complete
    assert "DPOR with sleep sets" in reduced.bound
    assert "no reduction" in full.bound
    # brute force ran every interleaving once: as many distinct step orders as schedules
    assert len(set(seen)) == len(seen) == full.examples
    assert reduced.examples * 10 < full.examples


class ReaderAndReplacer(ReferenceEngine):
    """Atlas reads the store; Nova replaces it: on Windows, Atlas's open handle decides."""

    def access_token(self, ctx: AgentContext) -> Flow[str]:
        if ctx.agent == "atlas":
            fd = yield from ops.open_file(ctx.main_store, OpenFlags.READ)
            yield from ops.read(fd, 1)
            yield from ops.close(fd)
            return "read"
        temp = ctx.main_store + ".new"
        fd = yield from ops.create_exclusive(temp)
        yield from ops.close(fd)
        try:
            yield from ops.replace(temp, ctx.main_store)
        except PermissionError:
            return "refused"
        return "replaced"


@pytest.mark.parametrize("os_model", [OsModel.LINUX, OsModel.WINDOWS])
def test_reduction_is_sound_on_each_os(os_model: OsModel) -> None:
    """Windows makes a replace depend on who has the file open: DPOR must know it."""
    spec = WorldSpec(
        agents=(AgentSpec("atlas", (10.0,)), AgentSpec("nova", (10.0,))),
        layout=StoreLayout.SHARED,
        os=os_model,
        max_steps=200,
    )
    outcomes: dict[bool, set[tuple[object, ...]]] = {True: set(), False: set()}
    for reduction in (True, False):

        def collect(result: RunResult, reduction: bool = reduction) -> bool:
            outcomes[reduction].add(_final_state(result))
            return False

        search = search_exhaustive(
            lambda chooser: simulate(spec, ReaderAndReplacer(), chooser),
            collect,
            reduction=reduction,
        )
        assert search.complete
    assert outcomes[True] == outcomes[False]
    expected = 2 if os_model is OsModel.WINDOWS else 1  # refused, or not, on Windows
    assert len(outcomes[False]) == expected


def test_example_database_replays_a_found_counterexample_first(tmp_path: Path) -> None:
    spec = load_scenario("small")
    entry = BUILTIN_ENGINES["no-lock"]
    first = search_engine(
        "small", spec, entry, max_examples=300, seed=7, database=str(tmp_path / "db")
    )
    again = search_engine(
        "small", spec, entry, max_examples=300, seed=7, database=str(tmp_path / "db")
    )
    assert first.verdict is again.verdict is Verdict.REPRODUCED
    assert again.first_failure_at == 1  # the saved minimal schedule, tried before anything
    assert again.schedule == first.schedule
    other = search_engine(
        "small",
        spec,
        BUILTIN_ENGINES["lock-per-agent"],
        max_examples=300,
        seed=7,
        database=str(tmp_path / "db"),
    )
    assert other.first_failure_at != 1 or other.schedule != first.schedule  # keys kept apart


def test_a_search_stops_at_an_engine_that_sleeps_by_this_platforms_timer() -> None:
    """``time.sleep(3600)`` in a flow ends the search as ``hang`` within the limit: by
    ``SIGALRM`` on POSIX, by the watchdog thread on Windows (this file runs on a Windows
    host too, under Wine in ``pytest -m wine``)."""
    import dataclasses
    import time

    from conformance import load_engine

    class Sleeps(ReferenceEngine):
        def access_token(self, ctx):  # type: ignore[no-untyped-def]
            token = yield from super().access_token(ctx)
            time.sleep(3600)
            return token

    entry = dataclasses.replace(load_engine("reference"), factory=Sleeps)
    started = time.monotonic()
    result = search_engine(
        "small", load_scenario("small"), entry, max_examples=5, seed=0, hang_after=1.0
    )
    assert time.monotonic() - started < 20
    assert result.verdict is Verdict.HANG
    assert result.hang is not None
    assert "test_strategies.py" in result.hang.where
