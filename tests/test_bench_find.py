"""Smoke tests of benchmarks/bench_find.py: the stress test and the frontrun harness."""

from __future__ import annotations

import dataclasses
import importlib
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_find  # noqa: E402
from overlap import ForcedOverlap  # noqa: E402

from fake_oauth_server import serve_in_thread  # noqa: E402


def scenario(name: str) -> bench_find.Scenario:
    return bench_find.known_bug_scenarios([name])[0]


def test_every_known_bug_scenario_is_listed_with_its_gaps() -> None:
    names = {s.name: s for s in bench_find.known_bug_scenarios()}
    assert len(names) == 18
    for windows in ("no-lock-on-windows", "windows-replace-dropped"):  # run under Wine
        assert bench_find.real_world_gap(names[windows]) == ""
        assert bench_find.needs_wine(names[windows])
    assert not bench_find.needs_wine(names["headline"])
    assert "NFS" in bench_find.real_world_gap(names["nfs-nolock"])
    assert bench_find.real_world_gap(names["headline"]) == ""
    assert "drop" in bench_find.fault_gap(names["lost-response-retry"])
    assert "denied" in bench_find.fault_gap(names["store-dir-denied"])
    assert bench_find.real_world_gap(names["symlinked-store"]) == ""


def test_a_row_says_why_wine_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable() -> tuple[None, str]:
        return None, "Wine unavailable: wine is not installed and this is not root"

    monkeypatch.setattr(bench_find, "wine_python", unavailable)
    found = {strategy.value: _FOUND for strategy in bench_find.Strategy}
    monkeypatch.setattr(bench_find, "tokenrace_times", lambda *args: found)
    result = bench_find.run(["no-lock-on-windows"], 1, 1.0, 1, progress=False)
    row = result["rows"][0]
    assert "stress" not in row
    assert row["ratios"]["stress"] == "not run"
    assert row["gaps"]["stress"].startswith("Wine unavailable: wine is not installed")
    assert "no Windows wheel" in row["gaps"]["frontrun_dpor"]
    text = bench_find.markdown(result)
    assert "stress test not run: Wine unavailable: wine is not installed" in text


_FOUND = {"found": True, "runs": 1, "schedules": 1, "seconds": 0.01, "budget_schedules": 1}


@pytest.mark.wine
def test_wine_stress_attempt_finds_no_lock_on_windows_and_passes_the_reference() -> None:
    """Class 4 for real: three Windows CPython processes under Wine, no lock among them.

    The same engine takes its flock on Linux and is clean there; under Wine
    ``fcntl`` does not import and the engine skips the lock.  The overlap is
    forced, not hoped for (``overlap.ForcedOverlap``): the server holds the
    token requests until all three agents wait there together, which only an
    engine without mutual exclusion lets happen, so the reuse cannot be
    missed.  The reference engine takes LockFileEx: under the same hold only
    its lock holder ever reaches the server (peak 1), and it is clean.
    """
    wine, why = bench_find.wine_python()
    if wine is None:
        pytest.fail(f"the wine tests need Wine: {why}")
    buggy = scenario("no-lock-on-windows")
    clean = dataclasses.replace(buggy, engine="reference")
    agents = len(buggy.world.agents)
    with tempfile.TemporaryDirectory() as tmp:
        buggy_peaks: list[int] = []
        with serve_in_thread(buggy.world.policy) as running:
            found = bench_find.stress_attempt(
                running,
                buggy,
                Path(tmp) / "a",
                wine,
                overlap=ForcedOverlap(agents, settle=20.0),
                peaks=buggy_peaks,
            )
        clean_peaks: list[int] = []
        with serve_in_thread(clean.world.policy) as running:
            clean_found = bench_find.stress_attempt(
                running,
                clean,
                Path(tmp) / "r",
                wine,
                overlap=ForcedOverlap(agents, settle=3.0),
                peaks=clean_peaks,
            )
    assert buggy_peaks == [agents], buggy_peaks  # all three inside the refresh at once
    assert "refresh-token-reuse" in found, found
    assert clean_peaks == [1], clean_peaks  # the lock kept the other two out
    assert clean_found == set(), clean_found


def test_stress_attempt_finds_separate_logins_and_passes_the_reference() -> None:
    buggy = scenario("separate-logins")
    clean = dataclasses.replace(scenario("lock-per-agent-dir"), engine="reference")
    with tempfile.TemporaryDirectory() as tmp:
        with serve_in_thread(buggy.world.policy) as running:
            kinds = bench_find.stress_attempt(running, buggy, Path(tmp) / "a")
        with serve_in_thread(clean.world.policy) as running:
            assert bench_find.stress_attempt(running, clean, Path(tmp) / "b") == set()
    assert "agent-stranded" in kinds


def test_stress_attempt_runs_a_gateway_as_one_process() -> None:
    gateway = scenario("lockf-in-gateway")
    assert bench_find._groups(gateway) == [["atlas", "nova"]]
    assert bench_find._groups(scenario("headline")) == [
        [name] for name in ("atlas", "axon", "nova", "nexis", "lumi")
    ]


#: frontrun stops at the first failing interleaving; its seeded search takes 4-5 s here.  The
#: budget is for a slow machine, not a race: ten times that, so load cannot turn a find into a miss
FRONTRUN_BUDGET = 60.0


def test_frontrun_finds_the_lock_at_the_wrong_scope() -> None:
    importlib.import_module("frontrun")  # a dev dependency: a missing one fails
    result = bench_find.frontrun_cold_start(
        scenario("lock-per-agent-dir"), "random", FRONTRUN_BUDGET, 0
    )
    assert result["found"], result


def test_frontrun_dpor_finds_the_lock_at_the_wrong_scope() -> None:
    """DPOR reaches the store race: no tail races of the harness's own keep it busy."""
    importlib.import_module("frontrun")
    result = bench_find.frontrun_cold_start(
        scenario("lock-per-agent-dir"), "dpor", FRONTRUN_BUDGET, 0
    )
    assert result["found"], result
    assert result["executions"] <= 10, result


def test_the_frontrun_child_passes_dpor_search_order_through(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = []

    def fake(*args: object) -> dict[str, object]:
        calls.append(args)
        return {"found": False, "seconds": 1.0, "executions": 3}

    monkeypatch.setattr(bench_find, "frontrun_search", fake)
    assert bench_find._child(["headline", "dpor", "30.0", "0", "bit-reversal"]) == 0
    assert bench_find._child(["headline", "dpor", "30.0", "1"]) == 0
    assert [call[1:] for call in calls] == [
        ("dpor", 30.0, 0, "bit-reversal"),
        ("dpor", 30.0, 1, None),
    ]
    assert capsys.readouterr().out.count('"executions": 3') == 2


def test_search_order_is_for_dpor_only() -> None:
    with pytest.raises(ValueError, match="DPOR only"):
        bench_find.frontrun_search(scenario("headline"), "random", 1.0, 0, "bit-reversal")


def test_ratios_say_not_found() -> None:
    row = {
        "default_strategy": "hypothesis",
        "tokenrace": {"hypothesis": {"found": True, "seconds": 0.01}},
        "stress": {"found": True, "seconds": 1.0},
        "frontrun_dpor": {"found": False, "seconds": None},
    }
    assert bench_find.ratios(row) == {
        "stress": "100x",
        "frontrun_dpor": "not found within budget",
        "frontrun_random": "not run",
    }


def test_merge_keeps_the_columns_not_remeasured() -> None:
    old_row = {
        "scenario": "headline",
        "default_strategy": "hypothesis",
        "tokenrace": {"hypothesis": {"found": True, "seconds": 0.01}},
        "stress": {"found": True, "seconds": 1.0},
        "frontrun_dpor": {"found": False, "seconds": None},
        "frontrun_random": {"found": True, "seconds": 2.0},
    }
    settings = {"repeat": 3, "budget_seconds": 30.0, "budget_schedules": 1000}
    new_row = {
        "scenario": "headline",
        "default_strategy": "hypothesis",
        "gaps": {},
        "frontrun_dpor": {"found": True, "seconds": 0.5},
        "frontrun_random": {"found": True, "seconds": 3.0},
        "measured": {"frontrun": "today"},
    }
    old = {**settings, "rows": [old_row, {**old_row, "scenario": "separate-logins"}]}
    new = {**settings, "sections": ["frontrun"], "rows": [new_row]}
    merged = bench_find.merge(old, new)
    headline, other = merged["rows"]
    assert headline["stress"] == {"found": True, "seconds": 1.0}
    assert headline["frontrun_dpor"]["seconds"] == 0.5
    assert headline["ratios"] == {
        "stress": "100x",
        "frontrun_dpor": "50x",
        "frontrun_random": "300x",
    }
    assert headline["measured"]["frontrun"] == "today"
    assert headline["measured"]["stress"] == bench_find.EARLIER_RUN
    assert other["frontrun_dpor"]["found"] is False
    with pytest.raises(ValueError, match="budget_seconds"):
        bench_find.merge({**old, "budget_seconds": 60.0}, new)
