"""Bug reports as scenario files (TOML): the world, the engine, and what must happen.

A file looks like this (every field but ``[scenario] name`` and
``[world] agents`` has a default)::

    [scenario]
    name = "headline"
    title = "OpenClaw 2026.4.26: five agents, mirrored auth-profiles.json"
    class = 1                      # the corpus class it re-creates (docs/scenarios.md)
    source = "openclaw/openclaw#74055"

    [world]
    agents = ["atlas", "axon", "nova", "nexis", "lumi"]
    processes = { atlas = 1, axon = 1 }   # agents sharing a number share a process
    turns = [0, 3600, 7200]        # seconds from the start when each agent wants a token
    layout = "mirrored"            # shared | mirrored | separate-logins
    os = "linux"                   # linux | macos | windows
    policy = "openai"              # a fake-server preset
    policy_overrides = { reuse_window = 30 }
    nolock_dirs = ["~/.openclaw"]  # on a mount where locks do nothing (NFS nolock)
    store_link = "~/dotfiles/auth-profiles.json"  # the main store is a symlink to this
    link_readers = ["nova"]        # agents that name the link's target instead
    faults = ["drop"]              # kill | drop | 5xx | 429 | reset | stall
    max_faults = 1
    stall_seconds = 30
    max_steps = 5000

    [expect]
    engine = "mirrored"            # the engine the report is about
    reproduces = true              # it must show a fatal anomaly (false: it must not)
    anomaly = "refresh-token-reuse"  # the anomaly the race class stands for (see below)
    reference = "clean"            # clean: the reference must pass; unclaimed: not promised

    [search]
    strategy = "hypothesis"        # hypothesis | random | pct | exhaustive
    examples = 500
    seed = 0
    hang_after = 5.0               # seconds of real time one schedule may take (0: no limit)

``anomaly`` (only with ``reproduces = true``) names the checker's anomaly
kind the report is about: the search then looks for a fatal anomaly of that
kind, and a run that shows only other fatal anomalies is "not as expected"
(verdict ``other anomaly``), so a scenario cannot pass on a different bug
than the one it documents.  Without it, any fatal anomaly reproduces.

A bad file is refused with the file, the line (for TOML syntax) or the
field, and what was expected.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from fake_oauth_server import FakeServerError, Policy
from simulator import AgentSpec, FaultKind, OsModel, StoreLayout, Strategy, WorldSpec

from ._checker import AnomalyKind
from ._errors import ConformanceError
from ._hang import DEFAULT_HANG_AFTER

SCENARIO_DIR = Path(__file__).parent / "scenarios"


class ScenarioError(ConformanceError):
    """A scenario file is missing, malformed, or names something unknown."""


class ReferenceClaim(enum.Enum):
    CLEAN = "clean"  # the reference engine's guarantees cover this world: it must pass
    UNCLAIMED = "unclaimed"  # the reference does not promise anything here (said why)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    title: str
    race_class: int | None
    source: str
    world: WorldSpec
    engine: str
    reproduces: bool
    reference: ReferenceClaim
    anomaly: AnomalyKind | None  # the fatal anomaly the engine must show, when it reproduces
    strategy: Strategy
    examples: int
    seed: int
    path: Path | None = None
    hang_after: float = DEFAULT_HANG_AFTER  # a schedule's wall-clock limit, seconds; 0: none


def load_scenario_file(path: Path) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ScenarioError(f"{path}: line {line}: not UTF-8 text (a TOML file must be)") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    return _Reader(path, data).scenario()


def builtin_scenarios() -> list[Path]:
    """The shipped scenario files, the headline first."""
    return sorted(SCENARIO_DIR.glob("*.toml"))


class TomlTables:
    """Typed reads from one parsed TOML file, naming the field of every problem.

    Scenario files and client scenario files both read through it; each sets
    the error it raises.
    """

    error: type[ConformanceError] = ConformanceError

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    def fail(self, field: str, message: str) -> NoReturn:
        raise self.error(f"{self.path}: {field}: {message}")

    def refuse_unknown(self, keys: dict[str, frozenset[str]]) -> None:
        """Every table and key must be one of ``keys``; a typo names the nearest one."""
        for table, section in self.data.items():
            if table not in keys:
                self.fail(f"[{table}]", f"unknown table{nearest(table, keys)}")
            if not isinstance(section, dict):
                self.fail(f"[{table}]", "must be a table")
            for key in section:
                if key not in keys[table]:
                    self.fail(f"[{table}] {key}", f"unknown key{nearest(key, keys[table])}")

    def get(self, table: str, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        section = self.data.get(table, {})
        if not isinstance(section, dict):
            self.fail(f"[{table}]", "must be a table")
        if key not in section:
            if default is None:
                self.fail(f"[{table}] {key}", "is required")
            return default
        value = section[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            self.fail(f"[{table}] {key}", f"must be a {names}, got {value!r}")
        return value


class _Reader(TomlTables):
    """Reads one parsed scenario file."""

    error = ScenarioError

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        super().__init__(path, data)
        self.refuse_unknown(_KEYS)

    def seconds(self, table: str, key: str, default: float) -> float:
        """A number of seconds, 0 or more."""
        value = self.get(table, key, (int, float), default)
        if not 0 <= value < float("inf"):
            self.fail(f"[{table}] {key}", f"must be 0 or more seconds, got {value}")
        return float(value)

    def count(self, table: str, key: str, default: int, least: int) -> int:
        """A whole number of at least ``least``."""
        value: int = self.get(table, key, int, default)
        if value < least:
            self.fail(f"[{table}] {key}", f"must be at least {least}, got {value}")
        return value

    def choice(self, table: str, key: str, enum_type: type[enum.Enum], default: str) -> Any:
        value = self.get(table, key, str, default)
        for member in enum_type:
            if member.value == value:
                return member
        allowed = ", ".join(str(member.value) for member in enum_type)
        self.fail(f"[{table}] {key}", f"unknown value {value!r}; expected one of {allowed}")

    def scenario(self) -> Scenario:
        race_class = self.get("scenario", "class", int, -1)
        reproduces = self.get("expect", "reproduces", bool, False)
        return Scenario(
            name=self.get("scenario", "name", str),
            title=self.get("scenario", "title", str, ""),
            race_class=None if race_class == -1 else race_class,
            source=self.get("scenario", "source", str, ""),
            world=self.world(),
            engine=self.get("expect", "engine", str, "reference"),
            reproduces=reproduces,
            reference=self.choice("expect", "reference", ReferenceClaim, "clean"),
            anomaly=self.anomaly(reproduces),
            strategy=self.choice("search", "strategy", Strategy, "hypothesis"),
            examples=self.count("search", "examples", 500, least=1),
            seed=self.count("search", "seed", 0, least=0),
            path=self.path,
            hang_after=self.seconds("search", "hang_after", DEFAULT_HANG_AFTER),
        )

    def anomaly(self, reproduces: bool) -> AnomalyKind | None:
        """The anomaly the scenario stands for: a known bug names what catches it."""
        value = self.get("expect", "anomaly", str, "")
        if not value:
            return None
        if not reproduces:
            self.fail("[expect] anomaly", "only a scenario with reproduces = true names one")
        kind: AnomalyKind = self.choice("expect", "anomaly", AnomalyKind, "")
        return kind

    def world(self) -> WorldSpec:
        names = self.get("world", "agents", list)
        if not names or not all(isinstance(name, str) for name in names):
            self.fail("[world] agents", "must be a non-empty list of agent names")
        processes = self.get("world", "processes", dict, {})
        for name, number in processes.items():
            if name not in names or not isinstance(number, int) or isinstance(number, bool):
                self.fail("[world] processes", f"{name!r} = {number!r}: expected agent = number")
        turns = self.turns(names)
        profiles = self.per_agent("profiles", names, str)
        skew = self.per_agent("clock_skew", names, (int, float))
        hosts = self.per_agent("hosts", names, str)
        logins = self.get("world", "logins", list, [])
        for name in logins:
            if name not in names:
                self.fail("[world] logins", f"{name!r} is not an agent{nearest(str(name), names)}")
        bystanders = self.get("world", "bystanders", list, [])
        if not all(isinstance(key, str) for key in bystanders):
            self.fail("[world] bystanders", "must be a list of 'provider:profile_id' names")
        readers = self.get("world", "link_readers", list, [])
        for name in readers:
            if name not in names:
                where = "[world] link_readers"
                self.fail(where, f"{name!r} is not an agent{nearest(str(name), names)}")
        faults = []
        for fault in self.get("world", "faults", list, []):
            try:
                faults.append(FaultKind.parse(str(fault)))
            except ValueError as exc:
                self.fail("[world] faults", str(exc))
        try:
            return WorldSpec(
                agents=tuple(
                    AgentSpec(
                        name,
                        turns[name],
                        processes.get(name),
                        profiles.get(name, ""),
                        hosts.get(name, ""),
                        name in logins,
                    )
                    for name in names
                ),
                bystanders=tuple(bystanders),
                clock_skew=tuple((name, float(value)) for name, value in skew.items()),
                torn_writes=self.get("world", "torn_writes", bool, False),
                mtime_resolution=float(self.get("world", "mtime_resolution", (int, float), 0.0)),
                pid_reuse=self.get("world", "pid_reuse", bool, False),
                policy=self.policy(),
                layout=self.choice("world", "layout", StoreLayout, "mirrored"),
                os=self.choice("world", "os", OsModel, "linux"),
                faults=frozenset(faults),
                max_faults=self.count("world", "max_faults", 1 if faults else 0, least=0),
                stall_seconds=float(self.get("world", "stall_seconds", (int, float), 30.0)),
                max_steps=self.count("world", "max_steps", 5000, least=1),
                nolock_dirs=tuple(self.dirs("nolock_dirs")),
                store_link=self.home_path("store_link"),
                link_readers=tuple(readers),
            )
        except ConformanceError:
            raise
        except Exception as exc:  # WorldError and friends: say which file
            self.fail("[world]", str(exc))

    def turns(self, names: list[str]) -> dict[str, tuple[float, ...]]:
        """Each agent's turns: one list for all, or a table of lists by agent name."""
        given = self.get("world", "turns", (list, dict), [3600.0])
        table = given if isinstance(given, dict) else dict.fromkeys(names, given)
        for name in table:
            if name not in names:
                self.fail("[world] turns", f"{name!r} is not an agent{nearest(name, names)}")
        found = {}
        for name in names:
            listed = table.get(name)
            if not isinstance(listed, list) or not listed or not all(map(_is_number, listed)):
                where = "[world] turns" + (f" {name}" if isinstance(given, dict) else "")
                self.fail(where, "must be a non-empty list of seconds")
            found[name] = tuple(float(turn) for turn in listed)
        return found

    def per_agent(
        self, key: str, names: list[str], kind: type | tuple[type, ...]
    ) -> dict[str, Any]:
        """A table keyed by agent name, each value of ``kind``."""
        table: dict[str, Any] = self.get("world", key, dict, {})
        for name, value in table.items():
            if name not in names:
                self.fail(f"[world] {key}", f"{name!r} is not an agent{nearest(name, names)}")
            if not isinstance(value, kind) or isinstance(value, bool):
                self.fail(
                    f"[world] {key} {name}", f"must be a {getattr(kind, '__name__', 'number')}"
                )
        return table

    def dirs(self, key: str) -> list[str]:
        """Directories, ``~`` meaning the simulated home."""
        found = self.get("world", key, list, [])
        if not all(isinstance(path, str) and path.startswith(("/", "~")) for path in found):
            self.fail(f"[world] {key}", "must be a list of absolute or ~/ paths")
        return [_at_home(path) for path in found]

    def home_path(self, key: str) -> str:
        """One absolute or ``~/`` path; "" when the key is absent."""
        path = self.get("world", key, str, "")
        if path and not path.startswith(("/", "~/")):
            self.fail(f"[world] {key}", "must be an absolute or ~/ path")
        return _at_home(path)

    def policy(self) -> Policy:
        preset = self.get("world", "policy", str, "openai")
        overrides = self.get("world", "policy_overrides", dict, {})
        try:
            policy = Policy.preset(preset)
        except FakeServerError as exc:
            self.fail("[world] policy", str(exc))
        fields = {field.name for field in dataclasses.fields(Policy)}
        for key in overrides:
            if key not in fields:
                self.fail(
                    "[world] policy_overrides",
                    f"unknown policy field {key!r}{nearest(key, fields)}",
                )
        try:  # from_json reads an enum's value ("rs256") and whole seconds as the JSON would
            return Policy.from_json(overrides, base=policy)
        except (FakeServerError, TypeError, ValueError) as exc:
            self.fail("[world] policy_overrides", str(exc))


#: every key a scenario file may hold, by table (the module docstring shows each)
_KEYS: dict[str, frozenset[str]] = {
    "scenario": frozenset({"name", "title", "class", "source"}),
    "world": frozenset(
        {
            "agents",
            "processes",
            "turns",
            "layout",
            "os",
            "policy",
            "policy_overrides",
            "nolock_dirs",
            "faults",
            "max_faults",
            "stall_seconds",
            "max_steps",
            "profiles",
            "bystanders",
            "clock_skew",
            "torn_writes",
            "mtime_resolution",
            "pid_reuse",
            "hosts",
            "logins",
            "store_link",
            "link_readers",
        }
    ),
    "expect": frozenset({"engine", "reproduces", "anomaly", "reference"}),
    "search": frozenset({"strategy", "examples", "seed", "hang_after"}),
}


def nearest(name: str, known: Iterable[str]) -> str:
    """``; did you mean 'x'?``, or the list of valid names when none is close."""
    names = sorted(known)
    close = difflib.get_close_matches(name, names, n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; expected one of {', '.join(names)}"


def _at_home(path: str) -> str:
    """``~`` as the simulated home."""
    home = str(WorldSpec.__dataclass_fields__["home"].default)
    return home + path[1:] if path.startswith("~") else path


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
