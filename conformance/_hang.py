"""A wall-clock limit per schedule, so an engine that blocks in real time ends as ``hang``.

The engine runs in-process, one effect per ``send``: a flow that calls
``time.sleep(3600)`` or spins in ``while True: pass`` never yields, and no
simulated clock can step past it.  On POSIX each run arms a ``SIGALRM``
timer in the main thread (a worker process's, or the command's own); its
handler raises ``Blocked`` wherever that thread is, which is in the user's
code, so its frame names the file and line.  Windows has no ``SIGALRM``: a
watchdog thread raises ``SIGINT`` when the time is up, whose C handler wakes
a main thread blocked in ``time.sleep`` (checked under Wine), and the Python
handler raises ``Blocked`` as the timer's does; a real Ctrl-C meanwhile is
still a ``KeyboardInterrupt``.  ``Blocked`` and ``HangError`` are
``BaseException``s: the flow runner and the searches take an ``Exception``
for the engine's own failure and must let these through.  In a thread that
is not the main one, runs are not limited.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType

from simulator import Chooser, RunResult, Schedule, StepView, default_choice

__all__ = [
    "DEFAULT_HANG_AFTER",
    "Hang",
    "HangError",
    "can_limit",
    "limited",
]

#: seconds one schedule may take before its run is called a hang; a run takes milliseconds
DEFAULT_HANG_AFTER = 5.0


@dataclass(frozen=True, slots=True)
class Hang:
    """A run stopped at the limit: whose step did not end, where, and how to get there."""

    agent: str  # the agent whose step was running ("" before the first step)
    step: int
    where: str  # file:line of the user's code that was running, or ""
    seconds: float
    schedule: Schedule  # replays the run up to the step that blocked
    runs: int = 1  # schedules run, this one included (a search's count)

    def __str__(self) -> str:
        who = f"{self.agent}'s flow" if self.agent else "the engine"
        at = f" ({self.where})" if self.where else ""
        return f"hang: {who} ran more than {self.seconds:g} s of real time at step {self.step}{at}"


class Blocked(BaseException):
    """The timer fired: raised in the main thread, wherever it was."""

    def __init__(self, frame: FrameType | None) -> None:
        super().__init__()
        self.where = _location(frame)
        self.agent, self.step = _running(frame)


class HangError(BaseException):
    """A run was stopped at the limit; ``hang`` says where."""

    def __init__(self, hang: Hang) -> None:
        super().__init__(str(hang))
        self.hang = hang


class _Recording:
    """A chooser that remembers what it chose, to replay a run that never returned."""

    def __init__(self, inner: Chooser) -> None:
        self.inner = inner
        self.chosen: list[str] = []
        self.defaults: list[bool] = []

    def choose(self, view: StepView) -> str:
        choice = self.inner.choose(view)
        self.chosen.append(choice)
        self.defaults.append(choice == default_choice(view.runnable, view.last))
        return choice

    def schedule(self) -> Schedule:
        """The chosen steps up to the last one off the default order (the rest follows it)."""
        ends = [index + 1 for index, default in enumerate(self.defaults) if not default]
        return Schedule(tuple(self.chosen[: ends[-1] if ends else 0]))


#: use the watchdog thread rather than ``SIGALRM``: where there is none (Windows)
WATCHDOG = not hasattr(signal, "setitimer")


def can_limit() -> bool:
    """A timer can interrupt this thread: the main thread (``SIGALRM`` or the watchdog)."""
    return threading.current_thread() is threading.main_thread()


def _location(frame: FrameType | None) -> str:
    """The innermost frame outside tokenrace and the standard library, as ``file:line``."""
    from ._validate import is_ours  # _validate checks engines with this module's limit

    while frame is not None:
        if not is_ours(frame.f_code.co_filename):
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return ""


def _running(frame: FrameType | None) -> tuple[str, int | None]:
    """The agent and step the simulation was at, read off its frames (``""``, None if none).

    The chooser alone cannot tell: a flow starts (and may block) while the
    clock advances to an agent's turn, before anyone is chosen.
    """
    while frame is not None:
        if frame.f_code.co_filename.endswith(("_kernel.py", "_agent.py")):
            agent = frame.f_locals.get("agent")
            step = getattr(frame.f_locals.get("self"), "step", None)
            name = getattr(agent, "name", None)
            if isinstance(name, str) and isinstance(step, int):
                return name, step
        frame = frame.f_back
    return "", None


@contextlib.contextmanager
def _watchdog(seconds: float) -> Iterator[None]:
    """``Blocked`` in the main thread after ``seconds``, by a thread that sends ``SIGINT``."""
    fired, done = threading.Event(), threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def on_interrupt(signum: int, frame: FrameType | None) -> None:
        if fired.is_set():
            raise Blocked(frame)
        if callable(previous):  # a real Ctrl-C: what it did before
            previous(signum, frame)
        else:
            raise KeyboardInterrupt

    def watch() -> None:
        if done.wait(seconds):
            return
        fired.set()
        if hasattr(signal, "pthread_kill"):  # POSIX: to the main thread, not this one
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
        else:  # Windows: the C handler sets the event a sleeping main thread waits on
            signal.raise_signal(signal.SIGINT)

    signal.signal(signal.SIGINT, on_interrupt)
    watcher = threading.Thread(target=watch, name="tokenrace-hang-watchdog", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
        if fired.is_set():  # it fired as the run ended: let the handler see it here
            time.sleep(0.01)
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _timer(seconds: float) -> Iterator[None]:
    if sys.platform == "win32" or WATCHDOG:
        with _watchdog(seconds):
            yield
        return
    if sys.platform == "win32":  # for mypy: what follows is POSIX only
        return

    def on_alarm(_signum: int, frame: FrameType | None) -> None:
        raise Blocked(frame)

    outer, _ = signal.getitimer(signal.ITIMER_REAL)
    if 0 < outer <= seconds:  # someone's timer (pytest-timeout, say) fires first: theirs
        yield
        return
    previous = signal.signal(signal.SIGALRM, on_alarm)
    started = time.monotonic()
    _, interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer > 0:  # give a later outer timer back what it had left
            left = max(outer - (time.monotonic() - started), 0.001)
            signal.setitimer(signal.ITIMER_REAL, left, interval)


def limited(run: Callable[[Chooser], RunResult], seconds: float) -> Callable[[Chooser], RunResult]:
    """``run``, each call stopped with ``HangError`` after ``seconds`` of wall-clock time."""
    if seconds <= 0 or not can_limit():
        return run

    def run_limited(chooser: Chooser) -> RunResult:
        recording = _Recording(chooser)
        try:
            with _timer(seconds):
                return run(recording)
        except Blocked as blocked:
            agent, step = blocked.agent, blocked.step
            if step is None:  # not inside a step: the engine's constructor, say
                step = len(recording.chosen)
            hang = Hang(agent, step, blocked.where, seconds, recording.schedule())
            raise HangError(hang) from None

    return run_limited
