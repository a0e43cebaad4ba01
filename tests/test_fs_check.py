"""`check --command … --fs`: file races of an unmodified Node program, on a scheduled filesystem."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conformance import command_scenario, parse_schedule, run_fs
from conformance._cli import main
from simulator.real import fuse_unavailable

ENGINE = Path(__file__).resolve().parent / "engines" / "fs-store.mjs"
TORN = f"node {ENGINE} --in-place"  # class 8: rewritten in place, first reads unlocked
AGENTS = ("atlas", "nova")
#: the torn read: nova's unlocked first read just after atlas opened the store with O_TRUNC
TORN_SCHEDULE = "16:nova"

pytestmark = [
    pytest.mark.fuse,
    pytest.mark.skipif(bool(fuse_unavailable()), reason=fuse_unavailable() or "FUSE"),
]


@pytest.fixture(autouse=True)
def _node() -> None:
    assert shutil.which("node"), "these tests need Node.js (node) on PATH"


def _fs(argv: list[str], tmp_path: Path) -> list[str]:
    return ["check", "--fs", "--agents", ",".join(AGENTS), *argv, "--report-dir", str(tmp_path)]


def test_the_torn_read_is_a_schedule_and_repeats_byte_for_byte() -> None:
    scenario = command_scenario(TORN, AGENTS)
    first = run_fs(scenario, parse_schedule(TORN_SCHEDULE, AGENTS))
    again = run_fs(scenario, parse_schedule(TORN_SCHEDULE, AGENTS))
    assert first.client.run.failed
    assert "nova exited 3: it needs a new login" in str(first.client.run.anomalies)
    assert " nova: read agents/main/agent/auth-profiles.json 8192@0 -> 0 bytes" in (
        first.client.run.log
    )
    assert first.client.run.log == again.client.run.log
    assert not first.diverged
    default = run_fs(scenario)  # the same program, atlas first and never preempted: clean
    assert not default.client.run.failed
    assert default.file_steps > 20


def test_the_replay_line_fails_the_same_way(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _fs(["--command", TORN, "--schedule", TORN_SCHEDULE], tmp_path)
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "FAILED schedule 16:nova" in out
    assert "run again: the same history" in out
    report = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert report["cells"][0]["verdict"] == "reproduced"
    assert "trr_" not in (tmp_path / "results.json").read_text(encoding="utf-8")


def test_the_twin_passes_the_schedule_that_tears_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _fs(["--command", f"node {ENGINE}", "--schedule", TORN_SCHEDULE], tmp_path)
    assert main(argv) == 0
    assert "ok schedule 16:nova" in capsys.readouterr().out


def test_a_bad_schedule_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_fs(["--command", TORN, "--schedule", "16:zed"], tmp_path)) == 2
    err = capsys.readouterr().err
    assert "bad --schedule part '16:zed'" in err
    assert len(err.strip().splitlines()) == 1


def test_without_fuse_it_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    reason = "--fs needs FUSE: /dev/fuse does not exist"
    monkeypatch.setattr("conformance._fs_check.fuse_unavailable", lambda: reason)
    assert main(_fs(["--command", TORN], tmp_path)) == 2
    err = capsys.readouterr().err
    assert reason in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_the_search_finds_the_torn_read_with_one_preemption(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_fs(["--command", TORN], tmp_path)) == 1
    out = capsys.readouterr().out
    assert f"FAILED schedule {TORN_SCHEDULE}" in out
    assert f"--schedule {TORN_SCHEDULE}" in out  # the line that runs it again


@pytest.mark.slow
def test_the_twin_is_ruled_out_within_the_bound(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_fs(["--command", f"node {ENGINE}"], tmp_path)) == 0
    out = capsys.readouterr().out
    assert "ruled out" in out
    assert "at most 1 time" in out


@pytest.mark.slow
def test_the_http_level_harness_cannot_reach_the_torn_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every release order passes without --fs: the first reads never overlap the rewrite."""
    argv = ["check", "--command", TORN, "--agents", ",".join(AGENTS)]
    assert main([*argv, "--report-dir", str(tmp_path)]) == 0


def test_the_stale_snapshot_is_a_schedule_too() -> None:
    """Class 7: nova read the store before atlas refreshed, and refreshes with that snapshot."""
    scenario = command_scenario(f"node {ENGINE} --stale-snapshot", AGENTS)
    caught = run_fs(scenario, parse_schedule("1:nova", AGENTS))
    assert "refresh-token-reuse" in str([a.kind.value for a in caught.client.run.anomalies])
    fixed = run_fs(command_scenario(f"node {ENGINE}", AGENTS), parse_schedule("1:nova", AGENTS))
    assert not fixed.client.run.failed
