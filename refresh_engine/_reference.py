"""The reference refresh engine: the behaviour the suite holds others to.

Its guarantees, for agents that share one login through this engine:

1. credentials are read through from the main store, never from a copy;
2. a refresh happens only under an exclusive lock keyed by provider +
   profileId in the shared state dir, and only if the credential re-read
   under that lock still needs one (so one expiry costs one refresh);
3. the store is written atomically (temp file, fsync, replace), under a
   short write lock of the store file, so writers of different profiles of
   one store (each under its own refresh lock) never carry each other's
   profile back to an older token;
4. when the server says the token was already used, the store is re-read and
   a newer credential, if one is there, is used before giving up with
   ``ReloginRequired``.

It does not claim to survive a lost response under a server with no reuse
window: the server spent the token, and the new one never arrived.
"""

from __future__ import annotations

import hashlib
import json
import sys
import urllib.parse
from dataclasses import dataclass
from typing import Any

from . import _flow as ops
from ._errors import RefreshEngineError, RefreshFailed, ReloginRequired, StoreUnwritable
from ._flow import Flow
from ._locks import (
    DEFAULT_TIMING,
    Held,
    LockKind,
    LockScope,
    LockTiming,
    acquire_lock,
    lock_path_for,
    release_lock,
)
from ._store import (
    MAX_STORE_BYTES,
    Credential,
    atomic_write,
    create_fresh,
    credential_from,
    discard,
    parse_store,
    profile_key,
    read_credential,
    read_file,
    read_store,
    render_store,
    resolve_links,
    split_path,
    temp_path,
    with_credential,
)

#: Error codes that mean "this refresh token will never work again".
#: The longest ``Retry-After`` (s) the reference waits out, holding the lock, before it
#: retries once; a longer one ends the refresh with ``RefreshFailed``.
RETRY_AFTER_LIMIT = 60.0

REJECTED_TOKEN_CODES = frozenset(
    {
        "refresh_token_reused",
        "refresh_token_invalidated",
        "refresh_token_expired",
        "invalid_grant",
    }
)


@dataclass(frozen=True, slots=True)
class AgentContext:
    """Where one agent finds its login: what the harness tells every engine."""

    agent: str
    provider: str
    profile_id: str
    main_store: str
    agent_dir: str
    state_dir: str
    token_url: str
    client_id: str = "tokenrace"
    refresh_margin: float = 300.0
    #: ``sys.platform`` of the machine the agent runs on: this one, unless the
    #: simulator says which OS it models
    platform: str = sys.platform

    @property
    def key(self) -> str:
        return profile_key(self.provider, self.profile_id)

    @property
    def staging(self) -> str:
        """The name this profile's new versions are staged under (``.<store>.<staging>.tmp``):
        one per profile, so the next refresher of the profile, holding its lock, finds
        what a killed one left.  Letters, digits and ``-`` only, with a digest of the
        key so that no two keys share it."""
        readable = "".join(c if c.isalnum() or c in "-_" else "-" for c in self.key)
        return f"{readable}-{hashlib.sha256(self.key.encode()).hexdigest()[:8]}"


@dataclass(frozen=True, slots=True)
class TokenError:
    """What the token endpoint said when it refused."""

    status: int
    code: str
    retry_after: float | None = None  # seconds, where a 429 or 503 said when to come back

    @property
    def token_rejected(self) -> bool:
        return self.code in REJECTED_TOKEN_CODES


def parse_token_error(status: int, body: bytes, retry_after: str | None = None) -> TokenError:
    """Read either dialect: OpenAI's nested object or RFC 6749's flat one; and a
    ``Retry-After`` in whole seconds (an HTTP date is not acted on)."""
    wait = float(retry_after) if retry_after and retry_after.strip().isdigit() else None
    try:
        payload: Any = json.loads(body)
    except ValueError:
        return TokenError(status, "unparseable_response", wait)
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        return TokenError(status, str(error.get("code") or error.get("type") or "unknown"), wait)
    if isinstance(error, str):
        return TokenError(status, error, wait)
    return TokenError(status, "unknown", wait)


def lock_path(ctx: AgentContext) -> str:
    """The reference engine's refresh lock: per provider + profileId, in the shared state dir."""
    return lock_path_for(
        LockScope.PROFILE,
        key=ctx.key,
        agent_dir=ctx.agent_dir,
        store_path=ctx.main_store,
        state_dir=ctx.state_dir,
    )


def post_refresh(ctx: AgentContext, refresh_token: str) -> Flow[Credential | TokenError]:
    """One refresh_token grant; a new credential, or the server's refusal."""
    body = urllib.parse.urlencode(
        {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": ctx.client_id}
    ).encode()
    sent_at = yield from ops.now()
    response = yield from ops.http_post(ctx.token_url, body, "application/x-www-form-urlencoded")
    if response.status != 200:
        return parse_token_error(response.status, response.body, response.header("retry-after"))
    try:
        payload = json.loads(response.body)
        return Credential(
            access=str(payload["access_token"]),
            refresh=str(payload.get("refresh_token") or refresh_token),
            expires_at=sent_at + float(payload["expires_in"]),
        )
    except (ValueError, KeyError, TypeError):
        return TokenError(response.status, "malformed_token_response")


class ReferenceEngine:
    """Read-through, correctly keyed lock, re-read under lock, atomic write.

    ``lock`` and ``scope`` choose the lock from the zoo (``_locks``); the
    defaults, the OS's native blocking lock (flock on POSIX, LockFileEx on
    Windows) per provider + profileId, are what the guarantees above are
    stated for, on a filesystem where those locks work (not NFS ``nolock``).
    Other choices make the variants the suite checks.
    """

    name = "reference"

    def __init__(
        self,
        lock: LockKind = LockKind.NATIVE,
        scope: LockScope = LockScope.PROFILE,
        timing: LockTiming = DEFAULT_TIMING,
    ) -> None:
        self.lock = lock
        self.scope = scope
        self.timing = timing

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lock={self.lock.value}, scope={self.scope.value})"

    def store_path(self, ctx: AgentContext) -> str:
        """The store this engine reads and writes: the main one."""
        return ctx.main_store

    def lock_path(self, ctx: AgentContext) -> str:
        return lock_path_for(
            self.scope,
            key=ctx.key,
            agent_dir=ctx.agent_dir,
            store_path=self.store_path(ctx),
            state_dir=ctx.state_dir,
        )

    def acquire_lock(self, ctx: AgentContext) -> Flow[Held]:
        """Take the refresh lock; returns what ``release_lock`` needs."""
        return (yield from self.take_lock(ctx, self.lock_path(ctx)))

    def take_lock(self, ctx: AgentContext, path: str) -> Flow[Held]:
        """Take the lock at ``path`` by this engine's mechanism (the refresh lock's and the
        store write lock's)."""
        return (yield from acquire_lock(self.lock, path, platform=ctx.platform, timing=self.timing))

    def release_lock(self, ctx: AgentContext, held: Held) -> Flow[None]:
        yield from release_lock(held)

    def access_token(self, ctx: AgentContext) -> Flow[str]:
        """A valid access token, refreshing at most once per expiry."""
        path = self.store_path(ctx)
        credential = credential_from((yield from self.read_document(ctx, path)), ctx.key, path)
        if credential.is_fresh((yield from ops.now()), ctx.refresh_margin):
            return credential.access
        lock = yield from self.acquire_lock(ctx)
        try:
            fresh = yield from self._refresh_locked(ctx, path, credential)
        finally:
            yield from self.release_lock(ctx, lock)
        yield from self.after_unlock(ctx, fresh)
        return fresh.access

    def _refresh_locked(
        self, ctx: AgentContext, named: str, before: Credential
    ) -> Flow[Credential]:
        path = yield from self.resolve_store(ctx, named)
        presented: set[str] = set()
        waited = False  # a Retry-After is honoured once per refresh
        recovering = True  # once per refresh, before the first presentation
        while True:
            document = yield from self.read_document(ctx, path)
            credential = credential_from(document, ctx.key, path)
            if credential.is_fresh((yield from ops.now()), ctx.refresh_margin):
                yield from self.on_fresh_under_lock(ctx, path, before)
                return credential
            if recovering:
                recovering = False
                if (yield from self.roll_forward(ctx, path, credential)):
                    continue
            if credential.refresh in presented:
                raise ReloginRequired(
                    f"{ctx.agent}: the refresh token for {ctx.key} was rejected and the store "
                    "holds nothing newer; a new login is required"
                )
            yield from self.preflight(ctx, path, document)
            presented.add(credential.refresh)
            result = yield from self.exchange(ctx, credential.refresh)
            if isinstance(result, Credential):
                yield from self.save(ctx, path, result)
                return result
            wait = result.retry_after
            if wait is not None and wait <= RETRY_AFTER_LIMIT and not waited:
                # the server saw the token and refused to look at it: unspent, try it again
                # after the pause it asked for, still holding the lock, re-reading first
                yield from ops.log(f"{ctx.agent}: asked to retry after {wait:g}s ({result.status})")
                yield from ops.sleep(wait)
                presented.discard(credential.refresh)
                waited = True
                continue
            if not result.token_rejected:
                raise RefreshFailed(
                    f"{ctx.agent}: token endpoint answered {result.status} {result.code}"
                )
            yield from ops.log(f"{ctx.agent}: refresh rejected ({result.code}); re-reading store")

    # Hooks: each is one decision a real engine makes; the corpus overrides one at a time.

    def resolve_store(self, ctx: AgentContext, path: str) -> Flow[str]:
        """The file the store's name links to (``resolve_links``), once per refresh under
        the lock: the file this refresh reads, stages beside and replaces."""
        return (yield from resolve_links(path))

    def read_document(self, ctx: AgentContext, path: str) -> Flow[dict[str, Any]]:
        """The store document: open, read to the end in one call, close."""
        return (yield from read_store(path))

    def exchange(self, ctx: AgentContext, refresh_token: str) -> Flow[Credential | TokenError]:
        """POST the refresh; when the response is lost, retry once at once.

        The server may have committed the rotation before the response was
        lost.  Retrying at once is the only hope of landing inside a reuse
        window; without one the token is gone whatever the client does.
        """
        try:
            return (yield from post_refresh(ctx, refresh_token))
        except (TimeoutError, ConnectionError):
            yield from ops.log(f"{ctx.agent}: refresh response lost; retrying at once")
        try:
            return (yield from post_refresh(ctx, refresh_token))
        except (TimeoutError, ConnectionError) as exc:
            raise RefreshFailed(f"{ctx.agent}: the token endpoint did not answer twice") from exc

    def save(self, ctx: AgentContext, path: str, credential: Credential) -> Flow[None]:
        """Under the store's write lock, re-read the document (other profiles may have
        changed) and replace it atomically.

        The refresh lock is per profile, so an agent refreshing another profile
        of the same file may be saving at the same moment; without this lock,
        the later replace would carry the earlier one's profile back.
        """
        store_lock = lock_path_for(
            LockScope.STORE_FILE,
            key=ctx.key,
            agent_dir=ctx.agent_dir,
            store_path=path,
            state_dir=ctx.state_dir,
        )
        nested = store_lock != self.lock_path(ctx)  # a lock keyed by the store: already held
        held = (yield from self.take_lock(ctx, store_lock)) if nested else None
        try:
            yield from self.write_store(ctx, path, credential)
        except RuntimeError:  # the flow of a killed process, being closed: no cleanup runs
            raise
        except Exception:
            if held is not None:
                yield from self.release_lock(ctx, held)
            raise
        if held is not None:
            yield from self.release_lock(ctx, held)

    #: Stage saves under the agent's name instead of the profile's: what a program whose
    #: lock does not exclude other processes must do, or its writers collide on one
    #: temp file.  The corpus's engines model such programs; the reference does not.
    stage_per_agent = False

    def staging(self, ctx: AgentContext) -> str:
        """The name this agent's saves are staged under (``AgentContext.staging``)."""
        return ctx.agent if self.stage_per_agent else ctx.staging

    def write_store(self, ctx: AgentContext, path: str, credential: Credential) -> Flow[None]:
        """Re-read the document (other profiles may have changed), replace it atomically,
        staged under the profile's name (``AgentContext.staging``)."""
        document = yield from self.read_document(ctx, path)
        data = render_store(with_credential(document, ctx.key, ctx.provider, credential))
        yield from atomic_write(path, data, writer=self.staging(ctx))

    def preflight(self, ctx: AgentContext, path: str, document: dict[str, Any]) -> Flow[None]:
        """Before the token is presented, prove that the answer can be saved: stage the
        current document where the new one will go, then remove it.

        A read-only, full or forbidden directory fails here, with
        ``StoreUnwritable`` naming it, and the refresh token stays unspent.
        """
        temp = temp_path(path, self.staging(ctx))
        try:
            fd = yield from create_fresh(temp)
            try:
                yield from ops.write(fd, render_store(document))
            finally:
                yield from ops.close(fd)
            yield from ops.unlink(temp)
        except OSError as exc:
            yield from discard(temp)
            directory, name = split_path(temp)
            raise StoreUnwritable(
                f"{ctx.agent}: cannot create files in {directory} "
                f"({exc.strerror or type(exc).__name__}: {name}), so a new credential could "
                "not be saved; the refresh token was not presented"
            ) from None

    def roll_forward(self, ctx: AgentContext, path: str, current: Credential) -> Flow[bool]:
        """Recover what a writer of this profile, killed before its replace, left on disk;
        True if the store now holds a newer credential.

        Runs under the profile's refresh lock, before anything is presented.  A
        complete staged document whose credential for this profile is newer than
        ``current`` (the store's) is saved into the store, so its token, not the spent
        one, is used; a partial, older or foreign one is removed.  The staged file is
        first moved to a second name, so a kill during the recovery leaves it findable.
        """
        temp = temp_path(path, self.staging(ctx))
        moved = temp_path(path, self.staging(ctx) + ".rf")
        best: tuple[Credential, str] | None = None
        found: list[str] = []
        for candidate in (temp, moved):
            staged = yield from self._stored(ctx, candidate)
            if staged is None:
                continue
            found.append(candidate)
            if not isinstance(staged, Credential) or staged.expires_at <= current.expires_at:
                continue
            if best is None or staged.expires_at > best[0].expires_at:
                best = staged, candidate
        if best is not None:
            credential, where = best
            yield from ops.log(f"{ctx.agent}: recovering the credential left in {where}")
            try:
                if where == temp:
                    yield from ops.replace(temp, moved)
                    where = moved
                    found = [moved]  # what was at ``moved`` before was replaced
                yield from self.save(ctx, path, credential)
            except OSError as exc:
                directory, _ = split_path(path)
                raise StoreUnwritable(
                    f"{ctx.agent}: cannot recover the credential kept in {where} into the "
                    f"store ({exc.strerror or type(exc).__name__} in {directory}); it stays "
                    "there for the next refresh, and no refresh token was presented"
                ) from None
        for leftover in found:
            yield from discard(leftover)
        return best is not None

    def _stored(self, ctx: AgentContext, candidate: str) -> Flow[Credential | bool | None]:
        """The profile's credential staged at ``candidate``; None if nothing is there, False
        if something is but holds none (partial, foreign, not a file)."""
        try:
            data = yield from read_file(candidate, MAX_STORE_BYTES)
        except FileNotFoundError:
            return None
        except OSError:
            return False
        if len(data) > MAX_STORE_BYTES:
            return False
        try:
            return credential_from(parse_store(data, candidate), ctx.key, candidate)
        except RefreshEngineError:
            return False

    def on_fresh_under_lock(self, ctx: AgentContext, path: str, before: Credential) -> Flow[None]:
        """Someone else refreshed while we waited for the lock: nothing to do."""
        return
        yield

    def after_unlock(self, ctx: AgentContext, credential: Credential) -> Flow[None]:
        """After the lock is released: nothing to do."""
        return
        yield


class BrokeredEngine(ReferenceEngine):
    """The broker layout: one agent (the broker) refreshes; every other agent only reads.

    A client whose credential is stale waits for the broker, re-reading the
    main store every ``poll`` seconds for up to ``patience`` seconds, and
    never presents a refresh token itself, so no two refreshes can race.
    """

    name = "broker"

    def __init__(self, broker: str = "broker", poll: float = 1.0, patience: float = 120.0):
        super().__init__()
        self.broker = broker
        self.poll = poll
        self.patience = patience

    def access_token(self, ctx: AgentContext) -> Flow[str]:
        if ctx.agent == self.broker:
            return (yield from super().access_token(ctx))
        waited = 0.0
        while True:
            credential = yield from read_credential(ctx.main_store, ctx.key)
            if credential.expires_at > (yield from ops.now()):
                return credential.access
            if waited >= self.patience:
                raise RefreshFailed(f"{ctx.agent}: the broker did not refresh in {waited:g}s")
            yield from ops.sleep(self.poll)
            waited += self.poll
