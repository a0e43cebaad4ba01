"""The known-bug corpus: small engine variants, each re-creating a race seen in the wild.

Each variant is written against the public engine contract only (effects,
flows, ``AgentContext``, ``ReloginRequired``), as any user's engine would be,
and its docstring cites the report it comes from.  The suite must catch
every one of them.
"""

from __future__ import annotations

import posixpath

from refresh_engine import AgentContext, LockKind, ReferenceEngine


class MirroredChildStores(ReferenceEngine):
    """Class 1 of RACES.md, refresh from a stale copy: OpenClaw 2026.4.26.

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


class NoCrossProcessLock(ReferenceEngine):
    """Class 3 of RACES.md, no cross-process lock: several CLI instances share ``auth.json``.

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
