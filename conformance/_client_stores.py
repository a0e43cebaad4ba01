"""A login in the client's own store format, and what the client left there.

The harness seeds the store a real login would have left, aged so the
client wants a refresh at once, and after the run reads the refresh token
the store ends holding: the server knows whether that token still works.
That, with the server's audit, is the oracle; a client's output and exit
status say little (every Codex CLI exits 0 after being refused).

Codex CLI (``StoreFormat.CODEX``): ``$CODEX_HOME/auth.json`` holds
``tokens{id_token, access_token, refresh_token, account_id}`` and
``last_refresh`` (RFC 3339); a login older than eight days is refreshed on
start, so it is seeded 30 days old.  ``config.toml`` keeps credentials in
that file (not the OS keyring), skips the update check and points the
ChatGPT backend at the fake server, so nothing leaves loopback even where
the run is not isolated.

OpenClaw (``StoreFormat.OPENCLAW``): ``auth-profiles.json`` holds
``profiles["openai-codex:default"] = {type, provider, access, refresh,
expires (ms), accountId}``, seeded expired; the main store is under
``$OPENCLAW_STATE_DIR/agents/main/agent`` and, mirrored, every agent dir
holds a copy (the layout of openclaw/openclaw#74055).

``check --command`` (``StoreFormat.TOKENRACE``): the same document with
``expires`` in epoch seconds, at ``TOKENRACE_STORE``
(``<state_dir>/agents/main/agent/auth-profiles.json``).
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fake_oauth_server import TokenPair

from ._client_scenarios import StoreFormat

#: How old the seeded Codex login is.
SEEDED_AGE = datetime.timedelta(days=30)
OPENCLAW_FILE = "auth-profiles.json"
OPENCLAW_PROVIDER = "openai-codex"


@dataclass(frozen=True, slots=True)
class Login:
    """What a fresh login handed the client (``access`` as the server hands it out)."""

    pair: TokenPair
    access: str
    id_token: str
    account_id: str
    now: float


def store_files(
    store: StoreFormat, envs: dict[str, dict[str, str]], *, mirrored: bool
) -> list[Path]:
    """Every credential store of the run, the main one first, from each agent's environment.

    Codex: ``$CODEX_HOME/auth.json`` (one per distinct CODEX_HOME).  OpenClaw:
    ``$OPENCLAW_STATE_DIR/agents/main/agent/auth-profiles.json``, and with
    ``mirrored`` a copy in each agent's dir ``agents/<agent>/agent``.
    """
    found: list[Path] = []
    for agent, env in envs.items():
        if store is StoreFormat.CODEX:
            paths = [Path(env.get("CODEX_HOME") or Path(env["HOME"]) / ".codex") / "auth.json"]
        elif store is StoreFormat.TOKENRACE:
            paths = [Path(env["TOKENRACE_STORE"])]
            if mirrored:
                paths.append(Path(env["TOKENRACE_AGENT_DIR"]) / OPENCLAW_FILE)
        else:
            agents = openclaw_state(env) / "agents"
            paths = [agents / "main" / "agent" / OPENCLAW_FILE]
            if mirrored:
                paths.append(agents / agent / "agent" / OPENCLAW_FILE)
        found += [path for path in paths if path not in found]
    return found


def openclaw_state(env: dict[str, str]) -> Path:
    return Path(env.get("OPENCLAW_STATE_DIR") or Path(env["HOME"]) / ".openclaw")


def judged(store: StoreFormat, files: list[Path]) -> list[Path]:
    """The stores whose final token the oracle judges.

    The ``check --command`` protocol names one store, ``TOKENRACE_STORE``; what
    a program does with copies in agent dirs is its own business (a copy that
    is read stale shows as a reuse in the audit).
    """
    return files[:1] if store is StoreFormat.TOKENRACE else files


def protocol_env(store: StoreFormat) -> dict[str, str]:
    """The environment templates a store format implies (the ``check --command`` protocol)."""
    if store is not StoreFormat.TOKENRACE:
        return {}
    return {
        "TOKENRACE_TOKEN_URL": "{token_url}",
        "TOKENRACE_STORE": "{state_dir}/agents/main/agent/" + OPENCLAW_FILE,
        "TOKENRACE_STATE_DIR": "{state_dir}",
        "TOKENRACE_AGENT_DIR": "{state_dir}/agents/{agent}/agent",
        "TOKENRACE_AGENT": "{agent}",
        "TOKENRACE_CLIENT_ID": "{agent}",
        "TOKENRACE_PROVIDER": OPENCLAW_PROVIDER,
        "TOKENRACE_PROFILE": "default",
    }


def seed_config(
    store: StoreFormat, envs: dict[str, dict[str, str]], extra: dict[str, Any] | None = None
) -> None:
    """What the client needs besides the login: OpenClaw's config names the agents; the
    ``check --command`` protocol gives every agent its dir and a shared ``locks`` dir.

    ``extra`` is merged into OpenClaw's config (tables key by key): a gateway's own settings.
    """
    if store is StoreFormat.TOKENRACE:
        for env in envs.values():
            Path(env["TOKENRACE_AGENT_DIR"]).mkdir(parents=True, exist_ok=True)
            (Path(env["TOKENRACE_STATE_DIR"]) / "locks").mkdir(exist_ok=True)
        return
    if store is not StoreFormat.OPENCLAW:
        return
    for state in sorted({openclaw_state(env) for env in envs.values()}):
        agents = [{"id": "main"}, *({"id": agent} for agent in envs)]
        state.mkdir(parents=True, exist_ok=True)
        config = _merged({"agents": {"list": agents}}, extra or {})
        _write_private(state / "openclaw.json", json.dumps(config, indent=2))


def _merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        old = merged.get(key)
        both = isinstance(old, dict) and isinstance(value, dict)
        merged[key] = _merged(old, value) if both else value  # type: ignore[arg-type]
    return merged


def seed(store: StoreFormat, path: Path, login: Login, base_url: str) -> None:
    """Write the login into the store ``path`` in the client's own format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if store in (StoreFormat.OPENCLAW, StoreFormat.TOKENRACE):
        profile: dict[str, object] = {
            "type": "oauth",
            "provider": OPENCLAW_PROVIDER,
            "access": login.access,
            "refresh": login.pair.refresh_token,
            "expires": int(login.now * 1000) - 60_000,  # ms; expired a minute ago
            "accountId": login.account_id,
        }
        if store is StoreFormat.TOKENRACE:  # seconds, and only what the protocol names
            profile = {k: profile[k] for k in ("type", "provider", "access", "refresh")}
            profile["expires"] = int(login.now) - 1  # expired; whole seconds: one length
        document = {"version": 1, "profiles": {f"{OPENCLAW_PROVIDER}:default": profile}}
        _write_private(path, json.dumps(document, indent=2))
        return
    refreshed = datetime.datetime.fromtimestamp(login.now, datetime.UTC) - SEEDED_AGE
    codex = {
        "OPENAI_API_KEY": None,
        "tokens": {
            "id_token": login.id_token,
            "access_token": login.access,
            "refresh_token": login.pair.refresh_token,
            "account_id": login.account_id,
        },
        "last_refresh": refreshed.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    _write_private(path, json.dumps(codex, indent=2))
    config = (
        'cli_auth_credentials_store = "file"\n'
        "check_for_update_on_startup = false\n"
        f'chatgpt_base_url = "{base_url}/backend-api/"\n'
    )
    _write_private(path.parent / "config.toml", config)


def held_refresh_token(store: StoreFormat, path: Path) -> str | None:
    """The refresh token the store holds now; ``None`` when it holds none or does not parse."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if store is not StoreFormat.CODEX:
            token = document["profiles"][f"{OPENCLAW_PROVIDER}:default"]["refresh"]
        else:
            token = document["tokens"]["refresh_token"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return token if isinstance(token, str) else None


def fresher(main: Path, copy: Path) -> bool:
    """Does OpenClaw's main store hold a login expiring no earlier than the agent's copy?

    Then the agent uses main's (OpenClaw 2026.4.26 adopts it under its refresh
    lock once its own has expired; 2026.4.29 reads through to it), and the
    copy's token is never presented again.
    """
    expiries = []
    for path in (main, copy):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            expires = document["profiles"][f"{OPENCLAW_PROVIDER}:default"]["expires"]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if not isinstance(expires, int | float) or isinstance(expires, bool):
            return False
        expiries.append(expires)
    return expiries[0] >= expiries[1]


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # born 0600
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
