"""Each OS model's semantics, pinned: what succeeds, and what fails with which error."""

from __future__ import annotations

import errno

import pytest

from refresh_engine import (
    AgentContext,
    Done,
    Failed,
    Flow,
    LockOp,
    MsvcrtLocking,
    MsvcrtMode,
    OpenFlags,
    ReferenceEngine,
    ops,
)
from simulator import AgentSpec, DefaultChooser, EventKind, OsModel, VirtualFS, WorldSpec, simulate
from simulator._os import OsLayer

RW = OpenFlags.READ | OpenFlags.WRITE | OpenFlags.CREATE


def layer(model: OsModel, nolock: tuple[str, ...] = ()) -> OsLayer:
    fs = VirtualFS()
    fs.makedirs("/d")
    fs.write_file("/d/store", b"0123456789")
    return OsLayer(fs, model, nolock)


def winerror(exc: BaseException) -> int | None:
    return getattr(exc, "winerror", None)


# ------------------------------------------------------------------ POSIX


@pytest.mark.parametrize("model", [OsModel.LINUX, OsModel.MACOS])
def test_posix_replace_and_unlink_of_open_files_work(model: OsModel) -> None:
    os_ = layer(model)
    reader = os_.open(1, "/d/store", OpenFlags.READ)
    os_.fs.write_file("/d/new", b"new")
    os_.replace("/d/new", "/d/store")
    assert os_.read(1, reader, None) == b"0123456789"  # the old inode lives on for the reader
    os_.unlink("/d/store")
    assert not os_.fs.exists("/d/store")


@pytest.mark.parametrize("model", [OsModel.LINUX, OsModel.MACOS])
def test_lockf_belongs_to_the_process(model: OsModel) -> None:
    os_ = layer(model)
    a1, a2 = os_.open(1, "/d/lock", RW), os_.open(1, "/d/lock", RW)
    b = os_.open(2, "/d/lock", RW)
    os_.lockf(1, a1, LockOp.EXCLUSIVE, "/d/lock")
    os_.lockf(1, a2, LockOp.EXCLUSIVE, "/d/lock")  # same process: granted again
    assert not os_.can_lockf(2, b, LockOp.EXCLUSIVE, "/d/lock")
    with pytest.raises(OSError, match="Resource temporarily unavailable") as caught:
        os_.lockf(2, b, LockOp.EXCLUSIVE, "/d/lock")
    assert caught.value.errno == errno.EAGAIN
    os_.close(1, a2)  # closing ANY descriptor of the file drops the process's lock
    assert os_.can_lockf(2, b, LockOp.EXCLUSIVE, "/d/lock")
    os_.lockf(2, b, LockOp.EXCLUSIVE, "/d/lock")


@pytest.mark.parametrize("model", [OsModel.LINUX, OsModel.MACOS])
def test_flock_and_lockf_do_not_exclude_each_other(model: OsModel) -> None:
    os_ = layer(model)
    a, b = os_.open(1, "/d/lock", RW), os_.open(2, "/d/lock", RW)
    os_.flock(1, a, LockOp.EXCLUSIVE, "/d/lock")
    os_.lockf(2, b, LockOp.EXCLUSIVE, "/d/lock")  # granted: a different mechanism


@pytest.mark.parametrize("model", [OsModel.LINUX, OsModel.MACOS])
def test_windows_locks_do_not_exist_on_posix(model: OsModel) -> None:
    os_ = layer(model)
    fd = os_.open(1, "/d/lock", RW)
    with pytest.raises(OSError, match="msvcrt.locking is not available") as caught:
        os_.msvcrt_locking(1, fd, MsvcrtMode.NBLOCK, 1)
    assert caught.value.errno == errno.ENOSYS
    with pytest.raises(OSError, match="LockFileEx is not available"):
        os_.lock_file_ex(1, fd, LockOp.EXCLUSIVE, 0, 1)


def test_linux_names_are_case_sensitive_macos_not() -> None:
    linux, macos = layer(OsModel.LINUX), layer(OsModel.MACOS)
    with pytest.raises(FileNotFoundError):
        linux.open(1, "/d/STORE", OpenFlags.READ)
    fd = macos.open(1, "/d/STORE", OpenFlags.READ)
    assert macos.read(1, fd, None) == b"0123456789"


def test_nolock_mount_grants_every_flock() -> None:
    os_ = layer(OsModel.LINUX, nolock=("/d",))
    a, b = os_.open(1, "/d/lock", RW), os_.open(2, "/d/lock", RW)
    os_.flock(1, a, LockOp.EXCLUSIVE, "/d/lock")
    assert os_.can_flock(2, b, LockOp.EXCLUSIVE, "/d/lock")
    os_.flock(2, b, LockOp.EXCLUSIVE, "/d/lock")  # NFS nolock: success, and no lock


# ---------------------------------------------------------------- Windows


def test_windows_has_no_fcntl() -> None:
    os_ = layer(OsModel.WINDOWS)
    fd = os_.open(1, "/d/lock", RW)
    for call in (os_.flock, os_.lockf):
        with pytest.raises(OSError, match="not available on win32") as caught:
            call(1, fd, LockOp.EXCLUSIVE, "/d/lock")
        assert caught.value.errno == errno.ENOSYS


def test_windows_replace_over_an_open_file_is_access_denied() -> None:
    os_ = layer(OsModel.WINDOWS)
    reader = os_.open(2, "/d/store", OpenFlags.READ)
    os_.fs.write_file("/d/new", b"new")
    with pytest.raises(PermissionError) as caught:
        os_.replace("/d/new", "/d/store")
    assert winerror(caught.value) == 5
    assert caught.value.errno == errno.EACCES
    os_.close(2, reader)
    os_.replace("/d/new", "/d/store")  # nobody holds it: fine
    assert os_.fs.read_file("/d/store") == b"new"


def test_windows_replace_of_an_open_source_is_a_sharing_violation() -> None:
    os_ = layer(OsModel.WINDOWS)
    os_.fs.write_file("/d/new", b"new")
    os_.open(1, "/d/new", OpenFlags.READ)
    with pytest.raises(PermissionError) as caught:
        os_.replace("/d/new", "/d/store")
    assert winerror(caught.value) == 32


def test_windows_unlink_of_an_open_file_is_a_sharing_violation() -> None:
    os_ = layer(OsModel.WINDOWS)
    fd = os_.open(1, "/d/store", OpenFlags.READ)
    with pytest.raises(PermissionError) as caught:
        os_.unlink("/d/store")
    assert winerror(caught.value) == 32
    os_.close(1, fd)
    os_.unlink("/d/store")


def test_windows_msvcrt_locks_from_the_file_position_and_are_mandatory() -> None:
    os_ = layer(OsModel.WINDOWS)
    a = os_.open(1, "/d/store", OpenFlags.READ | OpenFlags.WRITE)
    b = os_.open(2, "/d/store", OpenFlags.READ | OpenFlags.WRITE)
    os_.fs.seek(1, a, 5)
    os_.msvcrt_locking(1, a, MsvcrtMode.NBLOCK, 2)  # locks bytes [5, 7)
    os_.msvcrt_locking(2, b, MsvcrtMode.NBLOCK, 2)  # [0, 2): no overlap, granted
    os_.fs.seek(2, b, 6)
    with pytest.raises(PermissionError) as caught:
        os_.msvcrt_locking(2, b, MsvcrtMode.NBLOCK, 1)
    assert caught.value.errno == errno.EACCES
    assert winerror(caught.value) is None  # the C runtime reports errno alone
    os_.fs.seek(2, b, 4)
    with pytest.raises(PermissionError) as caught:
        os_.read(2, b, 3)  # reading into another handle's locked range
    assert caught.value.errno == errno.EACCES
    os_.fs.seek(1, a, 5)
    assert os_.read(1, a, 2) == b"56"  # the holder itself may read
    os_.fs.seek(1, a, 5)
    os_.msvcrt_locking(1, a, MsvcrtMode.UNLOCK, 2)
    os_.fs.seek(2, b, 4)
    assert os_.read(2, b, 3) == b"456"


def test_windows_lockfileex_shared_and_exclusive_and_release_on_close() -> None:
    os_ = layer(OsModel.WINDOWS)
    a, b, c = (os_.open(pid, "/d/lock", RW) for pid in (1, 2, 3))
    os_.lock_file_ex(1, a, LockOp.SHARED, 0, 1)
    os_.lock_file_ex(2, b, LockOp.SHARED, 0, 1)  # shared + shared
    assert not os_.can_range_lock(3, c, 0, 1, exclusive=True)
    os_.close(1, a)
    os_.kill(2)  # closing and dying both drop the locks
    os_.lock_file_ex(3, c, LockOp.EXCLUSIVE, 0, 1)
    with pytest.raises(PermissionError) as caught:
        os_.lock_file_ex(3, c, LockOp.UNLOCK, 5, 1)
    assert winerror(caught.value) == 158


def test_windows_lockfileex_own_ranges_follow_the_documentation() -> None:
    """A shared lock may overlap the same handle's exclusive one; an exclusive lock
    overlaps nothing, not even the handle's own shared one (confirmed under Wine)."""
    os_ = layer(OsModel.WINDOWS)
    fd = os_.open(1, "/d/lock", RW)
    os_.lock_file_ex(1, fd, LockOp.EXCLUSIVE, 0, 10)
    os_.lock_file_ex(1, fd, LockOp.SHARED, 0, 10)
    os_.lock_file_ex(1, fd, LockOp.SHARED, 20, 10)
    with pytest.raises(PermissionError) as caught:
        os_.lock_file_ex(1, fd, LockOp.EXCLUSIVE, 20, 10)
    assert winerror(caught.value) == 33


def test_windows_shared_range_blocks_every_writer_even_its_holder() -> None:
    os_ = layer(OsModel.WINDOWS)
    fd = os_.open(1, "/d/store", OpenFlags.READ | OpenFlags.WRITE)
    os_.lock_file_ex(1, fd, LockOp.SHARED, 0, 4)
    assert os_.read(1, fd, 4) == b"0123"
    os_.fs.seek(1, fd, 0)
    with pytest.raises(PermissionError):
        os_.write(1, fd, b"x")


def test_windows_names_are_case_insensitive() -> None:
    os_ = layer(OsModel.WINDOWS)
    fd = os_.open(1, "/D/Store", OpenFlags.READ)
    assert os_.read(1, fd, None) == b"0123456789"


# ------------------------------------------- kernel: LK_LOCK tries 10 times


class HoldsMsvcrtLock(ReferenceEngine):
    """Atlas takes byte 0 with msvcrt.locking and keeps it; nova then LK_LOCKs it."""

    def access_token(self, ctx: AgentContext) -> Flow[str]:
        fd = yield from ops.open_file(ctx.state_dir + "/lock", RW)
        if ctx.agent == "atlas":
            yield from ops.msvcrt_locking(fd, MsvcrtMode.LOCK, 1)
            yield from ops.sleep(self.hold)
            yield from ops.msvcrt_locking(fd, MsvcrtMode.UNLOCK, 1)
            return "done"
        yield from ops.sleep(0.5)
        try:
            yield from ops.msvcrt_locking(fd, MsvcrtMode.LOCK, 1)
        except OSError as exc:
            return f"gave up errno={exc.errno}"
        return "locked"

    def __init__(self, hold: float) -> None:
        super().__init__()
        self.hold = hold


def _windows_world() -> WorldSpec:
    return WorldSpec(
        agents=(AgentSpec("atlas", (0.0,)), AgentSpec("nova", (0.0,))), os=OsModel.WINDOWS
    )


@pytest.mark.parametrize(("hold", "gives_up"), [(5.0, False), (60.0, True)])
def test_lk_lock_retries_once_a_second_ten_times(hold: float, gives_up: bool) -> None:
    result = simulate(_windows_world(), HoldsMsvcrtLock(hold), DefaultChooser())
    retries = [e for e in result.events if e.kind is EventKind.BLOCKED and e.agent == "nova"]
    tries = [
        e
        for e in result.events
        if e.kind is EventKind.EFFECT and e.agent == "nova" and isinstance(e.effect, MsvcrtLocking)
    ]
    last = tries[-1]
    if not gives_up:
        assert isinstance(last.outcome, Done)
        assert 1 <= len(retries) < 10
    else:
        assert isinstance(last.outcome, Failed)
        assert last.outcome.errno == 36  # EDEADLOCK, "Resource deadlock avoided"
        assert len(retries) == 9  # ten tries in all, a second apart
        assert last.time - result.start_time == pytest.approx(0.5 + 9.0)
