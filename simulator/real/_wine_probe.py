"""The probe: a long-lived worker that does effects for real, run by any CPython.

Run as a script (``python _wine_probe.py``) it reads one JSON request per
line on stdin and answers each with one line on stdout that starts with
``MARK``; everything else it prints is diagnostics.  It imports only the
standard library and ``refresh_engine``, so the same file serves the Windows
CPython under Wine (where ``_wine`` puts ``refresh_engine`` on its path) and
a native interpreter: one test choreography, two operating systems.

Requests:

- ``{"op": "effect", "effect": ...}``: ``RealWorld.perform`` on the effect;
  the answer holds the outcome, the errno's symbolic name on this OS, and the
  seconds the call took (a lock that waits shows here).
- ``{"op": "exec", "code": ...}``: run Python in a namespace kept across
  requests (``world``, ``http``, ``load_file``, ``refresh_engine``); the answer holds
  the variable ``result``, or the exception's type, message and traceback.
- ``{"op": "quit"}``.

While a request runs, ``world``'s HTTP client asks the host: it writes an
``http`` line and reads the answer from stdin, so the fake server stays native.
Values cross as JSON: the effect and outcome dataclasses of ``refresh_engine``
by name, enums by value, bytes in base64 (``encode``/``decode``).
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import errno
import importlib.util
import json
import os
import sys
import time
import traceback
from types import ModuleType
from typing import IO, Any

import refresh_engine
from refresh_engine import Effect, Outcome, RealWorld

MARK = b"@@tokenrace-probe "


def encode(value: Any) -> Any:
    """``value`` as JSON data: dataclasses and enums of ``refresh_engine`` by name."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"$": type(value).__name__, **fields}
    if isinstance(value, enum.Enum):
        return {"$enum": type(value).__name__, "value": value.value}
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, tuple):  # a dataclass field's tuple comes back a tuple
        return {"$tuple": [encode(item) for item in value]}
    if isinstance(value, list):
        return [encode(item) for item in value]
    if isinstance(value, dict):
        return {str(key): encode(item) for key, item in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot send {type(value).__name__} across the probe's pipe")


def decode(data: Any) -> Any:
    """The inverse of ``encode``; only names ``refresh_engine`` exports are built."""
    if isinstance(data, list):
        return [decode(item) for item in data]
    if not isinstance(data, dict):
        return data
    if "$bytes" in data:
        return base64.b64decode(data["$bytes"])
    if "$tuple" in data:
        return tuple(decode(item) for item in data["$tuple"])
    if "$enum" in data:
        return _exported(data["$enum"])(data["value"])
    if "$" in data:
        fields = {key: decode(item) for key, item in data.items() if key != "$"}
        return _exported(data["$"])(**fields)
    return {key: decode(item) for key, item in data.items()}


def _exported(name: str) -> Any:
    if name not in refresh_engine.__all__:
        raise ValueError(f"refresh_engine exports no {name!r}")
    return getattr(refresh_engine, name)


def errno_name(number: int | None) -> str | None:
    """``EACCES`` for 13: errno numbers differ between Windows and Linux, names do not."""
    if number is None:
        return None
    return errno.errorcode.get(number, str(number))


def load_file(path: str, name: str) -> ModuleType:
    """Import one module file by path (a corpus of engines) without its package."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class _Channel:
    """The probe's side of the pipe: marked lines out, plain JSON lines in."""

    def __init__(self, stdin: IO[bytes], stdout: IO[bytes]) -> None:
        self._in = stdin
        self._out = stdout

    def send(self, message: dict[str, Any]) -> None:
        self._out.write(MARK + json.dumps(message).encode() + b"\n")
        self._out.flush()

    def receive(self) -> dict[str, Any] | None:
        line = self._in.readline()
        if not line:
            return None
        message: dict[str, Any] = json.loads(line)
        return message


@dataclasses.dataclass(frozen=True)
class HostResponse:
    """What ``RealWorld`` reads of an HTTP response."""

    status_code: int
    content: bytes
    #: none: the host's handler answers with a status and a body only
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


class HostHttp:
    """An HTTP client whose every POST is answered by the host, over the pipe."""

    def __init__(self, channel: _Channel) -> None:
        self._channel = channel

    def post(self, url: str, *, content: bytes, headers: dict[str, str]) -> HostResponse:
        self._channel.send({"op": "http", "url": url, "body": encode(content), "headers": headers})
        answer = self._channel.receive()
        if answer is None:
            raise ConnectionError(f"POST {url}: the host went away")
        if "raise" in answer:
            raise {"timeout": TimeoutError}.get(answer["raise"], ConnectionError)(url)
        return HostResponse(int(answer["status"]), decode(answer["body"]))


class RecordingWorld(RealWorld):
    """``RealWorld`` that keeps ``(effect, outcome, seconds)`` for each effect it does."""

    def __init__(self, http: HostHttp) -> None:
        super().__init__(http)  # type: ignore[arg-type]  # duck-typed: only .post is used
        self.http = http
        self.trace: list[tuple[str, str, float]] = []

    def perform(self, effect: Effect) -> Outcome:
        started = time.perf_counter()
        outcome = super().perform(effect)
        seconds = time.perf_counter() - started
        self.trace.append((type(effect).__name__, _describe(outcome), round(seconds, 3)))
        return outcome


def _describe(outcome: Outcome) -> str:
    if isinstance(outcome, refresh_engine.Failed):
        return f"{outcome.exception_type}({errno_name(outcome.errno)}, {outcome.winerror})"
    return type(outcome).__name__


def _answer(request: dict[str, Any], world: RecordingWorld, space: dict[str, Any]) -> Any:
    op = request.get("op")
    if op == "effect":
        effect = decode(request["effect"])
        started = time.perf_counter()
        outcome = RealWorld.perform(world, effect)
        seconds = time.perf_counter() - started
        number = getattr(outcome, "errno", None)
        return {"outcome": encode(outcome), "errno_name": errno_name(number), "seconds": seconds}
    if op == "exec":
        space.pop("result", None)
        try:
            exec(request["code"], space)
        except BaseException as exc:  # the host decides what an error means
            kind = type(exc).__name__
            text = "".join(traceback.format_exception(exc))
            return {"error": {"type": kind, "message": str(exc), "traceback": text}}
        return {"value": encode(space.get("result"))}
    raise ValueError(f"unknown request {op!r}")


def main() -> int:
    """Serve requests until stdin closes or ``quit``; prints go to stderr."""
    channel = _Channel(sys.stdin.buffer, sys.stdout.buffer)
    sys.stdout = sys.stderr  # keep the protocol's stream for marked lines only
    world = RecordingWorld(HostHttp(channel))
    space: dict[str, Any] = {
        "world": world,
        "http": world.http,
        "load_file": load_file,
        "refresh_engine": refresh_engine,
        "encode": encode,
    }
    channel.send(
        {"op": "ready", "platform": sys.platform, "pid": os.getpid(), "version": sys.version}
    )
    while (request := channel.receive()) is not None and request.get("op") != "quit":
        try:
            reply = _answer(request, world, space)
        except Exception as exc:
            reply = {"error": {"type": type(exc).__name__, "message": str(exc), "traceback": ""}}
        channel.send({"op": "reply", **reply})
    return 0


if __name__ == "__main__":
    sys.exit(main())
