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
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass
from pathlib import Path

from fake_oauth_server import TokenPair

from ._client_scenarios import StoreFormat

#: How old the seeded login is.
SEEDED_AGE = datetime.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Login:
    """What a fresh login handed the client."""

    pair: TokenPair
    id_token: str
    account_id: str
    now: float


def store_dir(store: StoreFormat, env: dict[str, str]) -> Path:
    """Where the client keeps its store, given the environment it runs with."""
    assert store is StoreFormat.CODEX
    return Path(env.get("CODEX_HOME") or Path(env["HOME"]) / ".codex")


def store_file(store: StoreFormat, directory: Path) -> Path:
    assert store is StoreFormat.CODEX
    return directory / "auth.json"


def seed(store: StoreFormat, directory: Path, login: Login, base_url: str) -> None:
    """Write the login into ``directory`` in the client's format (once per store)."""
    assert store is StoreFormat.CODEX
    directory.mkdir(parents=True, exist_ok=True)
    refreshed = datetime.datetime.fromtimestamp(login.now, datetime.UTC) - SEEDED_AGE
    document = {
        "OPENAI_API_KEY": None,
        "tokens": {
            "id_token": login.id_token,
            "access_token": login.pair.access_token,
            "refresh_token": login.pair.refresh_token,
            "account_id": login.account_id,
        },
        "last_refresh": refreshed.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    _write_private(directory / "auth.json", json.dumps(document, indent=2))
    config = (
        'cli_auth_credentials_store = "file"\n'
        "check_for_update_on_startup = false\n"
        f'chatgpt_base_url = "{base_url}/backend-api/"\n'
    )
    _write_private(directory / "config.toml", config)


def held_refresh_token(store: StoreFormat, directory: Path) -> str | None:
    """The refresh token the store holds now; ``None`` when it holds none or does not parse."""
    assert store is StoreFormat.CODEX
    try:
        document = json.loads(store_file(store, directory).read_text(encoding="utf-8"))
        token = document["tokens"]["refresh_token"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return token if isinstance(token, str) else None


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # born 0600
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
