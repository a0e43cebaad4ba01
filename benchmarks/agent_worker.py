"""An agent process for the real-process benchmarks.

    python benchmarks/agent_worker.py once --engine NAME [--agents a,b]
    python benchmarks/agent_worker.py serve

``once`` is what a user's stress test starts: one process that asks for a
token once and exits, configured by the ``--command`` environment contract
(``conformance/_command.py``: ``TOKENRACE_STORE``, ``TOKENRACE_AGENT``, ...).
``--agents a,b`` runs several agents of one gateway process as threads
(their dirs are ``<state dir>/agents/<name>/agent``).
It prints one JSON line per agent and exits 0 (or 3 if one needs a new login,
1 on an engine error), like ``python -m conformance.agent``.

``serve`` is a long-lived pool worker for ``bench_engines.py``: it reads JSON
commands on stdin (``setup`` an engine and context, ``go`` at a shared
monotonic instant, with an optional clock offset (0 in the benchmarks),
``bare`` refreshes for the server's own latency, ``quit``) and answers each
with one JSON line.

``NAME`` is a built-in engine (``reference``, a corpus engine), a
``module:attribute`` flow engine, or a peer engine of ``benchmarks/peers``
(``msal-extensions``, ``msal-extensions-ptc``, ``filelock-copy``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import posixpath
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

# benchmarks/ (for ``peers``) and, after it, the repository (for ``conformance``'s corpus
# file and ``fake_oauth_server``'s token module): the Windows CPython under Wine reads its
# path from its ``._pth`` file and ignores PYTHONPATH, so the worker puts them there itself
_HERE = Path(__file__).resolve().parent
for _path in (str(_HERE.parent), str(_HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from peers import PEERS  # noqa: E402

from refresh_engine import (  # noqa: E402
    AgentContext,
    BrokeredEngine,
    RealWorld,
    ReferenceEngine,
    ReloginRequired,
)

EngineCall = Callable[[AgentContext, httpx.Client, Callable[[], float]], str]
EXIT_RELOGIN = 3


def _load_file(package: str, module: str, alias: str) -> Any:
    """``package/module.py`` loaded from its file, without importing ``package``.

    ``fake_oauth_server``'s ``__init__`` imports uvicorn and respx, and
    ``conformance``'s the simulator and Hypothesis: neither is there under
    Wine (its interpreter gets the pure-Python engine and httpx only), and
    natively they would be most of an agent process's start-up.
    """
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise ImportError(f"package {package!r} not found on {sys.path}")
    path = Path(found.submodule_search_locations[0]) / f"{module}.py"
    spec = importlib.util.spec_from_file_location(alias, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


redact: Callable[[str], str] = _load_file(
    "fake_oauth_server", "_tokens", "tokenrace_bench_tokens"
).redact


def make_engine(name: str) -> EngineCall:
    """A callable that gets one token: a peer engine as it is, a flow engine through RealWorld."""
    if name in PEERS:
        return PEERS[name]().access_token
    engine = flow_engine(name)

    def call(ctx: AgentContext, http: httpx.Client, clock: Callable[[], float]) -> str:
        return RealWorld(http, clock=clock).run(engine.access_token(ctx))

    return call


def flow_engine(name: str) -> Any:
    """A built-in engine by name, or any ``module:attribute`` one (through ``conformance``).

    The corpus module imports nothing but ``refresh_engine``, so it is loaded
    from its file without the ``conformance`` package, whose import (the
    simulator, Hypothesis, rich: about 0.3 s) would otherwise be most of an
    agent process's start-up, and so of a stress test's start-up jitter.
    """
    if name == "reference":
        return ReferenceEngine()
    if name == "broker":
        return BrokeredEngine()
    if ":" not in name:
        corpus = _load_file("conformance", "_corpus", "tokenrace_bench_corpus")
        for engine in corpus.CORPUS:
            if engine.name == name:
                return engine()
    from conformance import load_engine

    return load_engine(name).factory()


def obtain(
    call: EngineCall,
    ctx: AgentContext,
    http: httpx.Client,
    offset: float,
    now: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """One call for a token, timed; never raises.  ``now`` is the clock the offset moves."""

    def clock() -> float:
        return now() + offset

    started = time.perf_counter()
    try:
        token = call(ctx, http, clock)
    except ReloginRequired as exc:
        return _answer(ctx.agent, started, error=f"ReloginRequired: {exc}", relogin=True)
    except Exception as exc:  # any engine failure is an outcome, not a crash of the harness
        return _answer(ctx.agent, started, error=f"{type(exc).__name__}: {exc}")
    return _answer(ctx.agent, started, token=token)


def _answer(
    agent: str, started: float, *, token: str = "", error: str = "", relogin: bool = False
) -> dict[str, Any]:
    return {
        "agent": agent,
        "ok": not error,
        "seconds": time.perf_counter() - started,
        "token": token,
        "error": redact(error)[:300],
        "relogin": relogin,
    }


def context(data: dict[str, Any]) -> AgentContext:
    return AgentContext(**data)


def _env_context(agent: str, agent_dir: str) -> AgentContext:
    env = os.environ
    return AgentContext(
        agent=agent,
        provider=env["TOKENRACE_PROVIDER"],
        profile_id=env["TOKENRACE_PROFILE"],
        main_store=env["TOKENRACE_STORE"],
        agent_dir=agent_dir,
        state_dir=env["TOKENRACE_STATE_DIR"],
        token_url=env["TOKENRACE_TOKEN_URL"],
        client_id=agent,
        platform=sys.platform,
    )


def once(engine: str, agents: list[str], start_at: float | None = None) -> int:
    """Every agent of this process asks for a token once (threads when several).

    ``start_at``: a wall-clock instant (``time.time()``, the one clock a
    Windows process under Wine shares with Linux) to wait for, once the
    engine is loaded, before asking: a start barrier for processes whose
    start-up varies by more than the race window (Wine's).  An instant
    already past, or more than 10 s ahead, is not waited for.
    """
    env = os.environ
    offset = 0.0
    if agents:
        contexts = [
            _env_context(name, posixpath.join(env["TOKENRACE_STATE_DIR"], "agents", name, "agent"))
            for name in agents
        ]
    else:
        contexts = [_env_context(env["TOKENRACE_AGENT"], env["TOKENRACE_AGENT_DIR"])]
    results: list[dict[str, Any]] = []

    def run(ctx: AgentContext) -> None:
        call = make_engine(engine)
        with httpx.Client(timeout=30.0) as http:
            late = _wait_until_wall(start_at) if start_at is not None else 0.0
            results.append(obtain(call, ctx, http, offset) | {"late": late})

    threads = [threading.Thread(target=run, args=(ctx,)) for ctx in contexts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for result in results:
        print(json.dumps(result), flush=True)
    if any(result["relogin"] for result in results):
        return EXIT_RELOGIN
    return 0 if len(results) == len(contexts) and all(r["ok"] for r in results) else 1


def serve() -> int:
    """The pool worker: one JSON command per line on stdin, one JSON answer per line."""
    call: EngineCall | None = None
    ctx: AgentContext | None = None
    with httpx.Client(timeout=30.0) as http:
        for line in sys.stdin:
            message = json.loads(line)
            op = message["op"]
            if op == "quit":
                break
            if op == "setup":
                call = make_engine(message["engine"])
                ctx = context(message["ctx"])
                answer: dict[str, Any] = {"ok": True}
            elif op == "go":
                _wait_until(message["start_at"])
                if call is None or ctx is None:
                    answer = {"ok": False, "error": "NotSetUp: go before setup"}
                else:
                    answer = obtain(call, ctx, http, float(message["offset"]))
            elif op == "bare":
                _wait_until(message["start_at"])
                answer = bare(
                    http, message["token_url"], message["refresh_token"], message["count"]
                )
            else:
                answer = {"ok": False, "error": f"unknown op {op!r}"}
            print(json.dumps(answer), flush=True)
    return 0


def bare(http: httpx.Client, url: str, refresh_token: str, count: int) -> dict[str, Any]:
    """``count`` plain refreshes in a row on one grant: the server's own latency, client-side."""
    seconds = []
    statuses = []
    for _ in range(count):
        started = time.perf_counter()
        response = http.post(
            url, data={"grant_type": "refresh_token", "refresh_token": refresh_token}
        )
        seconds.append(time.perf_counter() - started)
        statuses.append(response.status_code)
        if response.status_code != 200:
            break
        refresh_token = response.json()["refresh_token"]
    return {"ok": True, "seconds": seconds, "statuses": statuses, "refresh_token": refresh_token}


def _wait_until_wall(start_at: float) -> float:
    """Sleep until the wall-clock instant ``start_at``; how late this call came (0 if not)."""
    delay = float(start_at) - time.time()
    if 0 < delay < 10:
        time.sleep(delay)
    return max(0.0, -delay)


def _wait_until(start_at: float) -> None:
    """Sleep until a shared CLOCK_MONOTONIC instant (system-wide on Linux): a start barrier."""
    delay = float(start_at) - time.monotonic()
    if 0 < delay < 10:
        time.sleep(delay)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/agent_worker.py")
    sub = parser.add_subparsers(dest="mode", required=True)
    one = sub.add_parser("once", help="ask for a token once, configured by TOKENRACE_* variables")
    one.add_argument("--engine", default="reference")
    one.add_argument("--agents", default="", help="several agents of one process, as threads")
    one.add_argument(
        "--start-at", type=float, default=None, help="wall-clock instant to ask at (a barrier)"
    )
    sub.add_parser("serve", help="a pool worker reading JSON commands on stdin")
    args = parser.parse_args(argv)
    if args.mode == "serve":
        return serve()
    agents = [name for name in args.agents.split(",") if name]
    return once(args.engine, agents, args.start_at)


if __name__ == "__main__":
    sys.exit(main())
