"""Setup checked before any search: a user's engine, a report directory, a command line.

A mistake found here is a ``ConformanceError`` with one line that names the
thing, what is wrong and, for the user's own code, the file and line, so the
CLI can end with exit status 2 instead of a traceback halfway through a
search.  An engine is checked by what it is (constructible, an
``access_token(ctx)`` generator) and by one run alone: one agent, no race,
the default order.  An engine that cannot get a token then is not worth
racing, and a flow that yields a non-effect shows up at once.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import inspect
import os
import shlex
import shutil
import sysconfig
import tempfile
import traceback
from collections.abc import Callable, Generator, Iterable
from pathlib import Path
from typing import Any, NoReturn, get_args

from fake_oauth_server import agent_path, redact
from refresh_engine import Effect, InterpreterMismatch, RefreshEngineError
from simulator import AgentSpec, ReplayChooser, Schedule, WorldSpec, simulate

from ._errors import EXIT_USAGE, ConformanceError, EngineLoadError
from ._hang import DEFAULT_HANG_AFTER, HangError, limited
from ._release_faults import ReleaseFault, check_hold, parse_release_fault

#: tokenrace's packages and the standard library: a frame outside them is the user's
_OURS = tuple(
    str(Path(__file__).resolve().parent.parent / package) + os.sep
    for package in ("conformance", "simulator", "refresh_engine", "fake_oauth_server")
) + (str(Path(sysconfig.get_paths()["stdlib"]).resolve()) + os.sep,)
_EFFECTS = get_args(Effect)


def is_ours(filename: str) -> bool:
    """``filename`` is tokenrace's or the standard library's, not the user's."""
    return str(Path(filename).resolve()).startswith(_OURS)


def where(error: BaseException) -> str:
    """``file:line`` of the innermost frame of ``error`` in the user's code, or ``""``."""
    if isinstance(error, SyntaxError) and error.filename:
        return f"{error.filename}:{error.lineno}"
    frames = traceback.extract_tb(error.__traceback__)
    for frame in reversed(frames):
        if not is_ours(frame.filename):
            return f"{frame.filename}:{frame.lineno}"
    return ""


def one_line(text: str) -> str:
    """``text`` with its line breaks and runs of spaces folded into single spaces."""
    return " ".join(text.split())


def describe(error: BaseException) -> str:
    """``Type: message (at file:line)``, on one line."""
    text = redact(one_line(str(error))) or "(no message)"
    location = where(error)
    return f"{type(error).__name__}: {text}" + (f" (at {location})" if location else "")


def construct(spec: str, factory: Callable[[], Any]) -> Any:
    """The engine object, or a one-line error naming what its constructor raised."""
    try:
        return factory()
    except Exception as exc:
        raise EngineLoadError(f"engine {spec}: constructing it raised {describe(exc)}") from None


def check_engine(
    spec: str, factory: Callable[[], Any], *, hang_after: float = DEFAULT_HANG_AFTER
) -> None:
    """Refuse what is not an engine, and an engine that fails or hangs with one agent and no
    race (``hang_after``: the run's wall-clock limit)."""
    engine = construct(spec, factory)
    method = getattr(engine, "access_token", None)
    if not callable(method):
        raise EngineLoadError(
            f"{spec} is not an engine: it needs an access_token(ctx) method returning a flow"
        )
    at = _defined_at(method)
    if inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method):
        raise EngineLoadError(
            f"engine {spec}: access_token{at} is async; it must be a generator "
            "that yields effects (def with yield, see README 'Checking your own engine')"
        )
    try:
        inspect.signature(method).bind(None)
    except TypeError:
        raise EngineLoadError(
            f"engine {spec}: access_token{at} must take one argument, ctx; "
            f"it is access_token{_signature(method)}"
        ) from None
    except ValueError:  # no signature to read (a builtin): the run below will tell
        pass
    _run_alone(spec, factory, at, hang_after)


def _run_alone(spec: str, factory: Callable[[], Any], at: str, hang_after: float) -> None:
    failures: list[str] = []
    raised: list[BaseException] = []

    class Watched:
        """The user's engine, each flow checked as it runs."""

        def __init__(self) -> None:
            self.inner = factory()

        def access_token(self, ctx: Any) -> Generator[Any, Any, Any]:
            flow = self.inner.access_token(ctx)
            if not inspect.isgenerator(flow):
                failures.append(
                    f"access_token{at} returned {type(flow).__name__}, not a flow: make it a "
                    "generator that yields effects and returns the token"
                )
                return ""
            return (yield from _checked(flow, failures, raised))

    world = WorldSpec(agents=(AgentSpec("atlas", (3600.0,)),))
    run = limited(lambda chooser: simulate(world, Watched(), chooser), hang_after)
    try:
        result = run(ReplayChooser(Schedule.parse("default")))
    except HangError as error:
        hang = str(error.hang).removeprefix("hang: ")
        raise EngineLoadError(
            f"engine {spec} hangs alone, one agent and no race: {hang} "
            "(blocking in real time, time.sleep or a busy loop? --hang-after sets the limit)"
        ) from None
    except Exception as exc:
        if not failures:
            failures.append(f"running it raised {describe(exc)}")
        result = None
    if failures:
        raise EngineLoadError(f"engine {spec}: {failures[0]}")
    assert result is not None
    failed = any(event.error_type and not event.stranded for event in result.events)
    if failed and raised and _is_mistake(raised[-1]):
        raise EngineLoadError(
            f"engine {spec} fails alone, one agent and no race: {describe(raised[-1])}"
        )


def _is_mistake(error: BaseException) -> bool:
    """A programming error (KeyError, TypeError, ...), not an outcome an engine may report.

    A refresh that fails or a file the world lacks can be right for an engine
    in the one-agent world (a broker engine waits for a broker that is not
    there); a mistake in the code is wrong in every world.
    """
    if isinstance(error, InterpreterMismatch):  # an outcome read as the wrong kind
        return True
    return not isinstance(error, RefreshEngineError | OSError | TimeoutError)


def _checked(
    flow: Generator[Any, Any, Any], failures: list[str], raised: list[BaseException]
) -> Generator[Any, Any, Any]:
    """``yield from flow``, stopping at the first non-effect and keeping what a flow raised."""
    outcome: Any = None
    thrown: BaseException | None = None
    while True:
        try:
            effect = flow.send(outcome) if thrown is None else flow.throw(thrown)
        except StopIteration as stop:
            return stop.value
        except Exception as exc:
            raised.append(exc)
            raise
        if not isinstance(effect, _EFFECTS):
            frame = getattr(flow, "gi_frame", None)
            line = f" (at {frame.f_code.co_filename}:{frame.f_lineno})" if frame else ""
            failures.append(
                f"its flow yielded {type(effect).__name__} {effect!r:.60}, which is not an "
                f"effect{line}: yield the effects of refresh_engine (or ops.*)"
            )
            flow.close()
            raise ConformanceError(failures[-1])
        thrown = None
        try:
            outcome = yield effect
        except BaseException as exc:  # an outcome the world threw in: pass it on
            thrown, outcome = exc, None


def _defined_at(method: Any) -> str:
    code = getattr(getattr(method, "__func__", method), "__code__", None)
    return f" ({code.co_filename}:{code.co_firstlineno})" if code is not None else ""


def _signature(method: Any) -> str:
    try:
        return str(inspect.signature(method))
    except (TypeError, ValueError):
        return "(?)"


def check_report_dir(directory: Path) -> None:
    """Prove ``directory`` can be created and written, so a search never ends unable to report.

    Directories made for the proof are removed again: a mistake found later
    (a bad engine, say) leaves nothing behind.
    """
    if directory.exists() and not directory.is_dir():
        raise ConformanceError(f"--report-dir {directory}: exists and is not a directory")
    missing = [parent for parent in (directory, *directory.parents) if not parent.exists()]
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConformanceError(f"--report-dir {directory}: cannot write there: {reason}") from None
    finally:
        for made in missing:  # deepest first
            with contextlib.suppress(OSError):
                made.rmdir()


def check_names(option: str, wanted: Iterable[str], known: Iterable[str]) -> None:
    """Each name in ``wanted`` is a known one; else one line with the nearest, or them all."""
    names = sorted(set(known))
    for name in wanted:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"one of {', '.join(names)}"
            raise ConformanceError(f"{option} {name}: unknown; {hint}")


def agent_names(text: str, option: str) -> tuple[str, ...]:
    """Distinct, comma-separated agent names, each usable in its token endpoint's path."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names or len(set(names)) != len(names):
        raise ConformanceError(f"{option} {text!r}: give distinct names, comma-separated")
    for name in names:
        try:
            agent_path(name, "/")
        except ValueError:
            raise ConformanceError(
                f"{option} {text!r}: {name!r} is not a name; use letters, digits, '_', '.', '-'"
            ) from None
    return names


def command_argv(command: str) -> str | list[str]:
    """What ``--command`` starts, checked: POSIX words as a shell splits them, a program found."""
    try:
        words = shlex.split(command, posix=os.name == "posix")
    except ValueError as exc:
        raise ConformanceError(f"--command {command!r}: cannot split it: {exc}") from None
    if not words:
        raise ConformanceError("--command is empty: give the program to start, e.g. 'node x.mjs'")
    program = words[0]
    if shutil.which(program) is None:
        what = "no such file" if os.sep in program or "/" in program else "not found on PATH"
        if os.path.exists(program) and not os.path.isdir(program):
            what = "not executable"
        raise ConformanceError(f"--command: cannot start {program!r}: {what}")
    # Windows: the command line itself, which CreateProcess splits by the C runtime's rules
    return words if os.name == "posix" else command


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage is a ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def release_fault(text: str) -> ReleaseFault:
    """``--fault KIND[:VALUE]@N`` (see ``_release_faults``)."""
    try:
        return parse_release_fault(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def hold_seconds(text: str) -> float:
    """``--hold SECONDS``: 0 to ``MAX_HOLD``."""
    try:
        return check_hold(float(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            str(exc) if "hold" in str(exc) else f"{text!r} is not a number of seconds"
        ) from None


def hang_seconds(text: str) -> float:
    """``--hang-after SECONDS``: a schedule's wall-clock limit; 0 for none."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError("must be a number of seconds (0: no limit)")
    return value


def settle_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 30:  # the server answers a wait for held requests for 30 s at most
        raise argparse.ArgumentTypeError("must be more than 0 and at most 30 seconds")
    return value
