"""Running the real server: uvicorn on loopback, in the foreground or in a thread.

``main(argv)`` is ``python -m fake_oauth_server`` (and ``tokenrace serve``):
it binds 127.0.0.1 (port 8900 by default, 0 for any free port), prints the
URL it really listens on, and serves until interrupted.
``serve_in_thread(...)`` does the same inside a test and hands back a
``RunningServer`` with the URL, the core and a ``ControlClient``; leaving
the ``with`` block lets held requests go and stops the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TextIO

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from ._asgi import CONNECTIONS, FakeOAuthApp
from ._client import ControlClient
from ._core import METADATA_PATH, TOKEN_PATH, AuthServer
from ._errors import FakeServerError, ServeError
from ._policy import Policy
from ._presets import PRESETS, preset_name

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8900


class _TrackingProtocol(H11Protocol):
    """uvicorn's h11 protocol, registering each connection so faults can cut it."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        CONNECTIONS[(self.server, self.client)] = transport

    def connection_lost(self, exc: Exception | None) -> None:
        CONNECTIONS.pop((self.server, self.client), None)
        super().connection_lost(exc)


def bind(host: str = DEFAULT_HOST, port: int = 0) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port)."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        raise ServeError(f"host must be an IP address, got {host!r}") from None
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as error:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _uvicorn(app: FakeOAuthApp) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        http=_TrackingProtocol,
        ws="none",
        lifespan="on",
        loop="asyncio",
        log_config=None,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        timeout_graceful_shutdown=3,
    )
    return uvicorn.Server(config)


@dataclass(slots=True)
class RunningServer:
    """A real fake server in this process: its URL, its core, its control API."""

    base_url: str
    server: AuthServer
    app: FakeOAuthApp
    control: ControlClient

    @property
    def token_url(self) -> str:
        return self.base_url + TOKEN_PATH


@contextlib.contextmanager
def serve_in_thread(
    policy: Policy | str = "openai",
    *,
    seed: str = "0",
    host: str = DEFAULT_HOST,
    port: int = 0,
    hold_timeout: float = 60.0,
    startup_timeout: float = 10.0,
    access_log: Callable[[str], None] | None = None,
) -> Iterator[RunningServer]:
    """Serve a fresh ``AuthServer`` on ``host:port`` from a background thread.

    ``access_log`` gets one line per request, tokens shown as fingerprints.
    """
    chosen = Policy.preset(policy) if isinstance(policy, str) else policy
    sock = bind(host, port)
    base_url = url_of(sock)
    server = AuthServer(chosen, seed=seed, issuer=base_url)
    app = FakeOAuthApp(server, hold_timeout=hold_timeout, access_log=access_log)
    runner = _uvicorn(app)
    thread = threading.Thread(
        target=runner.run, kwargs={"sockets": [sock]}, name="fake-oauth-server", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not runner.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            runner.should_exit = True
            sock.close()
            raise ServeError(f"the server on {base_url} did not start")
        time.sleep(0.005)
    control = ControlClient(base_url)
    try:
        yield RunningServer(base_url, server, app, control)
    finally:
        control.close()
        app.shutdown_soon()
        runner.should_exit = True
        thread.join(timeout=10)
        app.close()
        sock.close()


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve a fake OAuth token authority for refresh-token races on loopback.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address (default %(default)s)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port (default %(default)s; 0: any free)"
    )
    parser.add_argument(
        "--policy", default="openai", choices=PRESETS, help="preset (default %(default)s)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a policy field, e.g. --set reuse_window=30 (repeatable)",
    )
    parser.add_argument("--seed", default="0", help="token minting seed (default %(default)s)")
    parser.add_argument(
        "--hold-timeout", type=float, default=60.0, help="seconds a held request may wait"
    )
    parser.add_argument(
        "--access-log", action="store_true", help="log each request (tokens as fingerprints)"
    )
    return parser


def _policy_from_args(preset: str, overrides: Sequence[str]) -> Policy:
    import json

    fields: dict[str, object] = {"preset": preset}
    for item in overrides:
        name, sep, text = item.partition("=")
        if not sep:
            raise FakeServerError(f"--set needs FIELD=VALUE, got {item!r}")
        try:
            fields[name.strip()] = json.loads(text)
        except ValueError:
            fields[name.strip()] = text
    return Policy.from_json(fields)


def main(
    argv: Sequence[str] | None = None,
    *,
    prog: str = "python -m fake_oauth_server",
    out: TextIO | None = None,
) -> int:
    """Run the server until interrupted; 0 on a clean stop, 1 if it cannot start, 2 on usage.

    ``prog`` names the command in usage messages (``tokenrace serve``).
    """
    stdout = out or sys.stdout
    parser = _parser(prog)
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error("--port must be 0-65535")
    if not 0 < args.hold_timeout <= 3600:
        parser.error("--hold-timeout must be 0-3600 seconds")
    try:
        policy = _policy_from_args(args.policy, args.set)
        sock = bind(args.host, args.port)
    except FakeServerError as error:
        print(f"fake_oauth_server: {error}", file=sys.stderr)
        return 2 if not isinstance(error, ServeError) else 1
    base_url = url_of(sock)

    def log(line: str) -> None:
        print(line, file=stdout, flush=True)

    server = AuthServer(policy, seed=args.seed, issuer=base_url)
    app = FakeOAuthApp(
        server, hold_timeout=args.hold_timeout, access_log=log if args.access_log else None
    )
    name = preset_name(policy) or f"{args.policy} with {', '.join(args.set)}"
    print(f"fake_oauth_server listening on {base_url} (policy {name})", file=stdout)
    print(f"  token endpoint  {base_url}{TOKEN_PATH}", file=stdout)
    print(f"  metadata        {base_url}{METADATA_PATH}", file=stdout)
    print(f"  control API     {base_url}/_control/ (see docs/fake-oauth-server.md)", file=stdout)
    if not ipaddress.ip_address(args.host).is_loopback:
        print("  warning: not loopback; anyone who can reach it can mint tokens", file=stdout)
    stdout.flush()
    try:
        _uvicorn(app).run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        app.close()
        sock.close()
    return 0
