"""`check --command … --fs`: random and PCT schedules, shrinking, a kill at a decision, file
steps in the diagram, and no mount left by a harness killed while it mounts."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from conformance import (
    AnomalyKind,
    Deviation,
    FsRun,
    Kill,
    PctPicker,
    RandomPicker,
    command_scenario,
    format_schedule,
    parse_schedule,
    run_fs,
    shrink,
)
from conformance._cli import main
from simulator.real import fuse_unavailable

ENGINE = Path(__file__).resolve().parent / "engines" / "fs-store.mjs"
TORN = f"node {ENGINE} --in-place"  # class 8: rewritten in place, first reads unlocked
CORRECT = f"node {ENGINE}"
STALE = f"node {ENGINE} --stale-snapshot"  # class 7: refreshes with its unlocked snapshot
AGENTS = ("atlas", "nova")
STORE = "agents/main/agent/auth-profiles.json"

#: the tests that mount a scheduled filesystem
NEEDS_FUSE = pytest.mark.skipif(bool(fuse_unavailable()), reason=fuse_unavailable() or "FUSE")


def _node() -> None:
    assert shutil.which("node"), "these tests need Node.js (node) on PATH"


def _fs(argv: list[str], tmp_path: Path) -> list[str]:
    return ["check", "--fs", "--agents", ",".join(AGENTS), *argv, "--report-dir", str(tmp_path)]


# --- the pickers and the shrinker, without a filesystem ---------------------------------


def test_random_departs_only_at_races_and_repeats_with_its_seed() -> None:
    calm = RandomPicker(random.Random("0:1"))
    assert all(calm.pick(i, {}, AGENTS, (), "atlas") == "atlas" for i in range(200))
    pickers = [RandomPicker(random.Random(seed)) for seed in ("0:1", "0:1", "0:2")]
    picks = [
        [picker.pick(i, {}, AGENTS, ("nova",), "atlas") for i in range(40)] for picker in pickers
    ]
    assert picks[0] == picks[1] != picks[2]
    assert {"atlas", "nova"} == set(picks[0])


def test_pct_demotes_at_its_change_points_counted_in_races() -> None:
    for seed in range(20):
        pct = PctPicker(random.Random(seed), AGENTS, 2, horizon=5)
        (point,) = pct.priorities.changes
        first = pct.priorities.highest(AGENTS)
        other = next(agent for agent in AGENTS if agent != first)
        # decisions without a race do not count: the change point is the point-th race
        picked = [pct.pick(i, {}, AGENTS, (), first) for i in range(3)]
        picked += [pct.pick(3 + i, {}, AGENTS, (other,), first) for i in range(6)]
        assert picked == [first] * (3 + point) + [other] * (6 - point)


def _fake(schedule: tuple[Deviation, ...], failed: bool) -> FsRun:
    anomalies = [SimpleNamespace(kind=AnomalyKind.AGENT_STRANDED)] if failed else []
    run = SimpleNamespace(failed=failed, anomalies=anomalies)
    return cast(FsRun, SimpleNamespace(schedule=schedule, client=SimpleNamespace(run=run)))


def test_shrinking_drops_a_detour_and_the_departures_it_does_not_need() -> None:
    """A failure that needs nova to go right after atlas's 16th step: found as a detour
    (nova went at 15, atlas back at 17, nova at 18) among needless departures."""
    tried: list[str] = []

    def run_one(schedule: tuple[Deviation, ...]) -> FsRun:
        tried.append(format_schedule(schedule))
        return _fake(schedule, Deviation(16, "nova") in schedule)

    found = parse_schedule("3:nova,5:atlas,15:nova,17:atlas,18:nova,30:nova", AGENTS)
    found = tuple(Deviation(d.index - 2, d.agent) if d.index > 5 else d for d in found)
    assert format_schedule(found) == "3:nova,5:atlas,13:nova,15:atlas,16:nova,28:nova"
    best, runs = shrink(run_one, _fake(found, True))
    assert format_schedule(best.schedule) == "16:nova"
    assert runs == len(tried) <= 40
    detour = parse_schedule("15:nova,17:atlas,18:nova", AGENTS)
    assert format_schedule(shrink(run_one, _fake(detour, True))[0].schedule) == "16:nova"


def test_shrinking_keeps_a_schedule_nothing_smaller_fails() -> None:
    needed = parse_schedule("0:nova,16:atlas", AGENTS)
    best, _ = shrink(lambda s: _fake(s, s == needed), _fake(needed, True))
    assert best.schedule == needed


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--strategy", "hypothesis"], "--strategy with --fs: exhaustive (default), random or pct"),
        (["--strategy", "random", "--depth", "2"], "--depth applies to --strategy pct"),
        (["--strategy", "pct", "--depth", "0"], "--depth is 1-10"),
        (["--kill"], "--kill with --fs takes AGENT@DECISION"),
        (["--kill", "zed@3"], "bad --kill 'zed@3' with --fs"),
        (["--kill", "nova"], "bad --kill 'nova' with --fs"),
        (["--schedule", "16:nova", "--strategy", "pct"], "no --strategy with it"),
        (["--runs", "0"], "--runs must be at least 1"),
    ],
)
def test_bad_search_options_are_one_line_and_exit_2(
    argv: list[str], said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_fs(["--command", TORN, *argv], tmp_path)) == 2
    err = capsys.readouterr().err
    assert said in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--kill", "nova@3"], "--kill AGENT@DECISION applies to --fs"),
        (["--depth", "2"], "--depth applies to --fs"),
        (["--strategy", "pct"], "--strategy applies to --engine and --fs"),
    ],
)
def test_fs_options_without_fs_are_one_line_and_exit_2(
    argv: list[str], said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["check", "--command", TORN, *argv, "--report-dir", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert said in err
    assert len(err.strip().splitlines()) == 1


# --- on a scheduled filesystem -----------------------------------------------------------


@pytest.mark.fuse
@NEEDS_FUSE
@pytest.mark.parametrize(
    ("program", "strategy", "shrunk"),
    [
        # class 7: nova's unlocked first read before atlas saves
        # its self-check (the found schedule run twice) differed under a full fresh-clone
        # CI load on 2 cores (2026-12-02): slow until that rerun is made robust (#14)
        pytest.param(STALE, "random", r"\d+:nova", marks=pytest.mark.slow, id="class7-random"),
        # PCT's runs sit longer at doors; under heavy load its self-check (the found
        # schedule run twice, the same history) has differed once: a slow test
        pytest.param(STALE, "pct", "", marks=pytest.mark.slow, id="class7-pct"),
        # class 8: nova's unlocked read between atlas's O_TRUNC and its write
        pytest.param(TORN, "random", "16:nova", marks=pytest.mark.slow, id="class8-random"),
        pytest.param(TORN, "pct", "", marks=pytest.mark.slow, id="class8-pct"),
    ],
)
def test_random_and_pct_find_the_file_races_and_print_a_line_that_replays_them(
    program: str, strategy: str, shrunk: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _node()
    argv = ["--command", program, "--strategy", strategy, "--seed", "0", "--runs", "30"]
    argv += ["--depth", "2"] if strategy == "pct" else []
    assert main(_fs(argv, tmp_path)) == 1
    out = capsys.readouterr().out
    assert "FAILED schedule " in out
    assert "run again: the same history" in out
    line = out.split("to run the failing schedule again:")[1].split()
    schedule = line[line.index("--schedule") + 1]
    if shrunk:  # found with departures it does not need, shrunk to the one it needs
        assert re.search(f"shrunk to {shrunk} in ", out), out
        assert re.fullmatch(shrunk, schedule)
    # the printed schedule replays the reported history byte for byte
    history = next(tmp_path.glob("history-*.txt")).read_text(encoding="utf-8")
    replayed = run_fs(command_scenario(program, AGENTS), parse_schedule(schedule, AGENTS))
    assert replayed.client.run.failed
    assert format_schedule(replayed.schedule) == schedule
    assert history == f"schedule {schedule}\n{replayed.client.run.log}"


@pytest.mark.fuse
@NEEDS_FUSE
def test_a_picked_run_replays_from_the_departures_it_took() -> None:
    _node()
    scenario = command_scenario(TORN, AGENTS)
    picked = run_fs(scenario, picker=PctPicker(random.Random("0:1"), AGENTS, 2, 8))
    replayed = run_fs(scenario, picked.schedule)
    assert picked.schedule == replayed.schedule
    assert picked.client.run.log == replayed.client.run.log


def _rows(run: FsRun) -> list[Any]:
    diagram = run.client.diagram
    assert diagram is not None
    return list(diagram.rows)


@pytest.mark.fuse
@NEEDS_FUSE
def test_file_steps_are_rows_of_the_sequence_diagram() -> None:
    _node()
    run = run_fs(command_scenario(TORN, AGENTS), parse_schedule("16:nova", AGENTS))
    diagram = run.client.diagram
    assert diagram is not None
    store = f"store:{{state_dir}}/{STORE}"
    assert [lane.key for lane in diagram.lanes] == ["atlas", "nova", store, "files", "server"]
    steps = [(r.source, r.target, r.label, r.detail) for r in diagram.rows if r.target != "server"]
    # the torn read: atlas opened the store O_TRUNC, nova reads it empty before atlas writes
    torn = steps.index(("atlas", store, "open O_WRONLY|O_TRUNC", "ok"))
    assert steps[torn + 1 : torn + 4] == [
        ("nova", store, "lookup", "exists"),
        ("nova", store, "open O_RDONLY", "ok"),
        ("nova", store, "read 8192@0", "0 bytes"),
    ]
    assert ("atlas", "files", "open store.lock O_WRONLY|O_CREAT|O_EXCL", "ok") in steps
    refresh = [r for r in diagram.rows if r.source == "atlas" and r.target == "server"]
    assert refresh
    assert refresh[0].label.startswith("refresh ")
    marked = [r for r in diagram.rows if "agent-stranded" in r.marks]
    assert marked
    assert marked[0].source == "nova"


@pytest.mark.fuse
@NEEDS_FUSE
def test_a_kill_at_a_decision_restarts_the_agent_in_history_and_diagram() -> None:
    """atlas killed in its first, unlocked read: restarted, it reads again; all is well."""
    _node()
    scenario = command_scenario(CORRECT, AGENTS)
    run = run_fs(scenario, kill=Kill("atlas", 2))
    log = run.client.run.log
    assert f"SIGKILL atlas before decision 2, at read {STORE} 8192@0\nrestart atlas\n" in log
    assert f"  2 atlas: lookup {STORE} -> exists" in log  # the new process starts over
    assert not run.client.run.failed, run.client.run.anomalies
    assert run.kill == Kill("atlas", 2)
    notes = [(r.source, r.label) for r in _rows(run) if r.source == r.target == "atlas"]
    assert notes[:2] == [("atlas", f"SIGKILL at read {STORE} 8192@0"), ("atlas", "restarted")]
    assert run_fs(scenario, kill=Kill("atlas", 2)).client.run.log == log


@pytest.mark.fuse
@NEEDS_FUSE
def test_a_kill_under_the_lock_file_leaves_it_stale_and_both_agents_stuck(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The lock-file design's crash hazard: atlas killed while holding store.lock (after its
    refresh, before its save); nobody ever removes the file.  Stopped at once, not at the
    deadline; the refresh it sent was committed, so the stranded store is unavoidable."""
    _node()
    started = time.monotonic()
    argv = _fs(["--command", CORRECT, "--schedule", "default", "--kill", "atlas@15"], tmp_path)
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "deadlock (fatal): atlas, nova never finished" in out
    assert "--schedule default --kill atlas@15" in out
    assert time.monotonic() - started < 20  # not the 30 s deadline, twice
    history = next(tmp_path.glob("history-*.txt")).read_text(encoding="utf-8")
    assert history.startswith("schedule default kill atlas@15\n")
    assert "every agent polls a lock none of them will release: stopped" in history


def _mounts_under(root: Path) -> list[str]:
    with open("/proc/mounts", encoding="utf-8") as mounts:
        return [line.split()[1] for line in mounts if line.split()[1].startswith(str(root))]


def _processes_with(*words: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode("utf-8", "replace")
            except OSError:
                continue
            if all(word in cmdline for word in words):
                found.append(int(entry.name))
    return found


def _until(condition: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


@pytest.mark.fuse
@NEEDS_FUSE
@pytest.mark.parametrize("delay", [0.0, 0.05, 0.15])
def test_a_harness_killed_while_mounting_leaves_no_mount(tmp_path: Path, delay: float) -> None:
    """SIGKILL ``check --fs`` as soon as its FUSE process exists (plus ``delay``), while
    libfuse is still mounting: the mount that appears after the harness is gone is taken
    down, and the FUSE process exits."""
    _node()
    code = "import sys; from conformance._cli import main; sys.exit(main(sys.argv[1:]))"
    argv = [sys.executable, "-c", code, *_fs(["--command", TORN], tmp_path / "report")]
    env = dict(os.environ, TMPDIR=str(tmp_path))
    harness = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert _until(lambda: _processes_with("_fs_daemon", str(tmp_path)), 30)
        time.sleep(delay)
        before = bool(_mounts_under(tmp_path))
        harness.send_signal(signal.SIGKILL)
        harness.communicate(timeout=30)
    finally:
        harness.kill()
    assert _until(lambda: not _mounts_under(tmp_path), 20), _mounts_under(tmp_path)
    assert _until(lambda: not _processes_with("_fs_daemon", str(tmp_path)), 20)
    time.sleep(0.3)  # a late mount would show up by now
    assert not _mounts_under(tmp_path)
    if delay == 0.0:
        assert not before  # the case this test is for: killed before the mount was in place
