"""The host's side of the probe: start ``_wine_probe`` under Wine or natively, and talk to it.

A test drives one or more live probe processes with the same calls whatever
their OS: ``effect`` does one ``refresh_engine`` effect for real, ``exec``
runs a snippet (an engine's whole flow through ``RealWorld``), and the
probe's POSTs come back here to be answered by a native fake server.
Processes stay alive across requests, since a Wine start costs most of a second.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import selectors
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refresh_engine import Effect, Outcome
from simulator import SimulatorError

from ._wine import CHECKOUT, WinePython, windows_path
from ._wine_probe import MARK, decode, encode

#: answers the probe's POSTs: ``(url, body, headers) -> (status, body)``
HttpHandler = Callable[[str, bytes, dict[str, str]], tuple[int, bytes]]
PROBE_SCRIPT = Path(__file__).with_name("_wine_probe.py")


@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    """One effect done for real: its outcome, the errno's name on that OS, the time it took."""

    outcome: Outcome
    errno_name: str | None
    seconds: float


class ProbeError(SimulatorError):
    """The probe failed: code it ran raised (``type_name`` names the class), or it died."""

    def __init__(self, message: str, type_name: str = "", trace: str = "") -> None:
        super().__init__(f"{type_name}: {message}\n{trace}" if type_name else message)
        self.type_name = type_name


class Probe:
    """A live probe process (``_wine_probe``): Windows CPython under Wine, or native.

    ``path()`` names a host path as the probe's OS does, so one test drives
    both.  Requests are answered in order; ``send`` and ``receive`` apart let
    a test leave one probe waiting (on a lock) while it works another.
    """

    def __init__(self, command: Sequence[str], env: dict[str, str], *, windows: bool) -> None:
        self.windows = windows
        self.log: list[str] = []
        self._process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert self._process.stdout is not None
        self._fd = self._process.stdout.fileno()
        self._buffer = b""
        # Windows' select takes sockets only: there a thread reads the pipe
        self._chunks: queue.SimpleQueue[bytes] | None = None
        if sys.platform == "win32":
            self._chunks = queue.SimpleQueue()
            threading.Thread(
                target=self._pump, name=f"probe-{self._process.pid}", daemon=True
            ).start()
        try:
            hello = self.receive(timeout=120.0)
        except BaseException:
            self.kill()  # a probe that never said hello leaves no process or pipe behind
            raise
        self.platform: str = hello["platform"]
        self.pid: int = hello["pid"]

    @classmethod
    def wine(cls, wine: WinePython) -> Probe:
        return cls(wine.command(windows_path(PROBE_SCRIPT)), wine.env(), windows=True)

    @classmethod
    def native(cls) -> Probe:
        """The probe in this machine's own Python, with this checkout's packages."""
        paths = [str(CHECKOUT), os.environ.get("PYTHONPATH", "")]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, paths)))
        return cls([sys.executable, str(PROBE_SCRIPT)], env, windows=False)

    def path(self, path: Path | str) -> str:
        return windows_path(path, "/") if self.windows else str(path)

    def send(self, request: dict[str, Any]) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(request).encode() + b"\n")
        self._process.stdin.flush()

    def receive(self, *, timeout: float = 60.0, http: HttpHandler | None = None) -> dict[str, Any]:
        """The next answer; ``http`` serves the probe's POSTs meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            line = self._line(deadline)
            if not line.startswith(MARK):
                self.log.append(line.decode(errors="replace").rstrip())
                continue
            message: dict[str, Any] = json.loads(line[len(MARK) :])
            if message["op"] != "http":
                return message
            if http is None:
                raise ProbeError(f"the probe POSTed to {message['url']} and no handler was given")
            status, body = http(message["url"], decode(message["body"]), message["headers"])
            self.send({"status": status, "body": encode(body)})

    def _line(self, deadline: float) -> bytes:
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if self._process.poll() is not None and not self._ready(0):
                raise ProbeError(f"the probe exited ({self._process.returncode}):\n" + self.tail())
            if left <= 0:
                raise TimeoutError("the probe did not answer in time")
            chunk = self._next_chunk(min(left, 0.1))
            if chunk is None:
                continue
            if not chunk and self._process.wait() is not None:
                raise ProbeError("the probe closed its output:\n" + self.tail())
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _ready(self, timeout: float) -> bool:
        if self._chunks is None:
            return _readable(self._fd, timeout)
        return not self._chunks.empty()

    def _next_chunk(self, timeout: float) -> bytes | None:
        """What the probe wrote next (b"" at its end), or None if nothing came in time."""
        if self._chunks is None:
            return os.read(self._fd, 65536) if _readable(self._fd, timeout) else None
        try:
            return self._chunks.get(timeout=timeout)
        except queue.Empty:
            return None

    def _pump(self) -> None:
        """Windows: move the pipe's output to the queue until its end."""
        assert self._chunks is not None
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except OSError:
                chunk = b""
            self._chunks.put(chunk)
            if not chunk:
                assert self._process.stdout is not None
                self._process.stdout.close()
                return

    def tail(self) -> str:
        return "\n".join(self.log[-30:])

    def effect(self, effect: Effect, *, timeout: float = 60.0) -> ProbeOutcome:
        """Do ``effect`` with ``RealWorld.perform`` in the probe."""
        self.send({"op": "effect", "effect": encode(effect)})
        reply = self._reply(self.receive(timeout=timeout))
        return ProbeOutcome(decode(reply["outcome"]), reply["errno_name"], reply["seconds"])

    def exec(self, code: str, *, timeout: float = 60.0, http: HttpHandler | None = None) -> Any:
        """Run ``code`` in the probe; the value it left in ``result``."""
        self.send({"op": "exec", "code": code})
        return self.result(timeout=timeout, http=http)

    def result(self, *, timeout: float = 60.0, http: HttpHandler | None = None) -> Any:
        """The answer to an ``exec`` sent earlier with ``send``."""
        return decode(self._reply(self.receive(timeout=timeout, http=http))["value"])

    @staticmethod
    def _reply(message: dict[str, Any]) -> dict[str, Any]:
        if "error" in message:
            error = message["error"]
            raise ProbeError(error["message"], error["type"], error["traceback"])
        return message

    def close(self) -> None:
        """Ask it to quit, then wait; a probe stuck in a call is killed."""
        with contextlib.suppress(OSError, ValueError):
            self.send({"op": "quit"})
        self._close_pipes()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def kill(self) -> None:
        """End it at once (TerminateProcess under Wine): the OS drops its handles and locks."""
        self._process.kill()
        self._process.wait()
        self._close_pipes()

    def _close_pipes(self) -> None:
        # on Windows the reading thread owns stdout, and ends at the pipe's end
        pipes = (
            (self._process.stdin,)
            if self._chunks is not None
            else (self._process.stdin, self._process.stdout)
        )
        for pipe in pipes:
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _readable(fd: int, timeout: float) -> bool:
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        return bool(selector.select(timeout))
