"""Running the real server: uvicorn on loopback, in the foreground or in a thread.

``main(argv)`` is ``python -m fake_oauth_server`` (and ``tokenrace serve``):
it binds 127.0.0.1 (port 8900 by default, 0 for any free port), prints the
URL it really listens on and the control token, and serves until
interrupted.  Served from the command line, tokens are random unless
``--seed`` is given; binding beyond loopback takes ``--allow-remote`` and
turns the control API off unless ``--control`` asks for it.
``serve_in_thread(...)`` does the same inside a test (seed ``"0"`` by
default, so runs replay) and hands back a ``RunningServer`` with the URL,
the core and a ``ControlClient`` that carries the control token; leaving
the ``with`` block lets held requests go and stops the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TextIO

import uvicorn

from ._access import CONTROL_TOKEN_HEADER, ControlAccess, is_loopback, new_control_token
from ._asgi import FakeOAuthApp
from ._client import ControlClient, control_headers
from ._core import METADATA_PATH, TOKEN_PATH, AuthServer
from ._errors import FakeServerError, ServeError
from ._guard import Guard, Limits, protocol_for
from ._policy import Policy
from ._presets import PRESETS, preset_name
from ._tokens import fingerprint

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8900


class _GuardedServer(uvicorn.Server):
    """uvicorn's server, its event loop's errors reported by the guard in one line each."""

    def __init__(self, config: uvicorn.Config, guard: Guard) -> None:
        super().__init__(config)
        self.guard = guard

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio.get_running_loop().set_exception_handler(self.guard.loop_error)
        await super().startup(sockets)


def check_bind(host: str, *, allow_remote: bool) -> None:
    """Refuse an address beyond loopback unless ``allow_remote`` says so."""
    if not allow_remote and not is_loopback(host):
        raise FakeServerError(
            f"{host} is not a loopback address; pass --allow-remote to serve beyond this machine"
        )


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


def _uvicorn(app: FakeOAuthApp, guard: Guard) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        http=protocol_for(guard),
        ws="none",
        lifespan="on",
        loop="asyncio",
        log_config=None,
        log_level="error",  # the guard reports protocol trouble, one line per kind
        access_log=False,
        proxy_headers=False,
        timeout_graceful_shutdown=3,
    )
    return _GuardedServer(config, guard)


@dataclass(slots=True)
class RunningServer:
    """A real fake server in this process: its URL, its core, its control API."""

    base_url: str
    server: AuthServer
    app: FakeOAuthApp
    control: ControlClient
    #: The token the control API asks for (``None``: it asks for none).
    control_token: str | None = None

    @property
    def token_url(self) -> str:
        return self.base_url + TOKEN_PATH

    @property
    def control_headers(self) -> dict[str, str]:
        """Headers for a hand-made control request (``X-Control-Token``)."""
        return control_headers(self.control_token)


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
    control_token: str | None = None,
    limits: Limits | None = None,
    log: Callable[[str], None] | None = None,
    allow_remote: bool = False,
) -> Iterator[RunningServer]:
    """Serve a fresh ``AuthServer`` on ``host:port`` from a background thread.

    ``access_log`` gets one line per request, tokens shown as fingerprints;
    ``log`` gets the guard's lines (stderr by default).  The control API asks
    for ``control_token`` (a random one by default), which ``control`` carries.
    """
    chosen = Policy.preset(policy) if isinstance(policy, str) else policy
    check_bind(host, allow_remote=allow_remote)
    token = control_token if control_token is not None else new_control_token()
    access = ControlAccess(token=token, loopback_only=is_loopback(host))
    guard = Guard(limits or Limits(), log)
    sock = bind(host, port)
    base_url = url_of(sock)
    server = AuthServer(chosen, seed=seed, issuer=base_url)
    app = FakeOAuthApp(server, hold_timeout=hold_timeout, access_log=access_log, control=access)
    runner = _uvicorn(app, guard)
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
    control = ControlClient(base_url, token=token)
    try:
        yield RunningServer(base_url, server, app, control, token)
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
        "--allow-remote", action="store_true", help="allow a --host beyond loopback"
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
    parser.add_argument(
        "--seed", default=None, help="token minting seed, for replayable tokens (default: random)"
    )
    parser.add_argument(
        "--hold-timeout", type=float, default=60.0, help="seconds a held request may wait"
    )
    parser.add_argument(
        "--access-log", action="store_true", help="log each request (tokens as fingerprints)"
    )
    switch = parser.add_mutually_exclusive_group()
    switch.add_argument(
        "--no-control", dest="control", action="store_false", default=None, help="no control API"
    )
    switch.add_argument(
        "--control", dest="control", action="store_true", help="a control API beyond loopback too"
    )
    parser.add_argument(
        "--control-token",
        metavar="TOKEN",
        help=f"what the control API asks for in {CONTROL_TOKEN_HEADER} (default: random, printed)",
    )
    limits = Limits()
    for name, part, default in (
        ("header", "headers", limits.header_timeout),
        ("body", "body", limits.body_timeout),
    ):
        parser.add_argument(
            f"--{name}-timeout",
            type=float,
            default=default,
            help=f"seconds a client may take to send a request's {part} (default %(default)s)",
        )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=limits.max_connections,
        help="connections open at once (default %(default)s, from the file limit)",
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
    try:
        options = _options(args)
        sock = bind(args.host, args.port)
    except FakeServerError as error:
        print(f"fake_oauth_server: {error}", file=sys.stderr)
        return 2 if not isinstance(error, ServeError) else 1
    policy, limits, access = options
    base_url = url_of(sock)

    def log(line: str) -> None:
        print(line, file=stdout, flush=True)

    seed = args.seed if args.seed is not None else secrets.token_hex(16)
    server = AuthServer(policy, seed=seed, issuer=base_url)
    app = FakeOAuthApp(
        server,
        hold_timeout=args.hold_timeout,
        access_log=log if args.access_log else None,
        control=access,
    )
    name = preset_name(policy) or f"{args.policy} with {', '.join(args.set)}"
    print(f"fake_oauth_server listening on {base_url} (policy {name})", file=stdout)
    print(f"  token endpoint  {base_url}{TOKEN_PATH}", file=stdout)
    print(f"  metadata        {base_url}{METADATA_PATH}", file=stdout)
    if not access.enabled:
        print("  control API     off", file=stdout)
    else:
        doc = "see docs/fake-oauth-server.md"
        print(f"  control API     {base_url}/_control/ ({doc})", file=stdout)
        given = args.control_token
        shown = access.token if given is None else f"as given, {fingerprint(given)}"
        print(f"  control token   {shown} (send it as {CONTROL_TOKEN_HEADER})", file=stdout)
    if args.seed is None:
        print("  tokens          random (--seed S makes them replayable)", file=stdout)
    if not ipaddress.ip_address(args.host).is_loopback:
        print("  warning: not loopback; anyone who can reach it can mint tokens", file=stdout)
    stdout.flush()
    try:
        _uvicorn(app, Guard(limits)).run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        app.close()
        sock.close()
    return 0


def _options(args: argparse.Namespace) -> tuple[Policy, Limits, ControlAccess]:
    """The policy, limits and control access the arguments ask for, or a one-line error."""
    if not 0 <= args.port <= 65535:
        raise FakeServerError("--port must be 0-65535")
    if not 0 < args.hold_timeout <= 3600:
        raise FakeServerError("--hold-timeout must be 0-3600 seconds")
    if args.seed is not None and not args.seed:
        raise FakeServerError("--seed must not be empty")
    policy = _policy_from_args(args.policy, args.set)
    try:
        limits = Limits(args.header_timeout, args.body_timeout, args.max_connections)
    except ValueError as error:
        raise FakeServerError(str(error).replace("_", "-")) from None
    check_bind(args.host, allow_remote=args.allow_remote)
    token = args.control_token
    if token is not None and (len(token) < 16 or not token.isascii() or not token.isprintable()):
        raise FakeServerError("--control-token must be at least 16 printable ASCII characters")
    loopback = is_loopback(args.host)
    enabled = loopback if args.control is None else bool(args.control)
    access = ControlAccess(
        enabled=enabled, token=token or new_control_token(), loopback_only=loopback
    )
    return policy, limits, access
