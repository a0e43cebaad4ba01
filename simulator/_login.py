"""An outside writer of the store: a login of the same tool, while agents refresh.

A user runs ``login`` (or an IDE re-authenticates) while agents are working:
a new grant arrives out of band and is written into the shared store, into
its own profile, concurrently with the agents' saves.  It is written the way
the engine under test writes (its ``save(ctx, path, credential)`` hook, with
its locks and re-read), as the tool's own login command would; an engine
without that hook is met by a login that follows the reference's protocol
(the store's write lock, a re-read under it, an atomic replace).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from fake_oauth_server import TokenPair
from refresh_engine import AgentContext, Credential, Flow, ReferenceEngine

from ._result import Engine


def outside_login(engine: Engine, ctx: AgentContext, pair: TokenPair) -> Flow[str]:
    """Save the grant ``pair`` into ``ctx``'s profile of the store; the new access token."""
    credential = Credential(pair.access_token, pair.refresh_token, pair.expires_at)
    writer: Any = engine if callable(getattr(engine, "save", None)) else ReferenceEngine()
    store_path = cast(Callable[[AgentContext], str], getattr(writer, "store_path", None))
    path = store_path(ctx) if callable(store_path) else ctx.main_store
    yield from writer.save(ctx, path, credential)
    return credential.access
