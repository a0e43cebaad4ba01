"""Run one agent of a Python engine as a real process, under the ``--command`` contract.

    python -m conformance.agent --engine reference

reads the ``TOKENRACE_*`` environment the harness sets (see ``_command``),
runs the engine's flow through ``RealWorld`` (real files, real locks, httpx to
the real fake server), prints the access token and exits 0, or exits 3 when
the engine raised ``ReloginRequired``.  So any engine of the suite can be
checked as real processes: ``tokenrace check --command "python -m
conformance.agent --engine mirrored" --layout mirrored``.
"""

from __future__ import annotations

import argparse
import os
import sys

import httpx

from refresh_engine import AgentContext, RealWorld, RefreshEngineError, ReloginRequired

from ._command import EXIT_RELOGIN
from ._engines import load_engine
from ._errors import ConformanceError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.agent")
    parser.add_argument("--engine", default="reference", help="built-in name or module:attribute")
    args = parser.parse_args(argv)
    try:
        engine = load_engine(args.engine).factory()
        env = os.environ
        store = env["TOKENRACE_STORE"]
        ctx = AgentContext(
            agent=env["TOKENRACE_AGENT"],
            provider=env["TOKENRACE_PROVIDER"],
            profile_id=env["TOKENRACE_PROFILE"],
            main_store=store,
            agent_dir=env["TOKENRACE_AGENT_DIR"],
            state_dir=env["TOKENRACE_STATE_DIR"],
            token_url=env["TOKENRACE_TOKEN_URL"],
            client_id=env.get("TOKENRACE_CLIENT_ID", env["TOKENRACE_AGENT"]),
            platform=sys.platform,
        )
    except (KeyError, ConformanceError) as exc:
        print(f"conformance.agent: {exc}", file=sys.stderr)
        return 2
    with httpx.Client(timeout=30.0) as http:
        try:
            token = RealWorld(http).run(engine.access_token(ctx))
        except ReloginRequired as exc:
            print(str(exc), file=sys.stderr)
            return EXIT_RELOGIN
        except (RefreshEngineError, OSError) as exc:
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
