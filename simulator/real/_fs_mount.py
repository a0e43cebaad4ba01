"""The harness's side of a scheduled filesystem: mount it, see who waits where, let one through.

``ScheduledMount(backing, mountpoint)`` starts the FUSE process
(``_fs_daemon``) in a session of its own and waits for the mount.  While it
is in place, ``waiting()`` lists the ``FileStep``s at their doors (an
agent's open, read, write, truncate, rename, unlink, fsync, close, mkdir,
rmdir) and ``go(step)`` lets one through and returns what it did
(``ok``, ``120 bytes``, ``EEXIST``).  Leaving the ``with`` block frees
whatever still waits and unmounts; if the harness dies instead, the FUSE
process sees its input end and does the same (and kills the agents it saw),
so no mount is left behind either way.

``fuse_unavailable()`` says in one line why this machine cannot mount one
(no ``/dev/fuse``, no ``fusermount3``, no libfuse, not Linux), or "".
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from simulator import SimulatorError

__all__ = [
    "AGENT_ENV",
    "FileStep",
    "FuseUnavailable",
    "ScheduledMount",
    "StallWatch",
    "fuse_unavailable",
    "in_kernel_wait",
    "mounted",
    "unmount",
]

#: The variable that names an agent's processes (set by the harness, inherited by children).
AGENT_ENV = "TOKENRACE_FS_AGENT"
#: Operations that change what a path holds (or whether it exists).
MUTATING = frozenset(
    {"write", "truncate", "rename", "unlink", "mkdir", "rmdir", "link", "symlink", "flock"}
)
_MOUNT_WAIT = 10.0
#: Where a thread waits (``/proc/…/wchan``) when the kernel holds it behind another's step.
_NAME_WAITS = (
    b"fuse",
    b"request_wait_answer",
    b"path_openat",
    b"open_last_lookups",
    b"lookup",
    b"d_alloc_parallel",
    b"filename_create",
    b"do_unlinkat",
    b"do_renameat",
    b"do_rmdir",
    b"do_mkdirat",
    b"rwsem",
    b"lock_rename",
    b"truncate",
    b"down_write",
    b"down_read",
)


#: Of those, the waits for a FUSE request's answer (held back, or on its way to its door).
_REQUEST_WAITS = (b"fuse", b"request_wait_answer")


class FuseUnavailable(SimulatorError):
    """This machine cannot mount a scheduled filesystem (the message says why)."""


@dataclass(frozen=True, slots=True)
class FileStep:
    """One operation of an agent waiting at its door."""

    number: int  # the FUSE process's count: which waiting operation ``go`` means
    agent: str
    op: str
    path: str  # relative to the mount
    detail: str  # open flags, size@offset, a rename's target

    def describe(self) -> str:
        detail = f" -> {self.detail}" if self.op in ("rename", "link") else f" {self.detail}"
        return f"{self.op} {self.path}{detail if self.detail else ''}"

    @property
    def mutates(self) -> bool:
        if self.op == "open":
            return any(flag in self.detail for flag in ("O_CREAT", "O_TRUNC"))
        return self.op in MUTATING

    def touches(self) -> frozenset[str]:
        """The paths whose content or existence the step depends on or changes."""
        if self.op in ("rename", "link"):
            return frozenset({self.path, self.detail})
        return frozenset({self.path})


def fuse_unavailable() -> str:
    """Why no scheduled filesystem can be mounted here, or "" when one can."""
    if not sys.platform.startswith("linux"):
        return f"--fs needs Linux with FUSE; this is {sys.platform}"
    if not os.path.exists("/dev/fuse"):
        return "--fs needs FUSE: /dev/fuse does not exist (a container without --device /dev/fuse?)"
    if not (shutil.which("fusermount3") or shutil.which("fusermount")):
        return "--fs needs fusermount3 (Debian/Ubuntu: apt-get install fuse3)"
    try:
        import mfusepy  # noqa: F401  (it loads libfuse when imported)
    except (ImportError, OSError) as error:
        return f"--fs needs mfusepy and libfuse (pip install 'tokenrace[fs]'): {error}"
    return ""


def mounted(mountpoint: Path) -> bool:
    """Is ``mountpoint`` listed in /proc/mounts?"""
    target = str(mountpoint)
    with open("/proc/mounts", encoding="utf-8") as mounts:
        return any(line.split()[1] == target for line in mounts if len(line.split()) > 1)


def unmount(mountpoint: str) -> None:
    """Detach the mount now, even while something still uses it (lazy unmount)."""
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    argv = [tool, "-u", "-z", mountpoint] if tool else ["umount", "-l", mountpoint]
    subprocess.run(argv, check=False, capture_output=True)


def in_kernel_wait(pid: int) -> bool:
    """Is a thread of ``pid`` waiting in the kernel on a name or a FUSE request: a directory
    lock, a name another agent is looking up, a request libfuse holds back (while another
    agent's step waits at its door)?  Not a wait for the disk (``D`` alone says too little)."""
    return bool(kernel_wait(pid))


def kernel_wait(pid: int) -> bytes:
    """Where a thread of ``pid`` waits on a name or a FUSE request (its ``wchan``), or b""
    (a name wait first: a FUSE request may also be on its way to its door)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return b""
    found = b""
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/wchan", "rb") as wchan:
                waits = wchan.read()
        except OSError:
            continue
        if any(mark in waits for mark in _NAME_WAITS):
            if not any(mark in waits for mark in _REQUEST_WAITS):
                return waits
            found = waits
    return found


class StallWatch:
    """Which agents have been in a kernel wait (``kernel_wait``) for ``seconds`` on end:
    stalled behind another agent's door, not running (a step just let through wakes its
    waiters well within the time).  A wait for a FUSE request's answer needs ``request``
    seconds: the request may be on its way to its door rather than held back by libfuse,
    and on a loaded machine the way (libfuse's thread, the FUSE process's turn) can take
    longer than a name wait's wake-up."""

    def __init__(self, seconds: float = 0.02, request: float = 0.1) -> None:
        self.seconds = seconds
        self.request = request
        self.since: dict[str, float] = {}

    def stalled(self, agent: str, pid: int, now: float) -> bool:
        waits = kernel_wait(pid)
        if not waits:
            self.since.pop(agent, None)
            return False
        on_request = any(mark in waits for mark in _REQUEST_WAITS)
        limit = self.request if on_request else self.seconds
        return now - self.since.setdefault(agent, now) >= limit


class ScheduledMount:
    """A passthrough of ``backing`` at ``mountpoint`` whose agents' file operations wait."""

    def __init__(self, backing: Path, mountpoint: Path) -> None:
        self.backing = backing
        self.mountpoint = mountpoint
        self.changed = threading.Condition()
        self.doors: dict[int, FileStep] = {}
        self.results: dict[int, str] = {}
        self.ready = False
        self.process: subprocess.Popen[str] | None = None
        self.errors: IO[bytes] | None = None

    def __enter__(self) -> ScheduledMount:
        reason = fuse_unavailable()
        if reason:
            raise FuseUnavailable(reason)
        self.errors = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "simulator.real._fs_daemon", self.backing, self.mountpoint],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.errors,
            text=True,
            start_new_session=True,  # Ctrl-C reaches the harness, which unmounts in order
        )
        threading.Thread(target=self._read, daemon=True).start()
        try:
            with self.changed:
                self.changed.wait_for(lambda: self.ready or self._dead(), timeout=_MOUNT_WAIT)
        except BaseException:  # Ctrl-C while mounting: no ``with`` block to leave, so leave here
            self.__exit__(None, None, None)
            raise
        if not self.ready:
            said = self._stderr()
            self.__exit__(None, None, None)
            raise FuseUnavailable(f"could not mount a scheduled filesystem: {said or 'no answer'}")
        return self

    def _dead(self) -> bool:
        return self.process is None or self.process.poll() is not None

    def _stderr(self) -> str:
        if self.errors is None:
            return ""
        self.errors.seek(0)
        lines = self.errors.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else ""

    def _read(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        for line in self.process.stdout:
            message: dict[str, Any] = json.loads(line)
            with self.changed:
                if "arrive" in message:
                    number = int(message["arrive"])
                    self.doors[number] = FileStep(
                        number,
                        str(message["agent"]),
                        str(message["op"]),
                        str(message["path"]),
                        str(message["detail"]),
                    )
                elif "done" in message:
                    self.results[int(message["done"])] = str(message["result"])
                elif message.get("mounted"):
                    self.ready = True
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def waiting(self) -> list[FileStep]:
        """The operations at their doors, oldest first."""
        with self.changed:
            return [self.doors[number] for number in sorted(self.doors)]

    def wait_change(self, timeout: float) -> None:
        """Return when something arrives or finishes, or after ``timeout`` seconds."""
        with self.changed:
            self.changed.wait(timeout)

    def go(self, step: FileStep, timeout: float = 30.0, *, drop: bool = False) -> str:
        """Let ``step`` through; what it did (``ok``, ``N bytes``, an errno name).

        ``drop``: answer it ``EINTR`` without running it (its process was just killed: the
        kernel lets a process die only once its FUSE request is answered)."""
        with self.changed:
            self.doors.pop(step.number, None)
        self._send({"drop" if drop else "go": step.number})
        deadline = time.monotonic() + timeout
        with self.changed:
            while step.number not in self.results:
                left = deadline - time.monotonic()
                if left <= 0 or self._dead():
                    return "no answer"
                self.changed.wait(left)
            return self.results.pop(step.number)

    def free(self) -> None:
        """Stop scheduling: everything waiting, and everything to come, runs at once."""
        self._send({"free": True})

    def _send(self, message: dict[str, Any]) -> None:
        if self.process is None or self.process.stdin is None:
            return
        try:
            self.process.stdin.write(json.dumps(message) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        process = self.process
        if process is not None:
            if process.stdin is not None:
                with contextlib.suppress(BrokenPipeError):
                    process.stdin.close()  # the FUSE process frees everyone and unmounts
            try:
                process.wait(timeout=_MOUNT_WAIT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
        if mounted(self.mountpoint):  # the FUSE process died first: detach it here
            unmount(str(self.mountpoint))
        if self.errors is not None:
            self.errors.close()
