"""The known-bug corpus: small engine variants, each re-creating a race seen in the wild.

Each variant is written against the public engine contract only (effects,
flows, ``AgentContext``, ``ReloginRequired``), as any user's engine would be,
and its docstring cites the report it comes from.  The suite must catch
every one of them.
"""

from __future__ import annotations

import posixpath

from refresh_engine import AgentContext, ReferenceEngine


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
