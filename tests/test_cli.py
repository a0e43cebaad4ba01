"""The command line: verdicts, report, replay, and clear errors with exit status 2."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from _platform import PRIVATE_MODE

from conformance import load_engine
from conformance._cli import main
from simulator import Schedule


def test_run_writes_report_and_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", "--scenario", "headline", "--examples", "60", "--report-dir", str(tmp_path)]
    code = main([*argv, "--jobs", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert report["schema"] == "tokenrace.results/1"
    assert report["passed"] is True
    by_engine = {entry["engine"]: entry for entry in report["cells"]}
    assert by_engine["reference"]["verdict"] == "not found"
    assert by_engine["reference"]["schedules_tried"] == 60
    assert by_engine["mirrored"]["verdict"] == "reproduced"
    assert by_engine["mirrored"]["anomalies"][0]["kind"] == "refresh-token-reuse"
    assert by_engine["mirrored"]["replay"].startswith("tokenrace replay --scenario headline")
    assert "tokenrace replay --scenario headline --engine mirrored 'default'" in out
    mode = stat.S_IMODE(os.stat(tmp_path / "results.json").st_mode)
    assert mode == PRIVATE_MODE


def test_report_and_output_carry_no_raw_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["run", "--examples", "20", "--report-dir", str(tmp_path), "--engine", "mirrored"])
    assert list(tmp_path.glob("history-headline-mirrored.txt"))
    out = capsys.readouterr().out
    written = "".join(path.read_text(encoding="utf-8") for path in tmp_path.iterdir())
    for text in (out, written):
        assert "trr_" not in text
        assert "tra_" not in text
    assert "rt#" in written


def test_replay_prints_history_and_fails_on_fatal(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "default", "--engine", "mirrored"]) == 1
    out = capsys.readouterr().out
    assert "refresh_token_reused" in out
    assert "anomaly: refresh-token-reuse (fatal)" in out
    assert main(["replay", "default", "--engine", "reference"]) == 0
    assert "no anomaly" in capsys.readouterr().out


def test_replay_is_byte_identical_across_calls(capsys: pytest.CaptureFixture[str]) -> None:
    main(["replay", "atlas*2 axon*3 atlas*2", "--engine", "no-lock"])
    first = capsys.readouterr().out
    main(["replay", "atlas*2 axon*3 atlas*2", "--engine", "no-lock"])
    assert capsys.readouterr().out == first


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--engine", "nosuch"], "unknown engine 'nosuch'"),
        (["run", "--engine", "nosuch_module_xyz:Engine"], "cannot import 'nosuch_module_xyz'"),
        (["run", "--engine", "json:dumps"], "is not an engine"),
        (["run", "--scenario", "nosuch"], "--scenario nosuch: unknown"),
        (["replay", "default", "--scenario", "nosuch"], "unknown scenario 'nosuch'"),
        (["replay", "atlas*0"], "bad schedule segment 'atlas*0'"),
        (["replay", "nova*40"], "step 5: the schedule runs 'nova', but only atlas"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: tokenrace" in capsys.readouterr().out


def test_run_json_is_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", "--scenario", "separate-logins", "--json", "--report-dir", str(tmp_path)]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert {cell["engine"] for cell in printed["cells"]} == {"separate-logins", "reference"}


def test_run_a_user_engine_by_module_attribute(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "--engine", "conformance._corpus:NoCrossProcessLock", "--scenario"]
    argv += ["no-cross-process-lock", "--report-dir", str(tmp_path), "--jobs", "1"]
    assert main(argv) == 1  # held to the reference's promise, it fails
    assert "refresh-token-reuse" in capsys.readouterr().out


def test_replay_on_real_processes_checks_the_model(capsys: pytest.CaptureFixture[str]) -> None:
    """``replay --real``: the five agents as real processes, the history printed, and the
    model checked against them step for step."""
    argv = ["replay", "default", "--scenario", "headline", "--real"]
    assert main([*argv, "--engine", "mirrored"]) == 1
    out = capsys.readouterr().out
    assert "refresh-token-reuse (fatal)" in out
    assert "5 agents on real linux processes: the linux model agrees, step for step" in out
    assert main([*argv, "--engine", "reference"]) == 0
    assert "no anomaly" in capsys.readouterr().out


def test_replay_real_shows_a_disagreement(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real run that ends otherwise than the model is a finding: the diff, and exit 1."""
    from conformance import _replaying

    def other(spec: Any, engine: Any, chooser: Any, pool: Any) -> Any:
        return _replaying.replay(spec, load_engine("mirrored"), Schedule.parse("default"))

    monkeypatch.setattr(_replaying, "simulate_processes", other)
    argv = ["replay", "default", "--scenario", "headline", "--engine", "reference", "--real"]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "the linux model DISAGREES" in out
    assert "--- model" in out


def test_replay_real_refuses_an_os_this_host_cannot_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["replay", "default", "--real", "--os", "macos"]) == 2
    assert "real macos processes need a macos host" in capsys.readouterr().err


@pytest.mark.wine
def test_replay_class_9_on_windows_processes_and_on_linux_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The minimal class-9 schedule that ``tokenrace run`` prints, replayed on Windows
    processes under Wine: the replace really fails and the token is lost, as the model
    says; on Linux processes the same schedule is clean."""
    argv = ["replay", "atlas nova", "--scenario", "windows-replace-dropped", "--real"]
    argv += ["--engine", "ignore-replace-error"]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "PermissionError(errno=13 winerror=5)" in out
    assert "token-lost (fatal)" in out
    assert "2 agents on real windows processes: the windows model agrees" in out
    assert main([*argv, "--os", "linux"]) == 0
    assert "the linux model agrees" in capsys.readouterr().out
