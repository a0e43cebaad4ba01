"""Refresh throughput and latency of the real fake server on loopback.

    python benchmarks/bench_server.py [--requests 3000] [--seconds 10] [--clients 1,8,64]

Starts ``python -m fake_oauth_server --port 0`` in a child process (so the
server and the load generator do not share one interpreter lock), then for
each concurrency level runs that many clients, each with its own connection
and its own grant, refreshing in a loop: a successful rotation every time
(strict one-time rotation, the ``openai`` preset).  Each level stops after
``--requests`` refreshes or ``--seconds`` seconds, whichever comes first.
Prints requests per second and p50/p99 latency as the client saw it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import secrets
import signal
import ssl
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
CONTROL_TOKEN = secrets.token_hex(16)
CONTROL_HEADERS = {"x-control-token": CONTROL_TOKEN}


@dataclass
class Level:
    clients: int
    requests: int
    errors: int
    seconds: float
    latencies: list[float]

    def row(self) -> str:
        ordered = sorted(self.latencies)
        p50 = statistics.median(ordered) * 1000
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
        rate = self.requests / self.seconds
        return (
            f"| {self.clients:>7} | {self.requests:>8} | {self.seconds:>7.2f} | {rate:>9.0f} "
            f"| {p50:>8.2f} | {p99:>8.2f} | {self.errors:>6} |"
        )


async def run_level(base_url: str, clients: int, total: int, seconds: float) -> Level:
    latencies: list[float] = []
    errors = 0
    remaining = total
    context = ssl.create_default_context()
    async with contextlib.AsyncExitStack() as stack:
        pool = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=base_url, timeout=30, trust_env=False, verify=context)
            )
            for _ in range(clients)
        ]
        tokens = []
        for index, http in enumerate(pool):
            user = {"user": f"u{index}"}
            grant = await http.post("/_control/grants", json=user, headers=CONTROL_HEADERS)
            tokens.append(grant.json()["refresh_token"])
        deadline = time.monotonic() + seconds

        async def client(index: int) -> None:
            nonlocal remaining, errors
            http = pool[index]
            while remaining > 0 and time.monotonic() < deadline:
                remaining -= 1
                body = {"grant_type": "refresh_token", "refresh_token": tokens[index]}
                started = time.perf_counter()
                response = await http.post("/oauth/token", data=body)
                latencies.append(time.perf_counter() - started)
                if response.status_code == 200:
                    tokens[index] = response.json()["refresh_token"]
                else:
                    errors += 1

        started = time.monotonic()
        await asyncio.gather(*(client(index) for index in range(clients)))
        elapsed = time.monotonic() - started
    return Level(clients, len(latencies), errors, elapsed, latencies)


def start_server() -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "fake_oauth_server", "--port", "0", "--policy", "openai"]
    command += ["--control-token", CONTROL_TOKEN]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    assert process.stdout is not None
    first = process.stdout.readline()
    if not first.startswith("fake_oauth_server listening on "):
        process.kill()
        raise SystemExit(f"the server did not start: {first!r}")
    return process, first.split()[3]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="refreshes per level (max)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per level (max)")
    parser.add_argument("--clients", default="1,8,64", help="concurrency levels, comma-separated")
    args = parser.parse_args(argv)
    levels = [int(part) for part in args.clients.split(",") if part.strip()]
    if not levels or min(levels) < 1 or max(levels) > 512:
        parser.error("--clients takes 1-512 clients per level")
    if not 1 <= args.requests <= 1_000_000 or not 0 < args.seconds <= 600:
        parser.error("--requests 1-1000000 and --seconds up to 600")
    process, base_url = start_server()
    try:
        print(
            f"fake_oauth_server on {base_url}: Python {platform.python_version()}, "
            f"uvicorn {version('uvicorn')} (h11), httpx {version('httpx')} client, "
            f"{os.cpu_count()} CPUs, {platform.system()} {platform.machine()}"
        )
        print("| clients | requests | seconds | refresh/s | p50 (ms) | p99 (ms) | errors |")
        print("|--------:|---------:|--------:|----------:|---------:|---------:|-------:|")
        for clients in levels:
            level = asyncio.run(run_level(base_url, clients, args.requests, args.seconds))
            print(level.row(), flush=True)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
