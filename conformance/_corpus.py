"""The known-bug corpus: engine variants re-creating races seen in the wild (docs/scenarios.md).

Each variant is written against the public engine contract only (effects,
flows, ``AgentContext``, ``ReloginRequired``), as any user's engine would be,
and its docstring cites the report it comes from.  The suite must catch
every one of them.
"""

from __future__ import annotations

import errno
import posixpath
from typing import Any

from refresh_engine import (
    AgentContext,
    Credential,
    Flow,
    Held,
    LockKind,
    LockScope,
    LockTiming,
    OpenFlags,
    ReferenceEngine,
    TokenError,
    acquire_lock,
    ops,
    post_refresh,
    read_store,
    render_store,
    with_credential,
)


class OtherProgram(ReferenceEngine):
    """The reference with one habit of the program a corpus class models: its saves are
    staged under the agent's own name, as those programs' are (their locks do not
    always exclude each other, so a name per profile would make writers collide)."""

    stage_per_agent = True


class MirroredChildStores(OtherProgram):
    """Class 1 of the corpus, refresh from a stale copy: OpenClaw 2026.4.26.

    Source: openclaw/openclaw#74055 (also NousResearch/hermes-agent#85963).
    Every agent reads and writes its own ``auth-profiles.json`` in its
    ``agentDir``, seeded by copying main's, while the refresh lock is the
    correct one, keyed by provider + profileId in the shared state dir.  The
    lock serializes the refreshes, but the agent that gets it second re-reads
    its *own* copy, which still holds the refresh token the first agent
    already rotated, and spends it again: HTTP 401 ``refresh_token_reused``.
    """

    name = "mirrored"
    race_class = 1
    source = "openclaw/openclaw#74055"

    def store_path(self, ctx: AgentContext) -> str:
        return posixpath.join(ctx.agent_dir, "auth-profiles.json")


class NoCrossProcessLock(OtherProgram):
    """Class 3 of the corpus, no cross-process lock: several CLI instances share ``auth.json``.

    Source: openai/codex#10332 and #6498 (also aws/aws-cli#10628).  The engine
    reads through to the shared store and re-reads before refreshing, but its
    only lock is an in-process mutex, which serializes nothing between
    processes.  Two processes that both see the expired credential both
    refresh with the same token; the second gets ``refresh_token_reused``.
    Unlike class 1 it needs a context switch at the wrong moment, which is
    what makes it a test of the schedule search.
    """

    name = "no-lock"
    race_class = 3
    source = "openai/codex#10332"

    def __init__(self) -> None:
        super().__init__(lock=LockKind.MUTEX)


class LockPerAgentDir(OtherProgram):
    """Class 2 of the corpus, lock at the wrong scope: keyed per agent directory.

    Source: openclaw/openclaw#67876 (one user: 499 failures in 24 h); also
    lidge-jun/opencodex#2999 and vectorize-io/hindsight#2706.  Everything is
    right but the lock's key: each agent locks ``<agentDir>/auth.lock``, so no
    two agents ever wait for each other and both refresh the shared token.
    """

    name = "lock-per-agent"
    race_class = 2
    source = "openclaw/openclaw#67876"

    def __init__(self) -> None:
        super().__init__(scope=LockScope.AGENT_DIR)


class RetryAfterBackoff(OtherProgram):
    """Class 5 of the corpus, lost response after the server rotated: the retry replays it.

    Source: openai/codex#26516, openclaw/openclaw#121733; ory/hydra#1831 is
    why servers add a grace window.  When the refresh response is lost the
    engine backs off for a minute, then retries with the same refresh token.
    The server had committed the rotation, and by then its reuse window has
    closed, so the retry is a reuse.  (With no window at all the loss is
    unavoidable for every engine, and the suite says so.)
    """

    name = "retry-after-backoff"
    race_class = 5
    source = "openai/codex#26516"
    backoff = 60.0

    def exchange(self, ctx: AgentContext, refresh_token: str) -> Flow[Credential | TokenError]:
        try:
            return (yield from post_refresh(ctx, refresh_token))
        except (TimeoutError, ConnectionError):
            yield from ops.sleep(self.backoff)
        return (yield from post_refresh(ctx, refresh_token))


class ShortStaleTimeout(OtherProgram):
    """Class 6 of the corpus, stale-lock break while the holder lives.

    Source: appstrate/appstrate#1417; OpenClaw keeps call timeout (120 s) below
    its stale timeout (180 s) for this reason
    (src/agents/auth-profiles/constants.ts).  The engine locks with an O_EXCL
    lock file that others break once it is older than 20 s; a holder stalled
    for longer (a slow refresh, a GC pause) is still alive and still
    refreshing when a second agent breaks in and refreshes the same token.
    """

    name = "short-stale-timeout"
    race_class = 6
    source = "appstrate/appstrate#1417"

    def __init__(self) -> None:
        super().__init__(lock=LockKind.EXCL_FILE, timing=LockTiming(stale=20.0, poll=1.0))


class StaleSnapshotWriteBack(OtherProgram):
    """Class 7 of the corpus, lost update: a stale in-memory snapshot saved after a wait.

    Source: MoonshotAI/kimi-code#3186; anthropics/claude-code#88583.  The
    engine keeps the credential it read before waiting for the lock.  If
    another agent refreshed meanwhile, it finds the fresh token under the
    lock, but still "persists its state" on the way out, writing its old
    snapshot over the newer token: the store goes back a generation, and
    the next refresh spends a token that was already rotated.
    """

    name = "stale-snapshot"
    race_class = 7
    source = "MoonshotAI/kimi-code#3186"

    def on_fresh_under_lock(self, ctx: AgentContext, path: str, before: Credential) -> Flow[None]:
        yield from ReferenceEngine.save(self, ctx, path, before)


class ProfileLockOnly(OtherProgram):
    """Class 7 across profiles: a save under a per-profile lock carries another profile back.

    Source: this project's own reference engine until the store write lock
    (found by the battery's two-profile worlds; ``docs/scenarios.md``).  The
    refresh lock is keyed by provider + profileId, as OpenClaw keys it, but one
    ``auth-profiles.json`` holds every profile.  Two agents refreshing
    different profiles each re-read the document and replace it; the later
    replace writes the other profile's old token back over its new one, and
    that profile's next refresh spends a rotated token.
    """

    name = "profile-lock-only"
    race_class = 7
    source = "tokenrace reference engine before the store write lock"

    def save(self, ctx: AgentContext, path: str, credential: Credential) -> Flow[None]:
        yield from self.write_store(ctx, path, credential)  # no store lock: the profile's only


class InPlaceRewrite(OtherProgram):
    """Class 8 of the corpus, torn read: the store is rewritten in place.

    Source: openai/codex#8645 (codex-rs/login/src/auth/storage.rs truncates
    and writes ``auth.json`` in place); aws/aws-cli#9632.  Between the
    truncate and the write the file is empty; a reader that opens it then
    sees no credential at all and gives up as if logged out.
    """

    name = "in-place-write"
    race_class = 8
    source = "openai/codex#8645"

    def write_store(self, ctx: AgentContext, path: str, credential: Credential) -> Flow[None]:
        document = yield from read_store(path)
        data = render_store(with_credential(document, ctx.key, ctx.provider, credential))
        fd = yield from ops.open_file(path, OpenFlags.WRITE | OpenFlags.CREATE | OpenFlags.TRUNCATE)
        try:
            yield from ops.write(fd, data)
        finally:
            yield from ops.close(fd)


class CopyToMainAfterUnlock(OtherProgram):
    """Class 13 of the corpus, copy to main refused or late, so peers replay.

    Source: openclaw/openclaw#74214, #67876.  The leader refreshes under the
    provider + profileId lock, saves to its own agent store, releases the
    lock, and only then copies the credential to main, best effort.  A peer
    queued on the lock gets it first, re-reads main, which still holds the
    spent token, and replays it.
    """

    name = "copy-after-unlock"
    race_class = 13
    source = "openclaw/openclaw#74214"

    def save(self, ctx: AgentContext, path: str, credential: Credential) -> Flow[None]:
        own = posixpath.join(ctx.agent_dir, "auth-profiles.json")
        yield from ReferenceEngine.save(self, ctx, own, credential)

    def after_unlock(self, ctx: AgentContext, credential: Credential) -> Flow[None]:
        yield from ReferenceEngine.save(self, ctx, ctx.main_store, credential)


class SeparateLogins(OtherProgram):
    """Class 14 of the corpus, separate logins to one account.

    Each agent logged in on its own and keeps its own grant in its own agent
    store (correctly locked).  On a server that keeps one active grant per
    user, every login revoked the ones before it, so all but the last agent
    hold a dead refresh token and are stranded at their first refresh.
    """

    name = "separate-logins"
    race_class = 14
    source = "docs/scenarios.md class 14"

    def store_path(self, ctx: AgentContext) -> str:
        return posixpath.join(ctx.agent_dir, "auth-profiles.json")

    def lock_path(self, ctx: AgentContext) -> str:
        return posixpath.join(ctx.agent_dir, "auth.lock")


class FcntlOrNothing(OtherProgram):
    """Class 4 of the corpus, no lock on Windows: the lock silently becomes a no-op.

    Source: MoonshotAI/kimi-code#3186; Scottcjn/beacon-skill#845.  The engine
    locks with ``fcntl.flock``; where ``fcntl`` does not exist (Windows) it
    shrugs and refreshes without a lock.  Correct on Linux, racy on Windows.
    """

    name = "fcntl-or-nothing"
    race_class = 4
    source = "MoonshotAI/kimi-code#3186"

    def __init__(self) -> None:
        super().__init__(lock=LockKind.FLOCK)

    def take_lock(self, ctx: AgentContext, path: str) -> Flow[Held]:
        try:
            return (yield from super().take_lock(ctx, path))
        except OSError as exc:
            if exc.errno != errno.ENOSYS:
                raise
            return Held(LockKind.NONE, path)  # "no fcntl here: skip locking"


class IgnoreReplaceError(OtherProgram):
    """Class 9 of the corpus, Windows sharing violation on atomic replace, dropped.

    Source: razzant/ouroboros#259; fsnow/cst#705.  The engine writes a temp
    file and replaces the store, but a ``PermissionError`` from the replace
    (Windows: another process has the store open) is logged and dropped.
    The server already rotated, so the new token is lost and the store still
    holds the spent one.
    """

    name = "ignore-replace-error"
    race_class = 9
    source = "razzant/ouroboros#259"

    def write_store(self, ctx: AgentContext, path: str, credential: Credential) -> Flow[None]:
        document = yield from read_store(path)
        data = render_store(with_credential(document, ctx.key, ctx.provider, credential))
        temp = path + f".{ctx.agent}.tmp"
        fd = yield from ops.open_file(temp, OpenFlags.WRITE | OpenFlags.CREATE | OpenFlags.TRUNCATE)
        try:
            yield from ops.write(fd, data)
        finally:
            yield from ops.close(fd)
        try:
            yield from ops.replace(temp, path)
        except PermissionError:
            yield from ops.log(f"{ctx.agent}: could not save the credential; continuing")


class IncompatibleLocks(OtherProgram):
    """Class 10 of the corpus, incompatible lock mechanisms on one lock file.

    Source: AzureAD/microsoft-authentication-extensions-for-python#66.  Two
    tools share one login and one lock file, but the CLI (agents named
    ``cli…``) takes ``flock`` while the IDE (``ide…``) takes an fcntl record
    lock, as Java's ``FileChannel.lock`` does; on Linux and macOS the two
    never exclude each other.
    """

    name = "incompatible-locks"
    race_class = 10
    source = "AzureAD/microsoft-authentication-extensions-for-python#66"

    def take_lock(self, ctx: AgentContext, path: str) -> Flow[Held]:
        kind = LockKind.LOCKF if ctx.agent.startswith("ide") else LockKind.FLOCK
        return (yield from acquire_lock(kind, path, platform=ctx.platform))


class TrustsNetworkFlock(OtherProgram):
    """Class 11 of the corpus, a lock that is a no-op on the filesystem.

    Source: tox-dev/filelock#6.  The state dir lives on NFS mounted
    ``nolock`` (or SMB), where ``flock`` returns success and locks nothing.
    The engine is the reference engine itself: its lock is only as good as
    the filesystem, which is why the reference does not claim this world.
    """

    name = "trusts-network-flock"
    race_class = 11
    source = "tox-dev/filelock#6"

    def __init__(self) -> None:
        super().__init__(lock=LockKind.FLOCK)


class LockfInGateway(OtherProgram):
    """Class 12 of the corpus, POSIX record locks inside one process.

    Source: harlowja/fasteners#93.  The engine locks with ``fcntl.lockf``,
    whose locks belong to the process: two agents of one gateway process
    both "hold" it at once, and closing any descriptor of the file drops it.
    """

    name = "lockf-in-gateway"
    race_class = 12
    source = "harlowja/fasteners#93"

    def __init__(self) -> None:
        super().__init__(lock=LockKind.LOCKF)


class NoRollForward(ReferenceEngine):
    """Class 15 of the corpus: a writer killed between its staged temp file and the
    replace; the next refresher does not look for what it staged.

    Source: this project's reference engine before roll-forward (issue E7 of its
    hardening: 44 of 248 real SIGKILL trials lost the grant under ``openai``).  The
    new credential is complete on disk, in the temp file, yet the store still holds
    the spent token, and the next agent presents it: the server sees a reuse and
    revokes the grant.  The reference recovers the staged file under the lock first.
    """

    name = "no-roll-forward"
    race_class = 15
    source = "tokenrace reference engine before roll-forward"

    def roll_forward(self, ctx: AgentContext, path: str, current: Credential) -> Flow[bool]:
        return False
        yield  # a flow that does nothing


class ReplacesSymlink(ReferenceEngine):
    """Class 16 of the corpus: a store that is a symlink (into a dotfiles checkout, or
    shared with another tool) is saved by replacing the link itself.

    Source: this project's reference engine before it resolved links (issue E3 of its
    hardening).  ``rename(temp, store)`` replaces the name, not what it points to: the
    store becomes a plain file with the new token, and the link's target, which another
    program names, keeps the spent one; that program presents it next.  The reference
    follows the link under the lock and stages and replaces beside the target.
    """

    name = "replaces-symlink"
    race_class = 16
    source = "tokenrace reference engine before it followed a symlinked store"

    def resolve_store(self, ctx: AgentContext, path: str) -> Flow[str]:
        return path
        yield  # a flow that does nothing


class NoStagingCheck(ReferenceEngine):
    """Class 17 of the corpus: the refresh token is presented without first checking
    that the answer can be saved, and the store's directory is not writable.

    Source: this project's reference engine before its staging check (issue E1 of its
    hardening: a read-only store directory, a temp path that is a directory, or a full
    disk, found only after the server had rotated).  The server spends the token, the
    save fails, and the new credential exists nowhere: the next run must log in again.
    The reference creates its staged file first, and fails with ``StoreUnwritable``
    while the token is still unspent.
    """

    name = "no-staging-check"
    race_class = 17
    source = "tokenrace reference engine before its staging check"

    def preflight(self, ctx: AgentContext, path: str, document: dict[str, Any]) -> Flow[None]:
        return
        yield  # a flow that does nothing


#: Every known-bug engine, in corpus class order (docs/scenarios.md).
CORPUS: tuple[type[ReferenceEngine], ...] = (
    MirroredChildStores,
    LockPerAgentDir,
    NoCrossProcessLock,
    FcntlOrNothing,
    RetryAfterBackoff,
    ShortStaleTimeout,
    StaleSnapshotWriteBack,
    ProfileLockOnly,
    InPlaceRewrite,
    IgnoreReplaceError,
    IncompatibleLocks,
    TrustsNetworkFlock,
    LockfInGateway,
    CopyToMainAfterUnlock,
    SeparateLogins,
    NoRollForward,
    ReplacesSymlink,
    NoStagingCheck,
)
