"""docs/your-engine.md's code works as written: the asyncio driver runs the reference
engine's flow for real (real files), against the fake server through respx."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import httpx
import respx
from conftest import seeded_store

from fake_oauth_server import AuditKind, AuthServer, Fault, Policy, mount_respx
from refresh_engine import (
    AgentContext,
    RealWorld,
    ReferenceEngine,
    read_credential,
)

DOC = (Path(__file__).resolve().parent.parent / "docs" / "your-engine.md").read_text("utf-8")


def _driver() -> Any:
    blocks = re.findall(r"```python\n(.*?)```", DOC, re.S)
    (source,) = [block for block in blocks if "async def run_async" in block]
    namespace: dict[str, Any] = {}
    exec(compile(source, "docs/your-engine.md", "exec"), namespace)
    return namespace["run_async"]


def _world(tmp_path: Path, server: AuthServer) -> AgentContext:
    return seeded_store(tmp_path, server, time.time() - 2 * server.policy.access_token_lifetime)


async def _refresh(ctx: AgentContext, server: AuthServer) -> str:
    run_async = _driver()
    with respx.mock(assert_all_called=False) as router:
        mount_respx(router, server)
        async with httpx.AsyncClient() as client:
            token: str = await run_async(ReferenceEngine().access_token(ctx), client)
            return token


def test_the_async_driver_refreshes_for_real(tmp_path: Path) -> None:
    server = AuthServer(Policy.preset("openai"), seed="doc")
    ctx = _world(tmp_path, server)
    token = asyncio.run(_refresh(ctx, server))
    assert server.check_access(token, time.time()).ok
    accepted = [e for e in server.audit if e.kind is AuditKind.ACCEPTED]
    assert len(accepted) == 1  # one refresh, and the store holds its answer
    assert RealWorld().run(read_credential(ctx.main_store, ctx.key)).access == token


def test_the_async_driver_waits_out_a_retry_after(tmp_path: Path) -> None:
    """A 429 with ``Retry-After: 1`` goes through ``Sleep`` as ``asyncio.sleep``."""
    server = AuthServer(Policy.preset("openai"), seed="doc")
    server.set_faults([Fault.rate_limit(retry_after=1)])
    ctx = _world(tmp_path, server)
    started = time.monotonic()
    token = asyncio.run(_refresh(ctx, server))
    assert time.monotonic() - started >= 1.0
    assert server.check_access(token, time.time()).ok
