"""An outside writer of the store: a login of the same tool, while agents refresh.

A user runs ``login`` (or an IDE re-authenticates) while agents are working:
a new grant arrives out of band and is written into the shared store, into
its own profile, concurrently with the agents' saves.  It is written the way
the engine under test writes a credential, as the tool's own login command
would: its refresh lock of that profile (``acquire_lock``), then its
``save(ctx, path, credential)`` (the store's write lock, a re-read under it,
an atomic replace, for the reference).  An engine without those hooks is met
by a login that follows the reference's protocol.

(A first model called ``save`` without the refresh lock.  That killed the
``narrow-lock/store-file`` mutant, whose refresh lock is the store's write
lock: the reference's ``save`` then takes no lock of its own, trusting its
caller to hold it, so the login wrote under no lock at all.  A login of the
same tool goes through the same lock as its refreshes, so it is modelled so.)
"""

from __future__ import annotations

from typing import Any

from fake_oauth_server import TokenPair
from refresh_engine import AgentContext, Credential, Flow, ReferenceEngine

from ._result import Engine


def outside_login(engine: Engine, ctx: AgentContext, pair: TokenPair) -> Flow[str]:
    """Save the grant ``pair`` into ``ctx``'s profile of the store, holding the engine's
    refresh lock of that profile as every credential write of its protocol does; the new
    access token."""
    credential = Credential(pair.access_token, pair.refresh_token, pair.expires_at)
    hooks = ("save", "acquire_lock", "release_lock", "store_path")
    speaks = all(callable(getattr(engine, hook, None)) for hook in hooks)
    writer: Any = engine if speaks else ReferenceEngine()
    held = yield from writer.acquire_lock(ctx)
    try:
        yield from writer.save(ctx, writer.store_path(ctx), credential)
    finally:
        yield from writer.release_lock(ctx, held)
    return credential.access
