"""Engines built on ``msal-extensions``: its ``FilePersistence`` and ``CrossPlatLock``.

msal-extensions (AzureAD/microsoft-authentication-extensions-for-python) is
what MSAL Python apps use to share one token cache between processes.  Two
ways to build a refresh engine on it, both with the store in a
``FilePersistence`` (the shared ``auth-profiles.json``) and the lock a
``CrossPlatLock`` on ``<store>.lockfile`` (``PersistedTokenCache``'s default
lock location):

- ``MsalLockAcrossRefresh`` (``msal-extensions``): what a careful developer
  builds from these parts for a rotating server: an optimistic read first
  (``PersistedTokenCache.search``'s way: no lock, three tries half a second
  apart when the file does not parse), then the lock held across re-read,
  refresh and save.
- ``MsalPersistedTokenCachePattern`` (``msal-extensions-ptc``): the locking
  ``PersistedTokenCache`` itself does: reads are optimistic, the refresh
  happens outside the lock (MSAL's ``acquire_token_silent`` posts the
  refresh, then calls the cache's ``modify``), and only ``modify`` takes the
  lock to reload, change and save.  That is sound for Entra ID, whose old
  refresh tokens stay valid; on a server that rotates strictly it lets every
  process refresh.

Facts about msal-extensions 1.3 these engines inherit, unchanged: without the
``portalocker`` extra ``CrossPlatLock`` is an ``open(path, "x")`` lock file,
polled every 0.25 s, giving up after 5 s with ``LockError``, deleted on
release; ``FilePersistence.save`` rewrites the file in place
(``O_TRUNC`` then write), which is why its reads retry.
"""

from __future__ import annotations

import time

import httpx
from msal_extensions import CrossPlatLock, FilePersistence

from refresh_engine import AgentContext, Credential, CredentialMissing, StoreCorrupt

from ._common import Clock, load_credential, refresh, updated_document

#: PersistedTokenCache.search: three tries, half a second apart, when a read fails.
SEARCH_TRIES = 3
SEARCH_PAUSE = 0.5


def _search(persistence: FilePersistence, ctx: AgentContext) -> tuple[str, Credential]:
    """An optimistic read without the lock, retried the way PersistedTokenCache retries."""
    for attempt in range(SEARCH_TRIES):
        try:
            text = persistence.load()
            return text, load_credential(text, ctx, persistence.get_location())
        except (StoreCorrupt, CredentialMissing):  # a save in progress: empty or a prefix
            if attempt == SEARCH_TRIES - 1:
                raise
            time.sleep(SEARCH_PAUSE)
    raise AssertionError("unreachable")


class MsalLockAcrossRefresh:
    """CrossPlatLock held across re-read, refresh and save; FilePersistence as the store."""

    name = "msal-extensions"

    def access_token(self, ctx: AgentContext, http: httpx.Client, clock: Clock) -> str:
        persistence = FilePersistence(ctx.main_store)
        _, credential = _search(persistence, ctx)
        if credential.is_fresh(clock(), ctx.refresh_margin):
            return credential.access
        with CrossPlatLock(persistence.get_location() + ".lockfile"):
            text = persistence.load()
            credential = load_credential(text, ctx, persistence.get_location())
            if credential.is_fresh(clock(), ctx.refresh_margin):
                return credential.access  # someone refreshed while we waited
            new = refresh(ctx, http, clock, credential.refresh)
            persistence.save(updated_document(text, ctx, persistence.get_location(), new))
        return new.access


class MsalPersistedTokenCachePattern:
    """PersistedTokenCache's own locking: optimistic reads, refresh outside the lock."""

    name = "msal-extensions-ptc"

    def access_token(self, ctx: AgentContext, http: httpx.Client, clock: Clock) -> str:
        persistence = FilePersistence(ctx.main_store)
        _, credential = _search(persistence, ctx)
        if credential.is_fresh(clock(), ctx.refresh_margin):
            return credential.access
        new = refresh(ctx, http, clock, credential.refresh)
        with CrossPlatLock(persistence.get_location() + ".lockfile"):  # modify(): reload, save
            text = persistence.load()
            persistence.save(updated_document(text, ctx, persistence.get_location(), new))
        return new.access
