"""The FUSE process of a scheduled filesystem: ``python -m simulator.real._fs_daemon BACKING MNT``.

A passthrough over ``BACKING`` mounted at ``MNT`` in which every file
operation of an agent's process waits at a door until the harness lets it
through.  It runs in a process of its own (libfuse takes over the signal
handlers of the process that mounts, and a separate process outlives a
crashed harness): it talks to the harness over its stdin and stdout, one
JSON object a line.

Out (to the harness): ``{"mounted": true}`` once the mount answers;
``{"arrive": ID, "agent", "op", "path", "detail"}`` when an agent's
operation reaches its door; ``{"done": ID, "result"}`` once it ran.
In (from the harness): ``{"go": ID}`` runs one waiting operation;
``{"drop": ID}`` answers it ``EINTR`` without running it (its process was
killed: the kernel waits for an answer before the process can die);
``{"free": true}`` stops scheduling (everything waiting and to come runs at
once); end of input, whatever the reason (the harness exited, crashed or was
killed), frees everything, kills the agents' process groups and unmounts —
also when it comes before the mount is in place: the mount that appears
later is taken down at once.

An operation belongs to an agent when the calling process, or one of its
ancestors, has ``TOKENRACE_FS_AGENT=<name>`` in its environment; other callers
(the harness seeding or reading the store) pass straight through, as do the
operations that only look (an fstat, readdir, access, statfs).  A lookup of a
name (``getattr`` without a file handle) is a step, except for the directories
the run started with: the kernel decides an ``O_EXCL`` create or a ``mkdir`` of
an existing name from the lookup alone, so a lock taken by another agent shows
up there and only there.  ``release``
runs unscheduled too: the kernel sends it after ``close`` has returned, from
no caller in particular; ``flush``, sent by ``close`` itself, is the step
called ``close``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import stat
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import mfusepy

from ._fs_mount import AGENT_ENV, unmount

assert sys.platform != "win32"  # mypy: the rest is for POSIX only

_T = TypeVar("_T")
#: after the harness's input ended: how many times (10 ms apart) to look for a late mount
_LATE_MOUNT_CHECKS = 1500
_ACCESS = {os.O_RDONLY: "O_RDONLY", os.O_WRONLY: "O_WRONLY", os.O_RDWR: "O_RDWR"}
_FLAGS = (
    ("O_CREAT", os.O_CREAT),
    ("O_EXCL", os.O_EXCL),
    ("O_TRUNC", os.O_TRUNC),
    ("O_APPEND", os.O_APPEND),
)


def open_flags(flags: int) -> str:
    """``O_WRONLY|O_CREAT|O_TRUNC``: the flags a history shows (access mode and the ones that
    change the file)."""
    names = [_ACCESS.get(flags & os.O_ACCMODE, "O_RDONLY")]
    return "|".join(names + [name for name, bit in _FLAGS if flags & bit])


class _Channel:
    """The JSON lines to the harness, written by many FUSE threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.doors: dict[int, threading.Event] = {}
        self.dropped: set[int] = set()  # operations answered EINTR, not run
        self.free = False
        self.ending = threading.Event()  # the harness's input ended: unmount, whenever mounted
        self.counter = 0
        self.agents: set[int] = set()  # process ids seen acting for an agent

    def send(self, message: dict[str, Any]) -> None:
        line = json.dumps(message) + "\n"
        with self.lock:
            sys.stdout.write(line)
            sys.stdout.flush()

    def wait(self, agent: str, op: str, path: str, detail: str) -> int:
        event = threading.Event()
        with self.lock:
            self.counter += 1
            number = self.counter
            if self.free:
                return 0
            self.doors[number] = event
        self.send({"arrive": number, "agent": agent, "op": op, "path": path, "detail": detail})
        event.wait()
        return number

    def go(self, number: int, drop: bool = False) -> None:
        with self.lock:
            event = self.doors.pop(number, None)
            if drop and event is not None:
                self.dropped.add(number)
        if event is not None:
            event.set()

    def release_all(self) -> None:
        with self.lock:
            self.free = True
            doors, self.doors = list(self.doors.values()), {}
        for event in doors:
            event.set()


def _parent_and_env(pid: int) -> tuple[int, bytes]:
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            fields = dict(line.split(b":", 1) for line in status if b":" in line)
        with open(f"/proc/{pid}/environ", "rb") as environ:
            env = environ.read()
    except OSError:
        return 0, b""
    return int(fields.get(b"PPid", b"0").strip() or 0), env


def agent_of(pid: int) -> str:
    """The agent whose process (or descendant) ``pid`` is, "" for none."""
    marker = AGENT_ENV.encode() + b"="
    seen = 0
    while pid > 1 and seen < 64:
        parent, env = _parent_and_env(pid)
        for entry in env.split(b"\0"):
            if entry.startswith(marker):
                return entry[len(marker) :].decode("utf-8", "replace")
        pid, seen = parent, seen + 1
    return ""


class ScheduledPassthrough(mfusepy.Operations):  # type: ignore[misc]
    """Passthrough operations over ``backing``; the ones that change or read a file are steps."""

    use_ns = True
    # with hard_remove (below), a file unlinked or renamed over while open has no path left:
    # libfuse passes None, and the operations on it go by file handle (named as opened)
    flag_nopath = True
    flag_nullpath_ok = True

    def __init__(self, backing: str, channel: _Channel) -> None:
        self.backing = backing
        self.channel = channel
        self.cache: dict[int, str] = {}
        self.names: dict[int, str] = {}  # file handle -> the path it was opened by
        self.fixed = {"/"} | {
            "/" + os.path.relpath(os.path.join(top, name), backing)
            for top, names, _ in os.walk(backing)
            for name in names
        }

    def real(self, path: str) -> str:
        return os.path.join(self.backing, path.lstrip("/"))

    def step(self, op: str, path: str, detail: str, action: Callable[[], _T]) -> _T:
        pid = mfusepy.fuse_get_context()[2]
        agent = self.cache.get(pid)
        if agent is None:
            agent = self.cache[pid] = agent_of(pid)
        if not agent or self.channel.free:
            if op == "mkdir" and not agent:  # the harness's own layout: never raced
                self.fixed.add(path)
            return _run(action)
        self.channel.agents.add(pid)
        number = self.channel.wait(agent, op, path.lstrip("/"), detail)
        if number in self.channel.dropped:  # its process was killed at the door
            self.channel.dropped.discard(number)
            self.channel.send({"done": number, "result": "EINTR"})
            raise mfusepy.FuseOSError(errno.EINTR)
        try:
            result = action()
        except OSError as error:
            self.channel.send({"done": number, "result": errno.errorcode.get(error.errno or 0)})
            raise mfusepy.FuseOSError(error.errno or errno.EIO) from None
        shown = f"{len(result)} bytes" if isinstance(result, bytes) else "ok"
        if op == "lookup":
            shown = "directory" if stat.S_ISDIR(getattr(result, "st_mode", 0)) else "exists"
        if op == "write" and isinstance(result, int):
            shown = f"{result} bytes"
        self.channel.send({"done": number, "result": shown})
        return result

    # operations that only look: unscheduled
    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]:
        if fh is not None:
            st = _run(lambda: os.fstat(fh))
        elif (
            path is None or path in self.fixed
        ):  # the directories the run started with: never raced
            st = _run(lambda: os.lstat(self.real(path or "?")))
        else:  # a lookup: it decides an O_EXCL create or a mkdir of an existing name
            name = path
            st = self.step("lookup", name, "", lambda: os.lstat(self.real(name)))
        keys = "st_mode st_nlink st_size st_uid st_gid st_atime_ns st_mtime_ns st_ctime_ns"
        found = {key: getattr(st, key) for key in keys.split()}
        return {key.replace("_ns", ""): value for key, value in found.items()}

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *_run(lambda: os.listdir(self.real(path)))]

    def access(self, path: str, amode: int) -> int:
        if not os.access(self.real(path), amode):
            raise mfusepy.FuseOSError(errno.EACCES)
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        st = os.statvfs(self.real(path))
        names = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree")
        return {name: getattr(st, name) for name in (*names, "f_files", "f_frsize", "f_namemax")}

    def chmod(self, path: str, mode: int) -> int:
        _run(lambda: os.chmod(self.real(path), mode))
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        _run(lambda: os.chown(self.real(path), uid, gid))
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        if times is None:
            _run(lambda: os.utime(self.real(path)))
        else:
            _run(lambda: os.utime(self.real(path), ns=times))
        return 0

    def readlink(self, path: str) -> str:
        return _run(lambda: os.readlink(self.real(path)))

    def release(self, path: str | None, fh: int) -> int:
        self.names.pop(fh, None)
        _run(lambda: os.close(fh))
        return 0

    def opened(self, op: str, path: str, flags: int, mode: int = 0o777) -> int:
        fh = self.step(op, path, open_flags(flags), lambda: os.open(self.real(path), flags, mode))
        self.names[fh] = path
        return fh

    def name(self, path: str | None, fh: int | None) -> str:
        return self.names.get(fh, path or "?") if fh is not None else path or "?"

    # steps
    def open(self, path: str, flags: int) -> int:
        return self.opened("open", path, flags)

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        return self.opened(
            "open", path, (fi if isinstance(fi, int) else os.O_WRONLY) | os.O_CREAT, mode
        )

    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        detail = f"{size}@{offset}"
        return self.step("read", self.name(path, fh), detail, lambda: os.pread(fh, size, offset))

    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        detail = f"{len(data)}@{offset}"
        return self.step("write", self.name(path, fh), detail, lambda: os.pwrite(fh, data, offset))

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        def cut() -> None:
            if fh is not None:
                os.ftruncate(fh, length)
            else:
                os.truncate(self.real(path or "?"), length)

        self.step("truncate", self.name(path, fh), str(length), cut)
        return 0

    def flush(self, path: str | None, fh: int) -> int:
        self.step("close", self.name(path, fh), "", lambda: None)
        return 0

    def fsync(self, path: str | None, datasync: int, fh: int) -> int:
        self.step("fsync", self.name(path, fh), "", lambda: os.fsync(fh))
        return 0

    def flock(self, path: str | None, fh: int, op: int) -> int:
        """``flock(2)``, decided on the backing file: a blocking lock someone else holds is a
        step that fails ``EWOULDBLOCK`` and comes back to its door (the agent is blocked)."""
        name, want = self.name(path, fh), op & ~fcntl.LOCK_NB
        detail = {fcntl.LOCK_SH: "LOCK_SH", fcntl.LOCK_EX: "LOCK_EX"}.get(want, "LOCK_UN")
        while True:
            if self.channel.free and not op & fcntl.LOCK_NB:  # nothing scheduled: just wait
                _run(lambda: fcntl.flock(fh, want))
                return 0
            try:
                self.step("flock", name, detail, lambda: fcntl.flock(fh, want | fcntl.LOCK_NB))
                return 0
            except mfusepy.FuseOSError as error:
                if op & fcntl.LOCK_NB or error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise

    def rename(self, old: str, new: str) -> int:
        detail = new.lstrip("/")
        self.step("rename", old, detail, lambda: os.rename(self.real(old), self.real(new)))
        return 0

    def unlink(self, path: str) -> int:
        self.step("unlink", path, "", lambda: os.unlink(self.real(path)))
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        self.step("mkdir", path, "", lambda: os.mkdir(self.real(path), mode))
        return 0

    def rmdir(self, path: str) -> int:
        self.step("rmdir", path, "", lambda: os.rmdir(self.real(path)))
        return 0

    def link(self, target: str, source: str) -> int:
        detail = source.lstrip("/")
        self.step("link", target, detail, lambda: os.link(self.real(source), self.real(target)))
        return 0

    def symlink(self, target: str, source: str) -> int:
        self.step("symlink", target, source, lambda: os.symlink(source, self.real(target)))
        return 0


class _Fuse(mfusepy.FUSE):  # type: ignore[misc]
    """mfusepy's FUSE, but a flock on a file with no path left (``nullpath_ok``) gets None."""

    def flock(self, path: bytes | None, fip: Any, op: int) -> int:
        name = None if path is None else path.decode(self.encoding, self.errors)
        result: int = self.operations.flock(name, fip.contents.fh, op)
        return result


def _run(action: Callable[[], _T]) -> _T:
    try:
        return action()
    except OSError as error:
        raise mfusepy.FuseOSError(error.errno or errno.EIO) from None


def _listen(channel: _Channel, mountpoint: str, harness_group: int) -> None:
    """The harness's commands, until its end: then free everyone, kill the agents, unmount."""
    for line in sys.stdin:
        message = json.loads(line)
        if "go" in message:
            channel.go(int(message["go"]))
        elif "drop" in message:
            channel.go(int(message["drop"]), drop=True)
        elif message.get("free"):
            channel.release_all()
    channel.release_all()
    for pid in list(channel.agents):
        with contextlib.suppress(OSError):
            group = os.getpgid(pid)
            if group in (harness_group, os.getpgid(0)):  # not a group of its own: that one
                os.kill(pid, signal.SIGKILL)
            else:  # the harness starts each agent in a session of its own: all of it
                os.killpg(group, signal.SIGKILL)
    channel.ending.set()
    unmount(mountpoint)
    # the input may end before libfuse has mounted (the harness killed at once): watch for the
    # mount a while longer and take it down as soon as it appears
    pause = threading.Event()
    for _ in range(_LATE_MOUNT_CHECKS):
        if os.path.ismount(mountpoint):
            unmount(mountpoint)
        pause.wait(0.01)


def _announce(channel: _Channel, mountpoint: str) -> None:
    """Say ``mounted`` once the mount is in place (the harness waits for it)."""
    for _ in range(500):
        if channel.ending.is_set():
            return
        if os.path.ismount(mountpoint):
            channel.send({"mounted": True})
            return
        threading.Event().wait(0.01)


def main(argv: list[str]) -> int:
    backing, mountpoint = argv
    channel = _Channel()
    harness_group = os.getpgid(os.getppid())
    listen = (channel, mountpoint, harness_group)
    threading.Thread(target=_listen, args=listen, daemon=True).start()
    threading.Thread(target=_announce, args=(channel, mountpoint), daemon=True).start()
    operations = ScheduledPassthrough(os.path.realpath(backing), channel)
    if channel.ending.is_set():  # the harness is gone already: mount nothing
        return 0
    options = {"attr_timeout": 0, "entry_timeout": 0, "negative_timeout": 0, "direct_io": True}
    options["hard_remove"] = True  # no .fuse_hidden renames of libfuse's own among the steps
    _Fuse(operations, mountpoint, foreground=True, fsname="tokenrace", **options)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
