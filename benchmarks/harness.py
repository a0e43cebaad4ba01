"""What the real-process benchmarks share: worlds on disk, judging a run, statistics, tables.

A *world* here is a temporary directory laid out the way ``--command`` engines
see it (``conformance/_command.py``): ``<root>/agents/main/agent/auth-profiles.json``
is the main store, ``<root>/agents/<agent>/agent/`` each agent's dir,
``<root>`` the shared state dir (locks go under ``<root>/locks``).  Logins are
minted straight from the running server's core and written the way the
scenario's layout says (shared, mirrored copies, or a login per agent).

Expiries are driven without waiting by *ageing the stores*: between rounds,
when no agent runs, ``DiskWorld.age(seconds)`` moves the ``expires`` of every
credential in every store (main and copies) back by ``seconds``, which is
what the clock moving forward by that much looks like to every engine.  Every
clock stays real.  (A shared clock offset for the agents and the server was
tried first and dropped: an engine that compares a lock file's mtime with its
own clock, like the stale-lock break of class 6, then sees every lock as
``offset`` seconds old and breaks it, a race the harness made, not the
engine.)

Tokens never leave memory raw: tables and reports carry counts and fingerprints.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from fake_oauth_server import AuditEvent, AuditKind, RunningServer, TokenKind
from refresh_engine import AgentContext, Credential, profile_key, render_store, with_credential
from simulator import StoreLayout

PROVIDER, PROFILE = "openai-codex", "default"
KEY = profile_key(PROVIDER, PROFILE)
STORE_NAME = "auth-profiles.json"
BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
WORKER = BENCH_DIR / "agent_worker.py"


@dataclass(frozen=True, slots=True)
class DiskWorld:
    """One world's directory tree."""

    root: Path

    @property
    def main_store(self) -> Path:
        return self.root / "agents" / "main" / "agent" / STORE_NAME

    def agent_dir(self, agent: str) -> Path:
        return self.root / "agents" / agent / "agent"

    def context(self, agent: str, token_url: str) -> AgentContext:
        return AgentContext(
            agent=agent,
            provider=PROVIDER,
            profile_id=PROFILE,
            main_store=str(self.main_store),
            agent_dir=str(self.agent_dir(agent)),
            state_dir=str(self.root),
            token_url=token_url,
            client_id=agent,
            platform=sys.platform,
        )

    def env(self, agent: str, token_url: str) -> dict[str, str]:
        """The ``--command`` environment contract."""
        return {
            **os.environ,
            "TOKENRACE_TOKEN_URL": token_url,
            "TOKENRACE_STORE": str(self.main_store),
            "TOKENRACE_STATE_DIR": str(self.root),
            "TOKENRACE_AGENT_DIR": str(self.agent_dir(agent)),
            "TOKENRACE_AGENT": agent,
            "TOKENRACE_CLIENT_ID": agent,
            "TOKENRACE_PROVIDER": PROVIDER,
            "TOKENRACE_PROFILE": PROFILE,
        }

    def stores(self) -> list[Path]:
        """Every credential store of the world: main and each agent's copy."""
        return [self.main_store, *sorted(self.root.glob(f"agents/*/agent/{STORE_NAME}"))]

    def age(self, seconds: float) -> None:
        """Move every stored credential's expiry ``seconds`` into the past (nothing may run)."""
        for path in set(self.stores()):
            try:
                document = json.loads(path.read_bytes())
                for entry in document["profiles"].values():
                    entry["expires"] = float(entry["expires"]) - seconds
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue  # missing, or left torn by a buggy writer: nothing to age
            write_store(path, json.dumps(document, indent=2, sort_keys=True).encode() + b"\n")

    def login(
        self,
        running: RunningServer,
        agents: Sequence[str],
        layout: StoreLayout,
        now: Callable[[], float] | None = None,
    ) -> None:
        """Log in (again) and lay the credential out as ``layout`` says; replaces any stores.

        ``now``: the server's clock by default (frontrun passes the real one:
        under its virtual clock ``time.time`` is not the server's time).
        """
        clock = now or running.app.now
        (self.root / "locks").mkdir(parents=True, exist_ok=True)
        for agent in agents:
            self.agent_dir(agent).mkdir(parents=True, exist_ok=True)
        if layout is StoreLayout.SEPARATE_LOGINS:  # each agent logged in on its own, main last
            for agent in agents:
                write_store(self.agent_dir(agent) / STORE_NAME, _login(running, clock()))
        data = _login(running, clock())
        self.main_store.parent.mkdir(parents=True, exist_ok=True)
        write_store(self.main_store, data)
        if layout is StoreLayout.MIRRORED:  # copies of main in every agent dir
            for agent in agents:
                write_store(self.agent_dir(agent) / STORE_NAME, data)


def _login(running: RunningServer, now: float) -> bytes:
    pair = running.server.seed_grant(now)
    credential = Credential(pair.access_token, pair.refresh_token, pair.expires_at)
    return render_store(with_credential({}, KEY, PROVIDER, credential))


def write_store(path: Path, data: bytes) -> None:
    """Atomically, 0600: the harness never tears a store it writes itself."""
    temp = path.with_name(path.name + ".harness.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(temp, path)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one agent's call for a token ended with (the token stays in memory only)."""

    agent: str
    ok: bool
    seconds: float
    token: str = field(default="", repr=False)
    error: str = ""  # "TypeName: message", tokens redacted
    relogin: bool = False  # the engine raised ReloginRequired

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outcome:
        return cls(
            agent=str(data["agent"]),
            ok=bool(data["ok"]),
            seconds=float(data["seconds"]),
            token=str(data.get("token") or ""),
            error=str(data.get("error") or ""),
            relogin=bool(data.get("relogin")),
        )

    @classmethod
    def timed_out(cls, agent: str, seconds: float) -> Outcome:
        return cls(agent, False, seconds, error=f"Timeout: no answer in {seconds:g}s")


@dataclass(slots=True)
class Tally:
    """The anomalies of one round (or one attempt), judged from the audit log and the outcomes.

    The names follow the checker's anomaly kinds (``conformance.AnomalyKind``):
    ``reused`` is refresh-token-reuse, ``stranded`` agent-stranded, ``errors``
    engine-error, ``bad_tokens`` token-rejected, ``timeouts`` deadlock.
    """

    accepted: int = 0  # refreshes the server accepted
    reused: int = 0  # refreshes rejected as a reuse of a rotated token
    rejected: int = 0  # every rejected refresh (reuse, revoked grant, ...)
    stranded: int = 0
    errors: int = 0
    timeouts: int = 0
    bad_tokens: int = 0  # tokens handed out that the server refuses (revoked, expired)
    ok: int = 0
    seconds: list[float] = field(default_factory=list)  # time to token of each successful call
    kinds: set[str] = field(default_factory=set)

    @property
    def fatal(self) -> bool:
        return bool(self.kinds)

    def add(self, other: Tally) -> None:
        for name in ("accepted", "reused", "rejected", "stranded", "errors", "timeouts"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.bad_tokens += other.bad_tokens
        self.ok += other.ok
        self.seconds += other.seconds
        self.kinds |= other.kinds


def judge(
    running: RunningServer,
    audit: Iterable[AuditEvent],
    outcomes: Iterable[Outcome],
    now: float | None = None,
) -> Tally:
    """Judge a round: the server's audit since it began, and what every agent got."""
    tally = Tally()
    for record in audit:
        if record.token_kind is not TokenKind.REFRESH:
            continue
        if record.kind is AuditKind.ACCEPTED:
            tally.accepted += 1
        elif record.kind is AuditKind.REJECTED:
            tally.rejected += 1
            if record.reason == "reused":
                tally.reused += 1
                tally.kinds.add("refresh-token-reuse")
    now = running.app.now() if now is None else now
    for outcome in outcomes:
        if outcome.ok:
            check = running.server.check_access(outcome.token, now)
            if check.ok:
                tally.ok += 1
                tally.seconds.append(outcome.seconds)
            else:
                tally.bad_tokens += 1
                tally.kinds.add("token-rejected")
        elif outcome.relogin:
            tally.stranded += 1
            tally.kinds.add("agent-stranded")
        elif outcome.error.startswith("Timeout:"):
            tally.timeouts += 1
            tally.kinds.add("deadlock")
        else:
            tally.errors += 1
            tally.kinds.add("engine-error")
    return tally


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (p99 of 160 samples is the 159th smallest)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-fraction * len(ordered) // 1))))
    return ordered[rank - 1]


def median(values: Iterable[float]) -> float:
    kept = [value for value in values if value == value]  # drop NaN
    return statistics.median(kept) if kept else float("nan")


def fmt(value: float, digits: int = 1) -> str:
    if value != value:
        return "-"
    return f"{value:,.{digits}f}"


# --------------------------------------------------------------------------- machine, tables


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, Any]:
    """The machine a run happened on, for every report."""
    return {
        "system": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "packages": {
            name: _version(name)
            for name in ("httpx", "uvicorn", "msal-extensions", "filelock", "frontrun")
        },
    }


def machine_line(info: dict[str, Any]) -> str:
    packages = ", ".join(f"{name} {ver}" for name, ver in info["packages"].items())
    return (
        f"{info['cpus']} CPUs ({info['cpu']}), {info['system']} {info['machine']}, "
        f"Python {info['python']}; {packages}"
    )


def table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table; numbers right-aligned."""
    rows = [[str(cell) for cell in row] for row in rows]
    lines = ["| " + " | ".join(columns) + " |"]
    aligns = []
    for index in range(len(columns)):
        numeric = rows and all(_numeric(row[index]) for row in rows)
        aligns.append("---:" if numeric else "---")
    lines.append("|" + "|".join(aligns) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _numeric(text: str) -> bool:
    stripped = text.replace(",", "").replace("x", "").replace("%", "").strip()
    try:
        float(stripped)
    except ValueError:
        return text.strip() == "-"
    return True


def write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"
