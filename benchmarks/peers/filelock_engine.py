"""An engine built on ``filelock`` (tox-dev/filelock), each agent keeping its own copy.

This is how such code is usually written (and how OpenClaw's was before
openclaw/openclaw#74055 was fixed): every agent reads and writes its own
``auth-profiles.json`` in its agent dir, seeded by copying the main one, and
serializes refreshes with a ``filelock.FileLock`` keyed by provider +
profileId in the shared state dir.  Under the lock it re-reads (its own
copy), refreshes if still needed, writes its copy back in place
(``open(path, "w")`` + ``json.dump``, the common idiom) and mirrors it to the
main store for agents started later.  The lock is right; the copy it reads
under the lock is not the one the previous holder wrote, so the second
agent spends the token the first one already rotated.
"""

from __future__ import annotations

import os
import shutil

import httpx
from filelock import FileLock

from refresh_engine import AgentContext

from ._common import Clock, load_credential, lock_name, refresh, updated_document

STORE_NAME = "auth-profiles.json"
LOCK_TIMEOUT = 60.0  # seconds; filelock's default is to wait forever


class FilelockPerAgentCopy:
    name = "filelock-copy"

    def access_token(self, ctx: AgentContext, http: httpx.Client, clock: Clock) -> str:
        own = os.path.join(ctx.agent_dir, STORE_NAME)
        if not os.path.exists(own):  # first start: seed the copy from main, as the docs said
            os.makedirs(ctx.agent_dir, exist_ok=True)
            shutil.copyfile(ctx.main_store, own)
        with open(own) as handle:
            credential = load_credential(handle.read(), ctx, own)
        if credential.is_fresh(clock(), ctx.refresh_margin):
            return credential.access
        locks = os.path.join(ctx.state_dir, "locks")
        os.makedirs(locks, exist_ok=True)
        with FileLock(os.path.join(locks, lock_name(ctx)), timeout=LOCK_TIMEOUT):
            with open(own) as handle:
                text = handle.read()
            credential = load_credential(text, ctx, own)
            if credential.is_fresh(clock(), ctx.refresh_margin):
                return credential.access
            new = refresh(ctx, http, clock, credential.refresh)
            document = updated_document(text, ctx, own, new)
            with open(own, "w") as handle:
                handle.write(document)
            temp = ctx.main_store + f".{ctx.agent}.tmp"
            with open(temp, "w") as handle:
                handle.write(document)
            os.replace(temp, ctx.main_store)
        return new.access
