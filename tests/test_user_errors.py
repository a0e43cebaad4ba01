"""Every usage or setup mistake ends with one line on stderr and exit status 2, never a traceback.

Each row is a mistake a new user makes (the ones issue 16 found included), run as
the real command in a fresh directory: a bad flag, a bad scenario file, an engine
that is not one or fails in its own code (the line names the file and line), a
report directory that cannot be written, a ``--command`` that cannot start.  The
bad engines live in ``tests/bad_inputs/bad_engines.py``.  Ctrl-C ends a run with
exit status 130 at once, workers stopped and no report written.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BAD_INPUTS = Path(__file__).parent / "bad_inputs"
HEAD = '[scenario]\nname = "mine"\n[world]\nagents = ["atlas", "nova"]\n'

#: scenario files written into the run's directory, by name
FILES: dict[str, bytes] = {
    "ok.toml": HEAD.encode(),
    "latin1.toml": b'[scenario]\nname = "caf\xe9"\n[world]\nagents = ["a"]\n',
    "typo.toml": (HEAD + 'fualts = ["drop"]\n').encode(),
    "negative.toml": (HEAD + "[search]\nexamples = -5\n").encode(),
    "table.toml": (HEAD + "[serach]\nexamples = 5\n").encode(),
    "override.toml": (HEAD + "policy_overrides = { reuse_windw = 3 }\n").encode(),
    "syntax.toml": b'[scenario\nname = "x"\n',
    "noname.toml": b'[world]\nagents = ["a"]\n',
    "noagents.toml": b'[scenario]\nname = "x"\n[world]\nagents = []\n',
    "steps.toml": (HEAD + "max_steps = 0\n").encode(),
    "layout.toml": (HEAD + 'layout = "spiral"\n').encode(),
    "strategy.toml": (HEAD + '[search]\nstrategy = "guess"\n').encode(),
    "a_file": b"not a directory\n",
    "broken_syntax.py": b"def access_token(ctx)\n    yield\n",
}

CHECK = ["check", "--examples", "2", "--engine"]

#: (id, argv after ``tokenrace``, a fragment the one line must hold)
CASES: list[tuple[str, list[str], str]] = [
    # engines: not importable, not an engine, or failing in the user's own code
    ("ctor-raises", [*CHECK, "bad_engines:ConstructorRaises"], "bad_engines.py:20"),
    ("ctor-needs-args", [*CHECK, "bad_engines:NeedsArguments"], "missing 1 required"),
    ("returns-string", [*CHECK, "bad_engines:ReturnsString"], "returned str, not a flow"),
    ("no-ctx-argument", [*CHECK, "bad_engines:WrongSignature"], "must take one argument"),
    ("two-arguments", [*CHECK, "bad_engines:TooManyArguments"], "must take one argument"),
    ("yields-non-effect", [*CHECK, "bad_engines:YieldsNonEffect"], "bad_engines.py:55"),
    ("raises-in-flow", [*CHECK, "bad_engines:RaisesInFlow"], "bad_engines.py:63"),
    ("attr-not-callable", [*CHECK, "bad_engines:AccessTokenNotCallable"], "not an engine"),
    ("no-access-token", [*CHECK, "bad_engines:NoAccessToken"], "not an engine"),
    ("async-engine", [*CHECK, "bad_engines:AsyncEngine"], "is async"),
    ("subclass-ctor-raises", [*CHECK, "bad_engines:SubclassRaises"], "bad_engines.py:92"),
    ("plain-function", [*CHECK, "bad_engines:plain_function"], "not an engine"),
    ("an-int", [*CHECK, "bad_engines:not_an_engine"], "not an engine"),
    ("no-such-attribute", [*CHECK, "bad_engines:nosuch"], "no attribute 'nosuch'"),
    ("import-fails", [*CHECK, "import_fails:Engine"], "import_fails.py:3"),
    ("raises-on-import", [*CHECK, "raises_on_import:Engine"], "raises_on_import.py:3"),
    ("syntax-error", [*CHECK, "broken_syntax:Engine"], "broken_syntax.py:1"),
    ("no-such-module", [*CHECK, "no_such_module_here:Engine"], "no such module"),
    ("unknown-builtin", [*CHECK, "refrence"], "unknown engine"),
    ("empty-module", [*CHECK, ":Engine"], "module:attribute"),
    ("unknown-lock", [*CHECK, "reference[lock=nosuch]"], "nosuch"),
    ("run-bad-engine", ["run", "--engine", "bad_engines:YieldsNonEffect"], "not an effect"),
    ("replay-bad-engine", ["replay", "default", "--engine", "bad_engines:WrongSignature"], "ctx"),
    ("matrix-bad-engine", ["matrix", "--engine", "bad_engines:ConstructorRaises"], "raised"),
    (
        "reproduce-bad-engine",
        ["reproduce", "ok.toml", "--engine", "bad_engines:ReturnsString"],
        "not a flow",
    ),
    # scenario files
    ("not-utf8", ["reproduce", "latin1.toml"], "not UTF-8"),
    ("typo-key", ["reproduce", "typo.toml"], "did you mean 'faults'"),
    ("negative-examples", ["reproduce", "negative.toml"], "at least 1"),
    ("typo-table", ["reproduce", "table.toml"], "did you mean 'search'"),
    ("typo-override", ["reproduce", "override.toml"], "did you mean 'reuse_window'"),
    ("toml-syntax", ["reproduce", "syntax.toml"], "not valid TOML"),
    ("missing-file", ["reproduce", "nosuch.toml"], "cannot read"),
    ("no-name", ["reproduce", "noname.toml"], "name"),
    ("no-agents", ["reproduce", "noagents.toml"], "agents"),
    ("zero-steps", ["reproduce", "steps.toml"], "max_steps"),
    ("unknown-layout", ["reproduce", "layout.toml"], "spiral"),
    ("unknown-strategy", ["reproduce", "strategy.toml"], "guess"),
    ("check-typo-file", ["check", "--engine", "reference", "--scenario", "typo.toml"], "fualts"),
    # report directories, checked before the search
    ("report-dir-is-file", ["run", "--report-dir", "a_file"], "not a directory"),
    ("report-dir-under-file", ["run", "--report-dir", "a_file/sub"], "a_file/sub"),
    ("check-report-dir-file", [*CHECK, "reference", "--report-dir", "a_file"], "a_file"),
    # --command
    ("empty-command", ["check", "--command", ""], "empty"),
    ("missing-binary", ["check", "--command", "no_such_program_xyz --x"], "no_such_program"),
    ("unclosed-quote", ["check", "--command", "node 'x.mjs"], "quot"),
    ("duplicate-agents", ["check", "--command", "node x", "--agents", "a,a"], "distinct"),
    # flags
    ("examples-zero", ["run", "--examples", "0"], "at least 1"),
    ("examples-word", ["run", "--examples", "many"], "whole number"),
    ("unknown-flag", ["run", "--bogus"], "--bogus"),
    ("unknown-command", ["frobnicate"], "frobnicate"),
    ("unknown-scenario", ["run", "--scenario", "nosuch"], "nosuch"),
    ("bad-schedule", ["replay", "atlas*x !!"], "schedule"),
    ("replay-unknown-scenario", ["replay", "default", "--scenario", "nosuch"], "nosuch"),
    ("matrix-agents-word", ["matrix", "--agents", "two"], "--agents"),
    ("matrix-unknown-os", ["matrix", "--os", "beos"], "beos"),
    ("check-nothing", ["check"], "--engine"),
    ("settle-too-long", ["check", "--command", "node x", "--settle", "99"], "at most 30"),
    ("jobs-zero", ["run", "--jobs", "0"], "at least 1"),
]
if sys.platform == "linux":
    CASES.append(("report-dir-in-proc", ["run", "--report-dir", "/proc/nosuch/x"], "/proc"))


def _environment(directory: Path) -> dict[str, str]:
    paths = [str(BAD_INPUTS), str(directory), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), "COLUMNS": "200"}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    for name, data in FILES.items():
        (tmp_path / name).write_bytes(data)
    return tmp_path


@pytest.mark.parametrize(("argv", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_mistake_is_one_line_and_exit_2(workdir: Path, argv: list[str], fragment: str) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "conformance._cli", *argv],
        cwd=workdir,
        env=_environment(workdir),
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("tokenrace"), lines[0]
    assert fragment in lines[0], lines[0]
    assert time.monotonic() - started < 10
    assert not (workdir / "reports").exists()  # nothing searched, nothing reported


def test_the_table_is_long_enough() -> None:
    assert len(CASES) >= 40
    assert len({case[0] for case in CASES}) == len(CASES)


def test_plugin_refuses_an_unknown_scenario(workdir: Path) -> None:
    """pytest's own usage status (4), with pytest's one ``ERROR:`` line, and nothing run."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly"]
        + ["--tokenrace-engine", "reference", "--tokenrace-scenario", "hedline"],
        cwd=workdir,
        env=_environment(workdir),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stdout + done.stderr
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, (done.stdout, done.stderr)
    assert lines == [
        "ERROR: --tokenrace-scenario hedline: no such scenario; did you mean 'headline'?"
    ]


@pytest.mark.slow  # timing: a signal raced against a search (docs/testing.md)
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX: SIGINT to one process")
def test_ctrl_c_stops_a_run_at_once(workdir: Path) -> None:
    """SIGINT to the main process alone: exit 130 within a second, one line, no report."""
    process = subprocess.Popen(
        [sys.executable, "-m", "conformance._cli", "run", "--jobs", "2"],
        # Ctrl-C as a terminal sends it, whatever the test runner's own worker ignores
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        cwd=workdir,
        env=_environment(workdir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    process.stdout.readline()  # "tokenrace run: N cells ...": the search has begun
    time.sleep(1.0)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    sent = time.monotonic()
    out, err = process.communicate(timeout=10)
    assert time.monotonic() - sent < 2.0
    assert process.returncode == 130, (out, err)
    assert [line for line in err.splitlines() if line.strip()] == [
        "tokenrace: interrupted; no report written"
    ]
    assert "Traceback" not in out + err
    assert not (workdir / "reports" / "latest" / "results.json").exists()


def _shipped_engines() -> list[str]:
    """Every engine the project ships, spelled module:attribute as a user's would be."""
    import unusual_engines

    from conformance._engines import BUILTIN_ENGINES

    specs = [
        f"unusual_engines:{name}"
        for name, value in vars(unusual_engines).items()
        if isinstance(value, type)
        and value.__module__ == "unusual_engines"
        and hasattr(value, "access_token")
    ]
    for entry in BUILTIN_ENGINES.values():
        factory = entry.factory
        specs.append(f"{factory.__module__}:{factory.__qualname__}")
    return specs


@pytest.mark.parametrize("spec", _shipped_engines())
def test_no_shipped_engine_is_refused(spec: str) -> None:
    """The check before the search refuses mistakes, not engines that only need their world
    (the broker engine waits for a broker the one-agent run does not have)."""
    from conformance._engines import load_engine

    assert load_engine(spec).name == spec
