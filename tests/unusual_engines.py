"""Correct engines that go about it unusually: each is the reference engine with one
habit of a real engine changed, and none of them is a bug.

The checker must find nothing fatal in any of them, in any scenario the reference
claims (``tests/test_unusual_engines.py``): a finding there is a false alarm.  Each
is loadable by ``tokenrace check --engine unusual_engines:<Class>``.
"""

from __future__ import annotations

import contextlib
import posixpath
from typing import Any

from refresh_engine import (
    AgentContext,
    Credential,
    Flow,
    Held,
    LockKind,
    LockOp,
    OpenFlags,
    ReferenceEngine,
    create_fresh,
    credential_from,
    ops,
    parse_store,
    render_store,
    temp_path,
    with_credential,
)

#: What a buffered reader asks for at a time (small, so a store takes many reads).
CHUNK = 64


def read_to_end(fd: int, chunk: int = CHUNK) -> Flow[bytes]:
    """Read ``chunk`` bytes at a time until a read comes back empty, as a buffered reader does."""
    data = bytearray()
    while part := (yield from ops.read(fd, chunk)):
        data += part
    return bytes(data)


def read_chunked(path: str) -> Flow[bytes]:
    """The file in chunks; a missing file reads as empty."""
    try:
        fd = yield from ops.open_file(path, OpenFlags.READ)
    except FileNotFoundError:
        return b""
    try:
        return (yield from read_to_end(fd))
    finally:
        yield from ops.close(fd)


class ChunkedReads(ReferenceEngine):
    """Reads the store 64 bytes at a time until end of file, never in one call."""

    name = "chunked-reads"

    def read_document(self, ctx: AgentContext, path: str) -> Flow[dict[str, Any]]:
        return parse_store((yield from read_chunked(path)), path)


class TwoDescriptors(ReferenceEngine):
    """Opens the store twice and reads both descriptors in turn, a chunk each; trusts the
    later open (each descriptor sees one whole version, even across a replace)."""

    name = "two-descriptors"

    def read_document(self, ctx: AgentContext, path: str) -> Flow[dict[str, Any]]:
        try:
            first = yield from ops.open_file(path, OpenFlags.READ)
        except FileNotFoundError:
            return parse_store(b"", path)
        try:
            second = yield from ops.open_file(path, OpenFlags.READ)
        except FileNotFoundError:  # replaced away in between: the first is a whole version
            second = None
        fds = [first] if second is None else [first, second]
        data = {fd: bytearray() for fd in fds}
        try:
            reading = list(fds)
            while reading:
                for fd in list(reading):
                    part = yield from ops.read(fd, CHUNK)
                    data[fd] += part
                    if not part:
                        reading.remove(fd)
        finally:
            for fd in fds:
                yield from ops.close(fd)
        return parse_store(bytes(data[fds[-1]]), path)


class ReopenAfterReplace(ReferenceEngine):
    """After saving, opens the store again and reads the new credential back."""

    name = "reopen-after-replace"

    def save(self, ctx: AgentContext, path: str, credential: Credential) -> Flow[None]:
        yield from super().save(ctx, path, credential)
        document = yield from self.read_document(ctx, path)
        stored = credential_from(document, ctx.key, path)
        if stored.refresh != credential.refresh:
            yield from ops.log(f"{ctx.agent}: the store does not hold what was just saved")


class FsyncHeavy(ReferenceEngine):
    """Fsyncs after every write: the lock file, each half of the temp file, the temp file
    again before the replace, and the store after it."""

    name = "fsync-heavy"

    def acquire_lock(self, ctx: AgentContext) -> Flow[Held]:
        held = yield from super().acquire_lock(ctx)
        if held.fd is not None:
            try:
                yield from ops.fsync(held.fd)
            except OSError:  # a lock kept after an error would block every other agent
                yield from self.release_lock(ctx, held)
                raise
        return held

    def write_store(self, ctx: AgentContext, path: str, credential: Credential) -> Flow[None]:
        document = yield from self.read_document(ctx, path)
        data = render_store(with_credential(document, ctx.key, ctx.provider, credential))
        temp = temp_path(path, ctx.staging)  # where a roll-forward looks for it
        fd = yield from create_fresh(temp)
        try:
            half = len(data) // 2
            for part in (data[:half], data[half:]):
                yield from ops.write(fd, part)
                yield from ops.fsync(fd)
            yield from ops.fsync(fd)
        finally:
            yield from ops.close(fd)
        yield from self.replace_retrying(temp, path)
        fd = yield from ops.open_file(path, OpenFlags.READ | OpenFlags.WRITE)
        try:
            yield from ops.fsync(fd)
        finally:
            yield from ops.close(fd)

    @staticmethod
    def replace_retrying(temp: str, path: str) -> Flow[None]:
        """Windows refuses a replace while a reader has the file open: retry, then raise."""
        for attempt in range(20):
            try:
                yield from ops.replace(temp, path)
                return
            except PermissionError:
                if attempt == 19:
                    raise
                yield from ops.sleep(0.05)


class LockUpgrade(ReferenceEngine):
    """Reads the credential under a shared lock and upgrades it to exclusive on the same
    descriptor to refresh: a non-blocking conversion first, which (as on Linux) lets go of
    the shared lock when it fails, then a blocking one.  Windows cannot convert a lock,
    so there it unlocks and locks again.  The reference's re-read under the exclusive lock
    makes the gap harmless."""

    name = "lock-upgrade"

    def access_token(self, ctx: AgentContext) -> Flow[str]:
        path = self.store_path(ctx)
        windows = ctx.platform == "win32"
        kind = LockKind.LOCKFILEEX if windows else LockKind.FLOCK
        lock = self.lock_path(ctx)
        with contextlib.suppress(FileExistsError):
            yield from ops.mkdir(posixpath.dirname(lock))
        fd = yield from ops.open_file(lock, OpenFlags.WRITE | OpenFlags.CREATE)
        held = Held(kind, lock, fd)
        try:
            yield from self._lock(fd, LockOp.SHARED, windows)
            credential = credential_from((yield from self.read_document(ctx, path)), ctx.key, path)
            if credential.is_fresh((yield from ops.now()), ctx.refresh_margin):
                return credential.access
            yield from self._upgrade(fd, windows)
            fresh = yield from self._refresh_locked(ctx, path, credential)
        finally:
            yield from self.release_lock(ctx, held)
        return fresh.access

    @staticmethod
    def _lock(fd: int, op: LockOp, windows: bool, blocking: bool = True) -> Flow[None]:
        if windows:
            yield from ops.lock_file_ex(fd, op, blocking)
        else:
            yield from ops.flock(fd, op, blocking)

    def _upgrade(self, fd: int, windows: bool) -> Flow[None]:
        if windows:
            yield from self._lock(fd, LockOp.UNLOCK, windows)
        else:
            try:
                yield from self._lock(fd, LockOp.EXCLUSIVE, windows, blocking=False)
                return
            except BlockingIOError:
                pass  # the conversion failed and dropped the shared lock, as Linux's does
        yield from self._lock(fd, LockOp.EXCLUSIVE, windows)


class ReadsMainTwice(ReferenceEngine):
    """Reads the main store twice whenever it reads it (a check, then the real read) and
    believes the second."""

    name = "reads-main-twice"

    def read_document(self, ctx: AgentContext, path: str) -> Flow[dict[str, Any]]:
        yield from super().read_document(ctx, path)
        return (yield from super().read_document(ctx, path))


#: The battery, by name.
UNUSUAL_ENGINES: dict[str, type[ReferenceEngine]] = {
    engine.name: engine
    for engine in (
        ChunkedReads,
        TwoDescriptors,
        ReopenAfterReplace,
        FsyncHeavy,
        LockUpgrade,
        ReadsMainTwice,
    )
}
