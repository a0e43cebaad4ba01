"""Issue 18 item 5: server faults and hold times in the black-box harness.

``check --command --fault KIND@N`` strikes the Nth released refresh with the fake
server's own faults, and the run's history names it; a program that reports the
failure honestly gets a ``server-fault`` warning, one that then reuses a token, or
asks for a new login over a transient error, fails.  ``--hold`` keeps each refresh
at the door long enough for another agent's own lock-wait timeout to run out: an
engine that then proceeds without the lock is caught with a long hold and not with
a short one.  The engines are JavaScript programs (``tests/engines``), run by Node.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance._cli import main
from conformance._client_run import run_client
from conformance._client_scenarios import ClientScenarioError, load_client_scenario
from conformance._release_faults import KINDS, MAX_HOLD, check_hold, parse_release_fault
from fake_oauth_server import FaultKind

ENGINES = Path(__file__).resolve().parent / "engines"
TIMEOUT_ENGINE = ENGINES / "lock-timeout.mjs"
REFRESH_ENGINE = ENGINES / "refresh.mjs"
#: Two agents, atlas's refresh let through first (whoever holds the lock comes first anyway).
TWO = ["--agents", "atlas,nova", "--order", "atlas,nova"]


@pytest.fixture(autouse=True)
def _node() -> None:
    assert shutil.which("node"), "these tests need Node.js (node) on PATH"


def _check(tmp_path: Path, command: str, *options: str) -> tuple[int, str]:
    """Exit status and the run's history of one ``check --command``."""
    status = main(["check", "--command", command, *TWO, *options, "--report-dir", str(tmp_path)])
    report = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    history_file = report["cells"][0].get("history_file")
    history = (tmp_path / history_file).read_text(encoding="utf-8") if history_file else ""
    return status, history


# ----------------------------------------------------------------- fault injection


@pytest.mark.parametrize(
    ("fault", "named"),
    [
        ("5xx@1", "5xx fault (answered 503)"),
        ("429:30@1", "429 fault (Retry-After 30s)"),
        ("reset@1", "reset fault (connection aborted"),
    ],
)
def test_a_fault_is_injected_named_and_an_honest_report_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fault: str, named: str
) -> None:
    status, history = _check(tmp_path, f"node {TIMEOUT_ENGINE}", "--fault", fault)
    out = capsys.readouterr().out
    assert status == 0, out  # the server's failure, reported: nothing fatal
    assert f"fault {fault} on release #1: {named}" in history
    assert "server-fault (warning)" in out
    assert named in out
    assert "injected into its refresh" in out
    assert "engine-error" not in out


def test_a_program_that_reuses_the_token_after_a_fault_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Retrying outside the lock with the token read before the 503: the other agent
    rotated it meanwhile.  The fault excuses the report, never the reuse."""
    command = f"node {TIMEOUT_ENGINE} --retry-unlocked"
    status, history = _check(tmp_path, command, "--fault", "5xx@1")
    out = capsys.readouterr().out
    assert status == 1
    assert "refresh-token-reuse (fatal)" in out
    assert "fault 5xx@1 on release #1" in history
    assert "--fault 5xx@1" in out  # the line that runs the failing order again keeps it


def test_a_program_that_asks_for_a_new_login_over_a_503_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``refresh.mjs`` exits 3 (new login) on any non-200: a transient error strands it."""
    status, _ = _check(tmp_path, f"node {REFRESH_ENGINE}", "--fault", "5xx@1")
    out = capsys.readouterr().out
    assert status == 1
    assert "agent-stranded (fatal)" in out
    assert "server-fault" not in out


def test_a_fault_past_the_last_release_says_it_never_struck(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, history = _check(tmp_path, f"node {TIMEOUT_ENGINE}", "--fault", "5xx@2")
    out = capsys.readouterr().out
    assert status == 0
    assert "fault 5xx@2 never struck: 1 refreshes released" in out
    assert "fault 5xx@2 on" not in history


# ------------------------------------------------------------------- hold times


def test_an_engine_that_proceeds_after_its_lock_wait_is_caught_with_a_long_hold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nova waits 2 s for the lock.  Released at once (``--settle 0.3``), atlas is done
    long before; held 5 s, atlas keeps the lock past nova's wait, nova refreshes anyway
    with the token atlas is rotating: a reuse."""
    command = f"node {TIMEOUT_ENGINE} --lock-wait 2 --proceed"
    short, _ = _check(tmp_path / "short", command, "--settle", "0.3")
    assert short == 0, capsys.readouterr().out
    capsys.readouterr()
    long, _ = _check(tmp_path / "long", command, "--settle", "0.3", "--hold", "5")
    out = capsys.readouterr().out
    assert long == 1
    assert "refresh-token-reuse (fatal)" in out
    assert "--hold 5.0" in out  # the replay line keeps the hold


def test_an_engine_that_gives_up_after_its_lock_wait_is_a_warning_under_a_hold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same wait, but giving up (exit 1, "lock busy"): the slow server's doing."""
    command = f"node {TIMEOUT_ENGINE} --lock-wait 2"
    status, _ = _check(tmp_path, command, "--settle", "0.3", "--hold", "5")
    out = capsys.readouterr().out
    assert status == 0, out
    # whichever agent's Node started first took the lock; the other gave up on it
    assert re.search(r"server-fault \(warning\): (atlas|nova) exited 1 while refreshes were", out)
    assert "held 5s at a slow server" in out.replace("\n", " ").replace("  ", " ")


# --------------------------------------------------------- client scenario files


def _client_file(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "client.toml"
    path.write_text(
        f"""
[scenario]
name = "lock-timeout"

[client]
program = "node"
args = ["{TIMEOUT_ENGINE.as_posix()}"]
store = "tokenrace"
stdout_token = true
inherit_env = true
settle = 0.5
{extra}

[world]
agents = ["atlas", "nova"]
""",
        encoding="utf-8",
    )
    return path


def test_a_client_file_takes_faults_and_a_hold(tmp_path: Path) -> None:
    scenario = load_client_scenario(_client_file(tmp_path, 'faults = ["5xx:502@1"]\nhold = 1'))
    assert [str(fault) for fault in scenario.faults] == ["5xx:502@1"]
    assert scenario.hold == 1.0
    done = run_client(scenario, ("atlas", "nova"))
    assert "fault 5xx:502@1 on release #1: 5xx fault (answered 502)" in done.run.log
    assert not done.run.failed
    kinds = [anomaly.kind.value for anomaly in done.run.anomalies]
    assert kinds == ["server-fault"]


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ('faults = ["9xx@1"]', "[client] faults: unknown fault '9xx'"),
        ('faults = ["5xx"]', "[client] faults: bad fault '5xx': expected KIND[:VALUE]@N"),
        ('faults = ["reset:3@1"]', "only 5xx (a status) and 429 (Retry-After) take one"),
        ('faults = ["5xx:404@1"]', "a 5xx status is 500-599"),
        ('faults = ["5xx@0"]', "N counts released refreshes from 1"),
        ("hold = 500", "[client] hold: a hold is 0-120 seconds"),
        ("hold = true", "[client] hold"),
    ],
)
def test_bad_fault_and_hold_keys_are_one_line_errors(
    tmp_path: Path, extra: str, error: str
) -> None:
    with pytest.raises(ClientScenarioError) as caught:
        load_client_scenario(_client_file(tmp_path, extra))
    assert error in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "argv",
    [["--fault", "5xx"], ["--fault", "boom@1"], ["--hold", "-1"], ["--hold", "nan"]],
)
def test_bad_options_exit_2_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["check", "--command", f"node {TIMEOUT_ENGINE}", *argv])
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err


@given(
    kind=st.sampled_from(sorted(KINDS)),
    value=st.one_of(st.none(), st.integers(0, 100_000)),
    release=st.integers(0, 2000),
)
def test_fault_syntax_round_trips_or_is_refused(kind: str, value: int | None, release: int) -> None:
    text = f"{kind}{'' if value is None else f':{value}'}@{release}"
    takes = {"5xx": range(500, 600), "429": range(0, 86401)}
    valid = 1 <= release <= 1000 and (value is None or value in takes.get(kind, ()))
    if not valid:
        with pytest.raises(ValueError, match="fault"):
            parse_release_fault(text)
        return
    parsed = parse_release_fault(text)
    assert (parsed.release, str(parsed), parsed.fault.kind) == (release, text, KINDS[kind])
    if kind == "5xx":
        assert parsed.fault.status == (value or 503)
    if kind == "429":
        assert parsed.fault.kind is FaultKind.RATE_LIMIT
        assert parsed.fault.retry_after == (1 if value is None else value)


def test_hold_bounds() -> None:
    assert check_hold(0) == 0.0
    assert check_hold(MAX_HOLD) == MAX_HOLD
    for bad in (-0.1, MAX_HOLD + 1, float("inf")):
        with pytest.raises(ValueError, match="a hold is"):
            check_hold(bad)
