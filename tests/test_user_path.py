"""The user's path: an engine that blocks is a ``hang``, and every printed replay line works.

Each command runs as a user runs it: the ``tokenrace`` script the README's
install leaves in ``.venv/bin`` (not on ``PATH``, not activated), in a fresh
directory that holds the user's engine and nothing on ``PYTHONPATH``.  Every
replay line that ``run``, ``check`` and ``matrix`` print is then run, pasted
as is, from that directory, and must replay the run it was printed for.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conformance._campaign import Verdict, search_engine
from conformance._engines import load_engine
from conformance._scenarios import load_scenario
from simulator import Strategy

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the limit needs SIGALRM")

SCRIPT = Path(sys.executable).parent / "tokenrace"
SHIPPED = (
    Path(__file__).parent.parent / "conformance" / "scenarios" / "03-no-cross-process-lock.toml"
)

ENGINES = '''\
import time

from refresh_engine import LockKind, ReferenceEngine


class NoLock(ReferenceEngine):
    """A user's engine with a race: no lock around the refresh."""

    def __init__(self):
        super().__init__(lock=LockKind.NONE)


class SleepsEverywhere(ReferenceEngine):
    def access_token(self, ctx):
        time.sleep(3600)  # line 15
        return (yield from super().access_token(ctx))


class SleepsLater(ReferenceEngine):
    """Passes the one-agent check (atlas alone), blocks once a second agent has a token."""

    def access_token(self, ctx):
        token = yield from super().access_token(ctx)
        if ctx.agent != "atlas":
            time.sleep(3600)  # line 25
        return token


class Spins(ReferenceEngine):
    def access_token(self, ctx):
        token = yield from super().access_token(ctx)
        if ctx.agent != "atlas":
            while True:  # line 33
                pass
        return token
'''

REPLAY = re.compile(r"^\s*(\S*tokenrace replay .*)$", re.M)


def _environment() -> dict[str, str]:
    """The user's shell: no PYTHONPATH, the venv not activated, a wide terminal."""
    bin_dir = str(SCRIPT.parent)
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != bin_dir)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "PATH": path, "COLUMNS": "200"}


def _tokenrace(workdir: Path, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *argv],
        cwd=workdir,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "user_engines.py").write_text(ENGINES, encoding="utf-8")
    shipped = SHIPPED.read_text(encoding="utf-8")
    mine = shipped.replace('name = "no-cross-process-lock"', 'name = "mine"')
    assert mine != shipped
    (tmp_path / "mine.toml").write_text(mine, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    ("engine", "line"), [("user_engines:SleepsLater", 25), ("user_engines:Spins", 33)]
)
def test_an_engine_that_blocks_is_a_hang_within_the_limit(
    workdir: Path, engine: str, line: int
) -> None:
    started = time.monotonic()
    argv = ["--scenario", "no-cross-process-lock", "--hang-after", "1", "--jobs", "1"]
    done = _tokenrace(workdir, "check", "--engine", engine, *argv, timeout=60)
    assert time.monotonic() - started < 30
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stdout + done.stderr
    assert "HANG" in done.stdout
    assert "ran more than 1 s of real time at step" in done.stdout
    assert f"user_engines.py:{line})" in done.stdout
    replays = REPLAY.findall(done.stdout)
    assert len(replays) == 1, done.stdout
    again = subprocess.run(
        replays[0].replace("'default'", "'default' --hang-after 1"),
        shell=True,
        cwd=workdir,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert again.returncode == 1, (again.stdout, again.stderr)
    assert f"user_engines.py:{line})" in again.stdout


def test_an_engine_that_blocks_alone_is_refused_within_the_limit(workdir: Path) -> None:
    started = time.monotonic()
    argv = ["--engine", "user_engines:SleepsEverywhere", "--hang-after", "1"]
    done = _tokenrace(workdir, "check", *argv, timeout=30)
    assert time.monotonic() - started < 10
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "hangs alone" in lines[0]
    assert "user_engines.py:15)" in lines[0]


@pytest.mark.parametrize("watchdog", [False, True], ids=["sigalrm", "watchdog"])
@pytest.mark.parametrize("strategy", list(Strategy))
def test_every_search_stops_at_a_hang(
    strategy: Strategy, watchdog: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hang on the fifth schedule of any search ends it with ``hang`` at once, by
    ``SIGALRM`` (POSIX) or by the watchdog thread Windows uses (forced here)."""
    from conformance import _hang
    from refresh_engine import ReferenceEngine

    monkeypatch.setattr(_hang, "WATCHDOG", watchdog)

    built = 0

    class HangsOnTheFifthRun(ReferenceEngine):
        def __init__(self) -> None:
            nonlocal built
            built += 1
            self.run = built
            super().__init__()

        def access_token(self, ctx):  # type: ignore[no-untyped-def]
            token = yield from super().access_token(ctx)
            if self.run == 5:
                time.sleep(3600)
            return token

    entry = dataclasses.replace(load_engine("reference"), factory=HangsOnTheFifthRun)
    started = time.monotonic()
    result = search_engine(
        "small",
        load_scenario("small"),
        entry,
        max_examples=50,
        seed=0,
        strategy=strategy,
        hang_after=0.5,
    )
    assert time.monotonic() - started < 5
    assert result.verdict is Verdict.HANG
    assert not result.passed
    assert result.hang is not None
    assert result.hang.runs == 5
    assert result.hang.agent in ("atlas", "axon", "nova")


def _replay_lines_work(workdir: Path, out: str) -> int:
    """Run each replay line in ``out`` as pasted; each must replay a fatal anomaly."""
    lines = REPLAY.findall(out)
    for line in lines:
        again = subprocess.run(
            line,
            shell=True,
            cwd=workdir,
            env=_environment(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert again.returncode == 1, (line, again.stdout, again.stderr)
        assert "(fatal)" in again.stdout, (line, again.stdout)
        assert "error" not in again.stderr, (line, again.stderr)
    return len(lines)


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--scenario", "no-cross-process-lock", "--examples", "50", "--jobs", "1"],
        ["run", "--engine", "user_engines:NoLock", "--scenario", "no-cross-process-lock"]
        + ["--examples", "50", "--jobs", "1"],
        ["check", "--engine", "user_engines:NoLock", "--scenario", "no-cross-process-lock"]
        + ["--examples", "50", "--jobs", "1"],
        ["check", "--engine", "user_engines:NoLock", "--examples", "50", "--jobs", "1"]
        + ["--scenario", str(SHIPPED)],
        ["run", "--scenario", "mine.toml", "--examples", "50", "--jobs", "1"],
        ["check", "--engine", "user_engines:NoLock", "--scenario", "mine.toml", "--jobs", "1"],
        ["matrix", "--lock", "lockf", "--processes", "gateway", "--os", "linux,windows"]
        + ["--examples", "20", "--jobs", "1"],
    ],
    ids=[
        "run",
        "run-user-engine",
        "check-by-name",
        "check-by-file",
        "run-user-file",
        "check-user-file",
        "matrix",
    ],
)
def test_every_printed_replay_line_works_as_pasted(workdir: Path, argv: list[str]) -> None:
    done = _tokenrace(workdir, *argv, "--report-dir", "report")
    assert done.returncode in (0, 1), (done.stdout, done.stderr)
    assert "site-packages" not in done.stdout
    assert _replay_lines_work(workdir, done.stdout) >= 1, done.stdout
    assert _replay_lines_work(workdir, (workdir / "report" / "summary.md").read_text()) >= 1


def test_an_outer_timer_is_left_alone() -> None:
    """A timer already armed (pytest-timeout's, say) keeps its deadline across runs."""
    import signal

    from conformance._hang import limited
    from simulator import DefaultChooser, simulate

    spec = load_scenario("small")
    run = limited(lambda chooser: simulate(spec, load_engine("reference").factory(), chooser), 5)
    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, _frame: fired.append(signum))
    try:
        signal.setitimer(signal.ITIMER_REAL, 30)
        run(DefaultChooser())
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 25 < left <= 30
        signal.setitimer(signal.ITIMER_REAL, 0.2)  # sooner than the limit: stays theirs
        run(DefaultChooser())
        time.sleep(0.5)
        assert fired == [signal.SIGALRM]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_the_watchdog_tells_its_own_interrupt_from_a_real_ctrl_c() -> None:
    """Windows' watchdog raises SIGINT: its own becomes ``Blocked`` (a hang, even in
    ``time.sleep``), a real Ctrl-C meanwhile stays a ``KeyboardInterrupt``."""
    import os
    import signal

    from conformance import _hang

    before = signal.getsignal(signal.SIGINT)
    started = time.monotonic()
    with pytest.raises(_hang.Blocked), _hang._watchdog(0.3):
        time.sleep(30)
    assert time.monotonic() - started < 5

    def ctrl_c() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)

    with pytest.raises(KeyboardInterrupt), _hang._watchdog(30):
        ctrl_c()
    assert signal.getsignal(signal.SIGINT) is before
