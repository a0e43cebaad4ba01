"""Engines with a bug in how they meet a failing disk: none of them is in the corpus.

Each is the reference with one error path written the way real code often
is: a save that is "best effort", an fsync whose result is not looked at, a
lock that is skipped when it cannot be taken.  The battery's disk-fault
worlds (``ioerror``, ``ioerror+crash``) must catch every one;
``tests/test_battery.py`` checks that they do.
"""

from __future__ import annotations

import contextlib
import posixpath

from refresh_engine import (
    AgentContext,
    Credential,
    Flow,
    Held,
    LockKind,
    OpenFlags,
    ReferenceEngine,
    discard,
    ops,
    render_store,
    temp_path,
    with_credential,
)


class SwallowsSaveErrors(ReferenceEngine):
    """Logs a failed save, tidies its temp file away and hands out the new token anyway
    ("we'll save it next time"): the one copy of the new refresh token is in memory."""

    name = "swallows-save-errors"

    def write_store(self, ctx: AgentContext, path: str, credential: Credential) -> Flow[None]:
        try:
            yield from super().write_store(ctx, path, credential)
        except OSError as exc:
            yield from discard(temp_path(path, self.staging(ctx)))
            yield from ops.log(f"{ctx.agent}: could not save the credential: {exc.strerror}")


class UncheckedFsync(ReferenceEngine):
    """Stages and replaces like the reference, but an fsync that fails is not looked at."""

    name = "unchecked-fsync"

    def write_store(self, ctx: AgentContext, path: str, credential: Credential) -> Flow[None]:
        document = yield from self.read_document(ctx, path)
        data = render_store(with_credential(document, ctx.key, ctx.provider, credential))
        directory, name = posixpath.split(path)
        temp = posixpath.join(directory, f".{name}.{ctx.agent}.tmp")
        fd = yield from ops.open_file(temp, OpenFlags.WRITE | OpenFlags.CREATE | OpenFlags.TRUNCATE)
        try:
            yield from ops.write(fd, data)
            with contextlib.suppress(OSError):  # "the data is written; fsync is only a hint"
                yield from ops.fsync(fd)
        finally:
            yield from ops.close(fd)
        yield from ops.replace(temp, path)


class LockBestEffort(ReferenceEngine):
    """Goes on without the refresh lock when taking it fails ("better than not working")."""

    name = "lock-best-effort"

    def acquire_lock(self, ctx: AgentContext) -> Flow[Held]:
        try:
            return (yield from super().acquire_lock(ctx))
        except OSError:
            yield from ops.log(f"{ctx.agent}: could not lock; refreshing without the lock")
            return Held(LockKind.NONE, self.lock_path(ctx))
