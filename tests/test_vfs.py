"""The virtual filesystem pinned to Linux: unit tests per semantic, then a differential
Hypothesis state machine that runs the same calls against the real OS in a temp dir."""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import shutil
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from refresh_engine import Failed, LockOp, Open, Opened, OpenFlags, RealWorld
from simulator import VirtualFS

if sys.platform != "win32":
    import fcntl

R, W, C, X, T, A = (
    OpenFlags.READ,
    OpenFlags.WRITE,
    OpenFlags.CREATE,
    OpenFlags.EXCLUSIVE,
    OpenFlags.TRUNCATE,
    OpenFlags.APPEND,
)
SH, EX, UN = LockOp.SHARED, LockOp.EXCLUSIVE, LockOp.UNLOCK


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fs(clock: Clock) -> VirtualFS:
    vfs = VirtualFS(clock)
    vfs.makedirs("/home/u/.codex")
    vfs.write_file("/home/u/.codex/auth.json", b"v1")
    return vfs


AUTH = "/home/u/.codex/auth.json"


def errno_of(exc_info: pytest.ExceptionInfo[OSError]) -> int | None:
    return exc_info.value.errno


# ------------------------------------------------------------------ paths, setup


def test_root_exists_and_paths_normalize(fs: VirtualFS) -> None:
    assert VirtualFS().listdir("/") == []
    assert fs.exists("//home/./u/../u/.codex/auth.json")
    assert fs.read_file("/home//u/.codex/auth.json") == b"v1"
    assert fs.listdir("/home/u/.codex") == ["auth.json"]


@pytest.mark.parametrize(
    "call",
    [
        lambda fs: fs.open(1, "auth.json", R),
        lambda fs: fs.exists("home"),
        lambda fs: fs.replace("/a", "b"),
        lambda fs: fs.write_file("", b""),
    ],
)
def test_relative_path_is_a_harness_bug(fs: VirtualFS, call: Callable[[VirtualFS], Any]) -> None:
    with pytest.raises(ValueError, match="path must be absolute"):
        call(fs)


def test_setup_helpers(fs: VirtualFS) -> None:
    fs.write_file("/home/u/b", b"x")
    fs.write_file("/home/u/a", b"y")
    assert fs.listdir("/home/u") == [".codex", "a", "b"]
    fs.makedirs("/home/u/.codex")  # exist_ok
    with pytest.raises(FileNotFoundError):
        fs.read_file("/home/u/missing")
    with pytest.raises(FileNotFoundError):
        fs.write_file("/nope/x", b"")
    with pytest.raises(IsADirectoryError):
        fs.read_file("/home")
    with pytest.raises(NotADirectoryError):
        fs.listdir(AUTH)
    with pytest.raises(NotADirectoryError):
        fs.makedirs(AUTH + "/sub")


def test_write_file_overwrites_the_same_inode(fs: VirtualFS) -> None:
    fd = fs.open(1, AUTH, R)
    fs.write_file(AUTH, b"seeded")
    assert fs.read(1, fd) == b"seeded"


def test_errors_carry_errno_and_filename(fs: VirtualFS) -> None:
    with pytest.raises(FileNotFoundError) as info:
        fs.open(1, "/home/u/missing", R)
    assert (info.value.errno, info.value.filename) == (errno.ENOENT, "/home/u/missing")
    assert info.value.strerror == os.strerror(errno.ENOENT)
    with pytest.raises(FileNotFoundError) as info:
        fs.replace("/home/u/missing", "/home/u/other")
    assert (info.value.filename, info.value.filename2) == ("/home/u/missing", "/home/u/other")


# ---------------------------------------------------------------------- open


def test_open_missing_and_bad_parents(fs: VirtualFS) -> None:
    with pytest.raises(FileNotFoundError):
        fs.open(1, "/home/u/missing", R)
    with pytest.raises(FileNotFoundError):
        fs.open(1, "/home/nobody/new", C | W)
    with pytest.raises(NotADirectoryError):
        fs.open(1, AUTH + "/x", C | W)
    assert fs.open_fds(1) == []


def test_exclusive_create(fs: VirtualFS) -> None:
    with pytest.raises(FileExistsError):
        fs.open(1, AUTH, C | X | W)
    fd = fs.create_exclusive(1, "/home/u/.codex/auth.lock")
    assert fs.exists("/home/u/.codex/auth.lock")
    with pytest.raises(FileExistsError):
        fs.create_exclusive(2, "/home/u/.codex/auth.lock")
    fs.write(1, fd, b"pid 1")
    with pytest.raises(OSError, match="Bad file descriptor"):
        fs.read(1, fd)  # create_exclusive is write-only
    assert fs.open(1, AUTH, X | R) == fd + 1  # EXCLUSIVE without CREATE is ignored


def test_directories_cannot_be_opened_for_writing(fs: VirtualFS) -> None:
    for flags in (W, R | W, C | W, C, T):
        with pytest.raises(IsADirectoryError):
            fs.open(1, "/home/u", flags)
    with pytest.raises(FileExistsError):
        fs.open(1, "/home/u", C | X)
    fd = fs.open(1, "/home/u", R)
    with pytest.raises(IsADirectoryError):
        fs.read(1, fd)
    fs.flock(1, fd, EX)  # flock and fsync work on directories
    fs.fsync(1, fd)


def test_fds_are_lowest_free_from_three_per_process(fs: VirtualFS) -> None:
    assert [fs.open(1, AUTH, R) for _ in range(3)] == [3, 4, 5]
    assert fs.open(2, AUTH, R) == 3
    fs.close(1, 4)
    assert fs.open(1, AUTH, R) == 4
    assert fs.open(1, AUTH, R) == 6
    assert fs.open_fds(1) == [3, 4, 5, 6]
    assert fs.open_fds(2) == [3]
    assert fs.open_fds(99) == []


# -------------------------------------------------------------- read and write


def test_reads_see_writes_and_offsets_advance(fs: VirtualFS) -> None:
    w = fs.open(1, AUTH, W | T)
    r = fs.open(2, AUTH, R)
    assert fs.read(2, r) == b""
    assert fs.write(1, w, b"hello ") == 6
    assert fs.write(1, w, b"world") == 5
    assert fs.read(2, r, 5) == b"hello"
    assert fs.read(2, r, 0) == b""
    assert fs.read(2, r) == b" world"
    assert fs.read(2, r) == b""
    assert fs.read(2, fs.open(2, AUTH, R), 100) == b"hello world"  # own offset per OFD


def test_read_write_overwrites_in_place(fs: VirtualFS) -> None:
    fd = fs.open(1, AUTH, R | W)
    assert fs.read(1, fd, 1) == b"v"
    fs.write(1, fd, b"X")
    assert fs.read_file(AUTH) == b"vX"


def test_append_writes_at_the_end(fs: VirtualFS) -> None:
    fd = fs.open(1, AUTH, W | A)
    other = fs.open(2, AUTH, W)
    fs.write(2, other, b"abcd")
    fs.write(1, fd, b"+")
    assert fs.read_file(AUTH) == b"abcd+"


def test_write_past_the_end_fills_with_zeros(fs: VirtualFS) -> None:
    fd = fs.open(1, AUTH, R | W)
    fs.read(1, fd)
    fs.truncate(1, fd, 0)
    fs.write(1, fd, b"z")
    assert fs.read_file(AUTH) == b"\0\0z"


def test_truncate(fs: VirtualFS) -> None:
    fd = fs.open(1, AUTH, W)
    fs.truncate(1, fd, 5)
    assert fs.read_file(AUTH) == b"v1\0\0\0"
    fs.truncate(1, fd, 1)
    assert fs.read_file(AUTH) == b"v"
    fs.truncate(1, fd)
    assert fs.stat(AUTH)[0] == 0
    with pytest.raises(OSError, match="Invalid argument"):
        fs.truncate(1, fd, -1)


def test_truncate_needs_a_writable_fd_and_fails_with_einval(fs: VirtualFS) -> None:
    fd = fs.open(1, AUTH, R)
    with pytest.raises(OSError, match="Invalid argument") as info:
        fs.truncate(1, fd)
    assert errno_of(info) == errno.EINVAL
    assert fs.read_file(AUTH) == b"v1"


def test_open_truncate_truncates_even_read_only_like_linux(fs: VirtualFS) -> None:
    fs.open(1, AUTH, R | T)
    assert fs.read_file(AUTH) == b""


def test_negative_read_size_is_a_harness_bug(fs: VirtualFS) -> None:
    with pytest.raises(ValueError, match="negative"):
        fs.read(1, fs.open(1, AUTH, R), -1)


@pytest.mark.parametrize(
    "call",
    [
        lambda fs: fs.read(1, 3),
        lambda fs: fs.write(1, 3, b"x"),
        lambda fs: fs.truncate(1, 3),
        lambda fs: fs.fsync(1, 3),
        lambda fs: fs.close(1, 3),
        lambda fs: fs.flock(1, 3, SH),
        lambda fs: fs.can_flock(1, 3, UN),
        lambda fs: fs.read(2, fs.open(1, AUTH, R)),  # another process's fd
        lambda fs: fs.read(1, fs.open(1, AUTH, W)),  # write-only
        lambda fs: fs.write(1, fs.open(1, AUTH, R), b""),  # read-only, even empty
        lambda fs: fs.write(1, fs.open(1, AUTH, C), b"x"),  # no access flag = O_RDONLY
    ],
)
def test_ebadf(fs: VirtualFS, call: Callable[[VirtualFS], Any]) -> None:
    with pytest.raises(OSError, match="Bad file descriptor") as info:
        call(fs)
    assert errno_of(info) == errno.EBADF


def test_close_twice_is_ebadf(fs: VirtualFS) -> None:
    fd = fs.open(1, AUTH, R)
    fs.close(1, fd)
    with pytest.raises(OSError, match="Bad file descriptor"):
        fs.close(1, fd)
    with pytest.raises(OSError, match="Bad file descriptor"):
        fs.read(1, fd)


# --------------------------------------------------------------- names, inodes


def test_replace_keeps_the_old_inode_for_open_readers(fs: VirtualFS) -> None:
    old = fs.open(1, AUTH, R)
    tmp = AUTH + ".tmp"
    wfd = fs.open(2, tmp, C | X | W)
    fs.write(2, wfd, b"v2")
    fs.close(2, wfd)
    fs.replace(tmp, AUTH)
    assert not fs.exists(tmp)
    assert fs.read(1, old) == b"v1"
    assert fs.read(2, fs.open(2, AUTH, R)) == b"v2"
    assert fs.listdir("/home/u/.codex") == ["auth.json"]


def test_writes_through_a_replaced_inode_are_invisible(fs: VirtualFS) -> None:
    old = fs.open(1, AUTH, W)
    fs.write_file("/home/u/new", b"new")
    fs.replace("/home/u/new", AUTH)
    fs.write(1, old, b"lost update")
    assert fs.read_file(AUTH) == b"new"


def test_unlink_keeps_reading_through_an_open_fd(fs: VirtualFS) -> None:
    fd = fs.open(1, AUTH, R)
    fs.unlink(AUTH)
    assert not fs.exists(AUTH)
    assert fs.read(1, fd) == b"v1"
    with pytest.raises(FileNotFoundError):
        fs.open(2, AUTH, R)
    fresh = fs.open(2, AUTH, C | W)
    fs.write(2, fresh, b"v2")
    assert fs.read_file(AUTH) == b"v2"


def test_inodes_are_freed_when_neither_named_nor_open(fs: VirtualFS) -> None:
    live = len(fs._inodes)
    fd = fs.open(1, AUTH, R)
    fs.unlink(AUTH)
    assert len(fs._inodes) == live  # orphan kept while open
    fs.kill_process(1)
    assert len(fs._inodes) == live - 1
    fs.write_file("/home/u/a", b"a")
    fs.write_file("/home/u/b", b"b")
    fs.replace("/home/u/a", "/home/u/b")
    assert len(fs._inodes) == live
    assert fd == 3


def test_replace_errors(fs: VirtualFS) -> None:
    fs.mkdir("/home/u/d")
    fs.write_file("/home/u/d/f", b"")
    with pytest.raises(FileNotFoundError):
        fs.replace("/home/u/missing", AUTH)
    with pytest.raises(FileNotFoundError):
        fs.replace(AUTH, "/home/nobody/auth.json")
    with pytest.raises(IsADirectoryError):
        fs.replace(AUTH, "/home/u/d")  # before ENOTEMPTY
    with pytest.raises(NotADirectoryError):
        fs.replace("/home/u/d", AUTH)
    with pytest.raises(OSError, match="Directory not empty"):
        fs.replace("/home/u/.codex", "/home/u/d")
    with pytest.raises(OSError, match="Invalid argument"):
        fs.replace("/home/u", "/home/u/d/inside")
    with pytest.raises(OSError, match="Directory not empty"):
        fs.replace("/home/u/d/f", "/home/u/d")
    with pytest.raises(OSError, match="busy"):
        fs.replace("/", "/x")
    assert fs.read_file(AUTH) == b"v1"


def test_replace_onto_itself_is_a_no_op(fs: VirtualFS) -> None:
    fs.replace(AUTH, "/home/u/.codex/../.codex/auth.json")
    assert fs.read_file(AUTH) == b"v1"


def test_replace_moves_a_directory_with_its_subtree(fs: VirtualFS) -> None:
    fd = fs.open(1, AUTH, R)
    fs.mkdir("/home/v")
    fs.replace("/home/u", "/home/v")  # over an empty directory
    assert fs.read_file("/home/v/.codex/auth.json") == b"v1"
    assert not fs.exists("/home/u/.codex")
    assert fs.listdir("/home") == ["v"]
    assert fs.read(1, fd) == b"v1"


def test_unlink_errors(fs: VirtualFS) -> None:
    with pytest.raises(FileNotFoundError):
        fs.unlink("/home/u/missing")
    with pytest.raises(IsADirectoryError):
        fs.unlink("/home/u")
    with pytest.raises(IsADirectoryError):
        fs.unlink("/")
    with pytest.raises(NotADirectoryError):
        fs.unlink(AUTH + "/x")


def test_mkdir(fs: VirtualFS) -> None:
    fs.mkdir("/home/u/.codex/lock")
    assert fs.listdir("/home/u/.codex") == ["auth.json", "lock"]
    with pytest.raises(FileExistsError):
        fs.mkdir("/home/u/.codex/lock")  # the mkdir-lock idiom
    with pytest.raises(FileExistsError):
        fs.mkdir(AUTH)
    with pytest.raises(FileExistsError):
        fs.mkdir("/")
    with pytest.raises(FileNotFoundError):
        fs.mkdir("/home/nobody/lock")
    with pytest.raises(NotADirectoryError):
        fs.mkdir(AUTH + "/lock")


def test_stat_and_mtime(fs: VirtualFS, clock: Clock) -> None:
    assert fs.stat(AUTH) == (2, 100.0)
    clock.now = 105.0
    fd = fs.open(1, AUTH, W)
    assert fs.stat(AUTH) == (2, 100.0)  # opening is not a modification
    fs.write(1, fd, b"abc")
    assert fs.stat(AUTH) == (3, 105.0)
    clock.now = 107.0
    fs.truncate(1, fd, 1)
    assert fs.stat(AUTH) == (1, 107.0)
    clock.now = 109.0
    fs.mkdir("/home/u/lock")
    assert fs.stat("/home/u/lock") == (0, 109.0)
    assert fs.stat("/home/u") == (0, 109.0)  # a new entry modifies the directory
    with pytest.raises(FileNotFoundError):
        fs.stat("/home/u/missing")
    with pytest.raises(NotADirectoryError):
        fs.stat(AUTH + "/x")


def test_fsync_marks_current_data_durable(fs: VirtualFS) -> None:
    inode = fs._inodes[fs._entries[AUTH]]
    assert inode.durable_data == b"v1"
    fd = fs.open(1, AUTH, W | T)
    fs.write(1, fd, b"v2")
    assert inode.durable_data == b"v1"
    fs.fsync(1, fd)
    assert inode.durable_data == b"v2"
    fs.fsync(1, fs.open(1, AUTH, R))  # allowed read-only too


# ------------------------------------------------------------------------ flock


def test_exclusive_conflicts_across_ofds_even_in_one_process(fs: VirtualFS) -> None:
    a, b = fs.open(1, AUTH, R), fs.open(1, AUTH, R)
    fs.flock(1, a, EX)
    assert not fs.can_flock(1, b, EX)
    assert not fs.can_flock(1, b, SH)
    with pytest.raises(BlockingIOError) as info:
        fs.flock(1, b, EX)
    assert errno_of(info) == errno.EWOULDBLOCK
    with pytest.raises(BlockingIOError):
        fs.flock(1, b, SH)
    assert fs.lock_holders(AUTH) == [(1, a, EX)]


def test_shared_locks_coexist_and_block_exclusive(fs: VirtualFS) -> None:
    a, b, c = fs.open(1, AUTH, R), fs.open(2, AUTH, R), fs.open(2, AUTH, W)
    fs.flock(1, a, SH)
    fs.flock(2, b, SH)
    assert fs.lock_holders(AUTH) == [(1, a, SH), (2, b, SH)]
    assert not fs.can_flock(2, c, EX)
    with pytest.raises(BlockingIOError):
        fs.flock(2, c, EX)


def test_same_ofd_relocks_and_converts(fs: VirtualFS) -> None:
    a = fs.open(1, AUTH, R)
    fs.flock(1, a, SH)
    fs.flock(1, a, SH)
    assert fs.can_flock(1, a, EX)
    fs.flock(1, a, EX)
    fs.flock(1, a, EX)
    assert fs.lock_holders(AUTH) == [(1, a, EX)]
    fs.flock(1, a, SH)
    assert fs.lock_holders(AUTH) == [(1, a, SH)]
    fs.flock(1, a, UN)
    fs.flock(1, a, UN)  # unlocking nothing is fine
    assert fs.lock_holders(AUTH) == []


def test_failed_conversion_drops_the_old_lock_like_linux(fs: VirtualFS) -> None:
    a, b, c = (fs.open(p, AUTH, R) for p in (1, 2, 3))
    fs.flock(1, a, SH)
    fs.flock(2, b, SH)
    assert not fs.can_flock(1, a, EX)
    assert fs.lock_holders(AUTH) == [(1, a, SH), (2, b, SH)]  # the query changes nothing
    with pytest.raises(BlockingIOError):
        fs.flock(1, a, EX)
    assert fs.lock_holders(AUTH) == [(2, b, SH)]
    fs.flock(2, b, UN)
    fs.flock(3, c, EX)


def test_close_and_kill_release_flocks(fs: VirtualFS) -> None:
    a, b = fs.open(1, AUTH, R), fs.open(2, AUTH, R)
    fs.flock(1, a, EX)
    fs.close(1, a)
    fs.flock(2, b, EX)
    assert fs.lock_holders(AUTH) == [(2, b, EX)]
    fs.open(2, "/home/u/.codex", R)
    fs.kill_process(2)
    assert fs.open_fds(2) == []
    assert fs.lock_holders(AUTH) == []
    c = fs.open(1, AUTH, R)
    assert fs.can_flock(1, c, EX)
    fs.kill_process(42)  # no such process: nothing to do


def test_locks_belong_to_the_inode_not_the_name(fs: VirtualFS) -> None:
    a = fs.open(1, AUTH, R)
    fs.flock(1, a, EX)
    fs.write_file("/home/u/new", b"v2")
    fs.replace("/home/u/new", AUTH)
    assert fs.lock_holders(AUTH) == []
    assert fs.lock_holders("/home/u/missing") == []
    b = fs.open(2, AUTH, R)
    fs.flock(2, b, EX)  # a different file now: no conflict


LOCK_STEPS = st.lists(st.tuples(st.integers(0, 2), st.sampled_from(LockOp)), max_size=20)


@settings(max_examples=100, deadline=None)
@given(steps=LOCK_STEPS)
def test_can_flock_predicts_flock_and_locks_stay_exclusive(steps: list[tuple[int, LockOp]]) -> None:
    fs = VirtualFS()
    fs.write_file("/f", b"")
    fds = [fs.open(1, "/f", R) for _ in range(3)]  # three OFDs of one process
    for who, op in steps:
        predicted = fs.can_flock(1, fds[who], op)
        try:
            fs.flock(1, fds[who], op)
        except BlockingIOError:
            granted = False
        else:
            granted = True
        assert granted == predicted
        held = [mode for _, _, mode in fs.lock_holders("/f")]
        assert EX not in held or held == [EX]
        if granted and op is not UN:
            assert (1, fds[who], op) in fs.lock_holders("/f")


# ------------------------------------------------ differential test vs real Linux

PIDS = (1, 2)
#: links are made in /e and never moved to the top, so no name here walks through one
#: (directory links are not modelled)
LINKS = ("/e/l1", "/e/l2", "/e/l3")
LINK_TARGETS = ("../a", "../b", "../d", "../d/a", "l1", "l2", "l3", "../missing", "../z/a")
NAMES = ("/a", "/b", "/d", "/d/a", "/e", "/a/x", "/z/a", *LINKS[:2], "/e/p")
HANDLES = st.integers(0, 7)  # an index into the open (pid, fd) pairs, past them a closed fd
BAD_FD = 1_000_000  # a virtual fd that is not open maps here: EBADF on the real side


def _os_flags(flags: OpenFlags) -> int:
    if R in flags and W in flags:
        value = os.O_RDWR
    elif W in flags:
        value = os.O_WRONLY
    else:
        value = os.O_RDONLY
    for flag, bit in ((C, os.O_CREAT), (X, os.O_EXCL), (T, os.O_TRUNC), (A, os.O_APPEND)):
        if flag in flags:
            value |= bit
    return value


def _flags_from(members: frozenset[OpenFlags]) -> OpenFlags:
    flags = OpenFlags(0)
    for member in members:
        flags |= member
    return flags


COMMON_FLAGS = st.sampled_from([R, W, R | W, C | W, W | T, R | T, W | A, R | W | A, C | R | W])
FLAGS = (
    COMMON_FLAGS
    | st.just(C | X | W)
    | st.frozensets(st.sampled_from(list(OpenFlags))).map(_flags_from)
)
OPEN_PATHS = st.sampled_from(["/a", "/b", "/d", "/e/l1"]) | st.sampled_from(NAMES)


def _open_real(path: str, flags: OpenFlags) -> int:
    """The real interpreter's ``Open`` (a FIFO refused with ENXIO, never waited on)."""
    outcome = RealWorld().perform(Open(path, flags))
    if isinstance(outcome, Failed):
        raise outcome.to_exception()
    assert isinstance(outcome, Opened)
    return outcome.fd


def _call(fn: Callable[[], Any]) -> tuple[Any, tuple[type[OSError], int | None] | None]:
    try:
        return fn(), None
    except OSError as exc:
        return None, (type(exc), exc.errno)


class VfsAgainstLinux(RuleBasedStateMachine):
    """Same calls on a VirtualFS and on a real temp dir, one real process standing in
    for two pids through per-pid maps from virtual fds to real ones."""

    def __init__(self) -> None:
        super().__init__()
        self.root = tempfile.mkdtemp(prefix="vfs-diff-")
        self.vfs = VirtualFS()
        self.fds: dict[int, dict[int, int]] = {pid: {} for pid in PIDS}
        self.closed: list[tuple[int, int]] = [(1, 3), (2, 3)]  # EBADF, also across pids
        for d in ("/d", "/e"):
            self.vfs.mkdir(d)
            os.mkdir(self.real(d))
        for path, data in (("/a", b"seed"), ("/d/a", b"in d")):  # /d starts non-empty
            self.vfs.write_file(path, data)
            with open(self.real(path), "wb") as f:
                f.write(data)

    def real(self, path: str) -> str:
        return self.root + path

    def handle(self, index: int) -> tuple[int, int, int]:
        """``(pid, virtual fd, real fd)``: open pairs first, then ones not open."""
        pairs = [(pid, fd) for pid in PIDS for fd in sorted(self.fds[pid])]
        pairs += [pair for pair in self.closed if pair[1] not in self.fds[pair[0]]]
        pid, fd = pairs[index % len(pairs)] if pairs else (1, 3)
        return pid, fd, self.fds[pid].get(fd, BAD_FD)

    def same(self, vfs_call: Callable[[], Any], real_call: Callable[[], Any]) -> Any:
        got, got_err = _call(vfs_call)
        want, want_err = _call(real_call)
        assert got_err == want_err
        return got, want, got_err

    @initialize(first=COMMON_FLAGS, second=COMMON_FLAGS)
    def open_two(self, first: OpenFlags, second: OpenFlags) -> None:
        """Start with descriptors open, or most fd calls would only test EBADF."""
        self.open(1, "/a", first)
        self.open(2, "/a", second)

    @rule(pid=st.sampled_from(PIDS), path=OPEN_PATHS, flags=FLAGS)
    def open(self, pid: int, path: str, flags: OpenFlags) -> None:
        table = self.fds[pid]
        got, want, err = self.same(
            lambda: self.vfs.open(pid, path, flags),
            lambda: _open_real(self.real(path), flags),
        )
        if err is None:
            assert got == min(set(range(3, 3 + len(table) + 1)) - set(table))
            table[got] = want

    @rule(h=HANDLES, size=st.none() | st.integers(0, 8))
    def read(self, h: int, size: int | None) -> None:
        pid, fd, real_fd = self.handle(h)
        got, want, _ = self.same(
            lambda: self.vfs.read(pid, fd, size),
            lambda: os.read(real_fd, 1 << 16 if size is None else size),
        )
        assert got == want

    @rule(h=HANDLES, data=st.binary(max_size=6))
    def write(self, h: int, data: bytes) -> None:
        pid, fd, real_fd = self.handle(h)
        got, want, _ = self.same(
            lambda: self.vfs.write(pid, fd, data), lambda: os.write(real_fd, data)
        )
        assert got == want

    @rule(h=HANDLES, size=st.integers(0, 10))
    def truncate(self, h: int, size: int) -> None:
        pid, fd, real_fd = self.handle(h)
        self.same(lambda: self.vfs.truncate(pid, fd, size), lambda: os.ftruncate(real_fd, size))

    @rule(h=HANDLES)
    def fsync(self, h: int) -> None:
        pid, fd, real_fd = self.handle(h)
        self.same(lambda: self.vfs.fsync(pid, fd), lambda: os.fsync(real_fd))

    @rule(h=HANDLES)
    def close(self, h: int) -> None:
        pid, fd, real_fd = self.handle(h)
        _, _, err = self.same(lambda: self.vfs.close(pid, fd), lambda: os.close(real_fd))
        if err is None:
            del self.fds[pid][fd]
            self.closed.append((pid, fd))

    @rule(pid=st.sampled_from(PIDS))
    def kill(self, pid: int) -> None:
        self.vfs.kill_process(pid)
        for real_fd in self.fds[pid].values():
            os.close(real_fd)
        self.fds[pid].clear()

    @rule(src=st.sampled_from(NAMES), dst=st.sampled_from(NAMES))
    def replace(self, src: str, dst: str) -> None:
        # a link stays below the top: there a "../" target would climb out of the real side's
        # root (the model's root is its own ".."), and /a, /d, /e, /z are walked through
        assume(not (self.vfs.is_symlink(src) and posixpath.dirname(posixpath.normpath(dst)) == "/"))
        self.same(
            lambda: self.vfs.replace(src, dst),
            lambda: os.replace(self.real(src), self.real(dst)),
        )

    @rule(path=st.sampled_from(NAMES))
    def unlink(self, path: str) -> None:
        self.same(lambda: self.vfs.unlink(path), lambda: os.unlink(self.real(path)))

    @rule(path=st.sampled_from(NAMES))
    def mkdir(self, path: str) -> None:
        self.same(lambda: self.vfs.mkdir(path), lambda: os.mkdir(self.real(path), 0o700))

    @rule(path=st.sampled_from(LINKS), to=st.sampled_from(LINK_TARGETS))
    def symlink(self, path: str, to: str) -> None:
        self.same(lambda: self.vfs.symlink(to, path), lambda: os.symlink(to, self.real(path)))

    @rule(path=st.sampled_from(("/e/p", "/b", "/e/l3")))
    def mkfifo(self, path: str) -> None:
        self.same(lambda: self.vfs.mkfifo(path), lambda: os.mkfifo(self.real(path), 0o600))

    @rule(path=st.sampled_from(NAMES))
    def readlink(self, path: str) -> None:
        got, want, _ = self.same(
            lambda: self.vfs.readlink(path), lambda: os.readlink(self.real(path))
        )
        assert got == want

    @rule(path=st.sampled_from(NAMES))
    def stat(self, path: str) -> None:
        got, want, err = self.same(lambda: self.vfs.stat(path), lambda: os.stat(self.real(path)))
        if err is None and got[0]:
            assert got[0] == want.st_size

    @rule(h=HANDLES, op=st.sampled_from(LockOp))
    def flock(self, h: int, op: LockOp) -> None:
        pid, fd, real_fd = self.handle(h)
        predicted, _ = _call(lambda: self.vfs.can_flock(pid, fd, op))
        bits = {SH: fcntl.LOCK_SH, EX: fcntl.LOCK_EX, UN: fcntl.LOCK_UN}[op]
        _, _, err = self.same(
            lambda: self.vfs.flock(pid, fd, op), lambda: fcntl.flock(real_fd, bits | fcntl.LOCK_NB)
        )
        if predicted is not None:
            assert predicted == (err is None)

    @invariant()
    def same_tree(self) -> None:
        for path in NAMES:
            got, got_err = _call(partial(self.vfs.read_file, path))
            want, want_err = _call(partial(_read_real, self.real(path)))
            assert (got, got_err) == (want, want_err), path
            if got_err is None:
                assert self.vfs.stat(path)[0] == os.stat(self.real(path)).st_size
        for d in ("/", "/d", "/e", "/b"):
            got, got_err = _call(partial(self.vfs.listdir, d))
            want, want_err = _call(partial(_listdir_real, self.real(d)))
            assert (got, got_err) == (want, want_err), d
        for pid in PIDS:
            assert self.vfs.open_fds(pid) == sorted(self.fds[pid])

    def teardown(self) -> None:
        for table in self.fds.values():
            for real_fd in table.values():
                with contextlib.suppress(OSError):
                    os.close(real_fd)
        shutil.rmtree(self.root, ignore_errors=True)


def _listdir_real(path: str) -> list[str]:
    return sorted(os.listdir(path))


def _read_real(path: str) -> bytes:
    fd = _open_real(path, OpenFlags.READ)
    try:
        return os.read(fd, 1 << 16)
    finally:
        os.close(fd)


TestVfsAgainstLinux = pytest.mark.skipif(
    sys.platform != "linux", reason="the model is Linux; other kernels differ"
)(VfsAgainstLinux.TestCase)
TestVfsAgainstLinux.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
