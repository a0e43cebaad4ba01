"""One refresh by the reference engine, with the store's directory read-only or full.

Run by ``tests/test_real_world.py`` inside a private mount namespace (``unshare
-rm``), so it may mount: ``readonly DIR`` bind-mounts DIR read-only after the
store is written; ``full DIR`` mounts a 16 KiB tmpfs on DIR and fills it.  It
prints one JSON line: the error the engine raised, and how many refresh tokens
the server saw presented.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import httpx
import respx

from fake_oauth_server import DEFAULT_BASE_URL, AuditKind, AuthServer, Policy, mount_respx
from refresh_engine import (
    AgentContext,
    Credential,
    RealWorld,
    ReferenceEngine,
    RefreshEngineError,
    render_store,
    with_credential,
)

NOW = 1_767_225_600.0


def main(mode: str, directory: str) -> None:
    if mode == "full":
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", directory], check=True)
    server = AuthServer(Policy.preset("openai"), seed="probe")
    pair = server.seed_grant(NOW - 7200)  # expired an hour ago
    state = tempfile.mkdtemp()  # the locks live elsewhere: only the store's directory is bad
    ctx = AgentContext(
        agent="atlas",
        provider="openai-codex",
        profile_id="default",
        main_store=os.path.join(directory, "auth-profiles.json"),
        agent_dir=state,
        state_dir=state,
        token_url=DEFAULT_BASE_URL + "/oauth/token",
    )
    credential = Credential(pair.access_token, pair.refresh_token, pair.expires_at)
    with open(ctx.main_store, "wb") as store:
        store.write(render_store(with_credential({}, ctx.key, ctx.provider, credential)))
    if mode == "readonly":
        subprocess.run(["mount", "--bind", "-o", "ro", directory, directory], check=True)
    else:
        for number in range(64):  # a 16 KiB tmpfs holds 4 pages: bounded
            try:
                with open(os.path.join(directory, f"filler{number}"), "wb") as filler:
                    filler.write(b"\0" * 4096)
            except OSError:
                break
    error = ""
    with respx.mock(assert_all_called=False) as router, httpx.Client() as http:
        mount_respx(router, server, clock=lambda: NOW)
        try:
            RealWorld(http, clock=lambda: NOW).run(ReferenceEngine().access_token(ctx))
        except RefreshEngineError as exc:
            error = f"{type(exc).__name__}: {exc}"
    presented = sum(1 for event in server.audit if event.kind is AuditKind.PRESENTED)
    print(json.dumps({"error": error, "presented": presented}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
