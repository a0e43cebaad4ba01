"""Real clients as scenario files: which program, how it is started, what it must show.

A client scenario has a ``[client]`` table where a model scenario has an
engine::

    [scenario]
    name = "codex-cli-0.169.0"
    title = "Codex CLI 0.169.0: agents sharing one CODEX_HOME"
    source = "openai/codex#10332"

    [client]
    program = "codex@0.169.0"   # a pinned client (tokenrace clients install) or a path
    args = ["debug", "models"]
    store = "codex"             # the format the harness seeds, in the client's own layout
    env = { CODEX_HOME = "{state_dir}/codex", CODEX_REFRESH_TOKEN_URL_OVERRIDE = "{token_url}" }
    timeout = 30                # seconds a run may take
    arrival = 20                # seconds every waiting agent gets to reach the token endpoint
    # settle = 2                # instead: release what is held after 2 s (a lock keeps some out)
    # stdout_token = true       # the program prints its access token last on stdout
    # inherit_env = true        # the caller's whole environment (for your own program)
    # faults = ["5xx@1"]        # server faults on released refreshes (docs/clients.md)
    # hold = 15                 # hold each refresh 15 s at the door before releasing it

    [world]
    agents = ["atlas", "nova"]
    policy = "openai"

    [expect]
    reproduces = true
    anomaly = "refresh-token-reuse"

    [search]
    orders = 1                  # release orders tried (all of them when fewer exist)
    seed = 0

``program``, ``args`` and ``env`` are templates: ``{state_dir}`` (the shared
directory of the run), ``{agent_dir}`` (this agent's own), ``{home}`` (this
agent's private HOME), ``{agent}``, ``{token_url}`` (this agent's own token
endpoint), ``{python}``, ``{scenario_dir}`` and ``{node_preload}`` (the shipped
Node ``--import`` module that redirects hard-coded token URLs; set
``TOKENRACE_TOKEN_URL = "{token_url}"`` for it).

A ``[client.gateway]`` table makes the program a server started once for
every agent (OpenClaw's ``gateway run``), each agent's turn an HTTP request
to it (``_client_gateway``)::

    [client.gateway]
    ready = "/v1/models"                   # GET until it answers 200
    trigger = "/v1/chat/completions"       # POSTed once per agent, in the order
    body = '{"model": "openclaw/{agent}", "messages": [{"role": "user", "content": "hi"}]}'
    config = { gateway = { port = "{gateway_port}" } }   # merged into the client's config

The gateway's own templates see ``{agent}`` as ``gateway`` (its token
endpoint is ``/a/gateway/oauth/token``) and ``{gateway_port}``.
"""

from __future__ import annotations

import enum
import json
import string
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fake_oauth_server import FakeServerError, Policy, agent_path

from ._checker import AnomalyKind
from ._clients import CLIENTS
from ._errors import ConformanceError
from ._release_faults import ReleaseFault, check_hold, parse_release_fault
from ._scenario_files import TomlTables

#: The shipped Node module that sends requests for a hard-coded token URL to ``{token_url}``.
NODE_PRELOAD = Path(__file__).parent / "node" / "redirect-token-url.mjs"
#: The placeholders a template may use.
PLACEHOLDERS = frozenset(
    {
        "state_dir",
        "agent_dir",
        "home",
        "agent",
        "token_url",
        "python",
        "scenario_dir",
        "node_preload",
        "gateway_port",
    }
)
#: The name a gateway's own templates and token endpoint use for ``{agent}``.
GATEWAY = "gateway"


#: Every key a client scenario file may have, by table.
CLIENT_KEYS: dict[str, frozenset[str]] = {
    "scenario": frozenset({"name", "title", "source"}),
    "client": frozenset(
        {
            "program",
            "args",
            "store",
            "env",
            "timeout",
            "arrival",
            "settle",
            "uses",
            "mirrored",
            "overlap",
            "stdout_token",
            "inherit_env",
            "faults",
            "hold",
            "gateway",
            "read_through",
        }
    ),
    "world": frozenset({"agents", "policy", "policy_overrides"}),
    "expect": frozenset({"reproduces", "anomaly"}),
    "search": frozenset({"orders", "seed"}),
}


class ClientScenarioError(ConformanceError):
    """A client scenario file is malformed."""


class StoreFormat(enum.Enum):
    """How the harness seeds the login, in the client's own layout."""

    CODEX = "codex"  # $CODEX_HOME/auth.json (tokens, last_refresh) and config.toml
    OPENCLAW = "openclaw"  # auth-profiles.json (expires in ms), main and mirrored copies
    TOKENRACE = "tokenrace"  # the check --command protocol: TOKENRACE_STORE, expires in seconds


@dataclass(frozen=True, slots=True)
class GatewaySpec:
    """A server started once for every agent, and the HTTP request that is an agent's turn."""

    ready: str  # a path GET until it answers 200
    trigger: str  # a path POSTed once per agent
    body: str  # the trigger's JSON body, a template ({agent})
    config: str  # JSON merged into the client's config file; strings are templates


@dataclass(frozen=True, slots=True)
class ClientScenario:
    name: str
    title: str
    source: str
    program: str  # a pinned client key, or a template for the program's path
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    store: StoreFormat
    agents: tuple[str, ...]
    policy: str
    reproduces: bool
    anomaly: AnomalyKind | None
    orders: int
    seed: int
    timeout: float = 30.0
    arrival: float = 20.0
    path: Path | None = None
    uses: tuple[str, ...] = ()  # more pinned clients; each is the placeholder {name}
    mirrored: bool = False  # a copy of the main store in every agent dir (OpenClaw)
    overlap: int = 0  # refreshes expected at the door at once (0: every agent's)
    policy_overrides: tuple[tuple[str, Any], ...] = ()
    gateway: GatewaySpec | None = None
    read_through: bool = False  # an agent's copy older than main's is not read (OpenClaw)
    #: > 0: release what is held once ``settle`` s pass with an agent still missing (one kept
    #: out by a lock never comes); 0: every due agent must arrive within ``arrival``, or fail
    settle: float = 0.0
    stdout_token: bool = False  # the program prints its access token last on stdout
    inherit_env: bool = False  # the caller's whole environment, HOME included (your own program)
    cwd: str = "{agent_dir}"  # a template: where each agent's process starts
    faults: tuple[ReleaseFault, ...] = ()  # server faults on released refreshes
    hold: float = 0.0  # seconds each refresh stays held at the door, at least

    @property
    def pinned(self) -> bool:
        return self.program in CLIENTS


def is_client_scenario(path: Path) -> bool:
    """Does ``path`` hold a client scenario (a ``[client]`` table)?  False when unreadable."""
    try:
        return "client" in tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False


def load_client_scenario(path: Path) -> ClientScenario:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ClientScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ClientScenarioError(f"{path}: not valid TOML: {exc}") from None
    return _Reader(path, data).scenario()


def fill(
    template: str, values: dict[str, str], where: str, allowed: frozenset[str] = PLACEHOLDERS
) -> str:
    """``template`` with its placeholders filled; an unknown one is a one-line error."""
    allowed = allowed | frozenset(values)
    for _, field, _, _ in string.Formatter().parse(template):
        if field is not None and field not in allowed:
            known = ", ".join("{" + name + "}" for name in sorted(allowed))
            raise ClientScenarioError(f"{where}: unknown placeholder {{{field}}}; known: {known}")
    return template.format_map(values)


def template_values(
    scenario: ClientScenario, *, state_dir: Path, agent: str, token_url: str
) -> dict[str, str]:
    """What each placeholder stands for, for one agent of one run."""
    return {
        "state_dir": str(state_dir),
        "agent_dir": str(state_dir / "agents" / agent),
        "home": str(state_dir / "home" / agent),
        "agent": agent,
        "token_url": token_url,
        "python": sys.executable,
        "scenario_dir": str(scenario.path.parent if scenario.path else Path.cwd()),
        "node_preload": str(NODE_PRELOAD),
        "gateway_port": "",
    }


class _Reader(TomlTables):
    error = ClientScenarioError

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        super().__init__(path, data)
        self.refuse_unknown(CLIENT_KEYS)

    def strings(self, table: str, key: str, default: list[str]) -> tuple[str, ...]:
        found = self.get(table, key, list, default)
        if not all(isinstance(item, str) for item in found):
            self.fail(f"[{table}] {key}", "must be a list of strings")
        return tuple(found)

    def scenario(self) -> ClientScenario:
        env = self.get("client", "env", dict, {})
        if not all(isinstance(value, str) for value in env.values()):
            self.fail("[client] env", "must map names to strings")
        agents = self.strings("world", "agents", [])
        if not agents or len(set(agents)) != len(agents):
            self.fail("[world] agents", "must be a non-empty list of distinct names")
        for agent in agents:
            try:
                agent_path(agent, "/")
            except ValueError:
                self.fail("[world] agents", f"{agent!r}: use letters, digits, '_', '.', '-'")
        store = self.get("client", "store", str, "codex")
        try:
            store_format = StoreFormat(store)
        except ValueError:
            known = ", ".join(member.value for member in StoreFormat)
            self.fail("[client] store", f"unknown store format {store!r}; expected one of {known}")
        anomaly_name = self.get("expect", "anomaly", str, "")
        anomaly = None
        if anomaly_name:
            try:
                anomaly = AnomalyKind(anomaly_name)
            except ValueError:
                known = ", ".join(kind.value for kind in AnomalyKind)
                self.fail("[expect] anomaly", f"unknown anomaly {anomaly_name!r}; known: {known}")
        uses = self.strings("client", "uses", [])
        for key in uses:
            if key not in CLIENTS:
                self.fail("[client] uses", f"unknown client {key!r}; known: {sorted(CLIENTS)}")
        allowed = PLACEHOLDERS | {CLIENTS[key].name for key in uses}
        for where, text in [
            ("[client] program", self.get("client", "program", str)),
            *(("[client] args", arg) for arg in self.strings("client", "args", [])),
            *((f"[client] env {name}", value) for name, value in env.items()),
        ]:
            fill(text, dict.fromkeys(allowed, ""), f"{self.path}: {where}", allowed)
        timeout = float(self.get("client", "timeout", (int, float), 30.0))
        arrival = float(self.get("client", "arrival", (int, float), 20.0))
        settle = float(self.get("client", "settle", (int, float), 0.0))
        if not 0 < arrival <= 600 or not 0 < timeout <= 600 or not 0 <= settle <= 600:
            self.fail("[client]", "arrival, timeout and settle must be in (0, 600] seconds")
        policy = self.get("world", "policy", str, "openai")
        try:
            Policy.from_json(
                self.get("world", "policy_overrides", dict, {}), base=Policy.preset(policy)
            )
        except FakeServerError as exc:
            self.fail("[world] policy", str(exc))
        gateway = self.gateway(allowed)
        faults = []
        for text in self.strings("client", "faults", []):
            try:
                faults.append(parse_release_fault(text))
            except ValueError as exc:
                self.fail("[client] faults", str(exc))
        try:
            hold = check_hold(float(self.get("client", "hold", (int, float), 0.0)))
        except ValueError as exc:
            self.fail("[client] hold", str(exc))
        orders = self.get("search", "orders", int, 1)
        if orders < 1:
            self.fail("[search] orders", "must be at least 1")
        return ClientScenario(
            name=self.get("scenario", "name", str),
            title=self.get("scenario", "title", str, ""),
            source=self.get("scenario", "source", str, ""),
            program=self.get("client", "program", str),
            args=self.strings("client", "args", []),
            env=tuple(sorted(env.items())),
            store=store_format,
            agents=agents,
            policy=policy,
            reproduces=self.get("expect", "reproduces", bool, False),
            anomaly=anomaly,
            orders=orders,
            seed=self.get("search", "seed", int, 0),
            timeout=timeout,
            arrival=arrival,
            path=self.path,
            uses=uses,
            mirrored=self.get("client", "mirrored", bool, False),
            overlap=self.get("client", "overlap", int, 0),
            policy_overrides=tuple(sorted(self.get("world", "policy_overrides", dict, {}).items())),
            gateway=gateway,
            read_through=self.get("client", "read_through", bool, False),
            settle=settle,
            stdout_token=self.get("client", "stdout_token", bool, False),
            inherit_env=self.get("client", "inherit_env", bool, False),
            faults=tuple(faults),
            hold=hold,
        )

    def gateway(self, allowed: frozenset[str]) -> GatewaySpec | None:
        table = self.get("client", "gateway", dict, {})
        if not table:
            return None
        known = {"ready", "trigger", "body", "config"}
        for key in table:
            if key not in known:
                self.fail("[client.gateway]", f"unknown key {key!r}; known: {sorted(known)}")
        values = dict.fromkeys(allowed, "")
        texts = {}
        for key in ("ready", "trigger", "body"):
            text = table.get(key)
            if not isinstance(text, str) or not text:
                self.fail(f"[client.gateway] {key}", "must be a non-empty string")
            texts[key] = text
        for key in ("ready", "trigger"):
            if not texts[key].startswith("/"):
                self.fail(f"[client.gateway] {key}", "must be a path, e.g. /v1/models")
        config = table.get("config", {})
        if not isinstance(config, dict):
            self.fail("[client.gateway] config", "must be a table")
        for text in _strings(config):
            fill(text, values, f"{self.path}: [client.gateway] config", allowed)
        body = fill_json(texts["body"], values, allowed)
        try:
            json.loads(body)
        except ValueError:
            self.fail("[client.gateway] body", "must be JSON once its placeholders are filled")
        return GatewaySpec(texts["ready"], texts["trigger"], texts["body"], json.dumps(config))


def _strings(value: Any) -> list[str]:
    """Every string inside a TOML value (tables and arrays, recursively)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []


def fill_value(value: Any, values: dict[str, str], where: str) -> Any:
    """A TOML value with the placeholders of every string in it filled."""
    if isinstance(value, str):
        return fill(value, values, where)
    if isinstance(value, dict):
        return {key: fill_value(item, values, where) for key, item in value.items()}
    if isinstance(value, list):
        return [fill_value(item, values, where) for item in value]
    return value


def fill_json(template: str, values: dict[str, str], allowed: frozenset[str] = PLACEHOLDERS) -> str:
    """A JSON template: ``{name}`` is a placeholder where ``name`` is one; other braces stay."""
    out = template
    for name in sorted(allowed | frozenset(values), key=len, reverse=True):
        out = out.replace("{" + name + "}", values.get(name, ""))
    return out
