"""What a simulated world holds: agents, their workload, the store layout, the server policy.

A ``WorldSpec`` is pure data.  ``seed_world`` lays it out on a fresh virtual
filesystem and a fresh fake server: one login per profile, each credential
written to the main store and, for the mirrored layout, copied into every
agent's dir the way the OpenClaw docs told users to.

A store holds several profiles when agents use different ones (``AgentSpec.
profile``) or the world has bystanders (profiles nobody in the world refreshes,
such as a second account the user logged in with): every writer of the file
must carry the profiles it does not own over unchanged.
"""

from __future__ import annotations

import enum
import posixpath
from dataclasses import dataclass, field

from fake_oauth_server import DEFAULT_BASE_URL, AuthServer, Policy
from refresh_engine import AgentContext, Credential, profile_key, render_store, with_credential

from ._errors import WorldError
from ._faults import FaultKind
from ._filesystem import FileSystem

#: 2026-01-01T00:00:00Z: virtual time starts here, so expiries look like real ones.
DEFAULT_START = 1_767_225_600.0
STORE_NAME = "auth-profiles.json"


class StoreLayout(enum.Enum):
    """Where the credential lives before the first refresh."""

    SHARED = "shared"  # only the main store exists
    MIRRORED = "mirrored"  # every agent dir holds a copy seeded from main
    SEPARATE_LOGINS = "separate-logins"  # every agent logged in on its own, one account


class OsModel(enum.Enum):
    """Whose filesystem and lock semantics the world has."""

    LINUX = "linux"
    MACOS = "macos"
    WINDOWS = "windows"

    @property
    def platform(self) -> str:
        """``sys.platform`` on that OS, as engines see it."""
        return {"linux": "linux", "macos": "darwin", "windows": "win32"}[self.value]


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """One agent and its workload: the offsets (seconds from start) when it wants a token."""

    name: str
    turns: tuple[float, ...]
    process: int | None = None  # agents sharing a number share a process; None: its own
    profile: str = ""  # "provider:profile_id" this agent refreshes; "": the world's own
    #: the machine (or container: pid namespace) it runs on, sharing the store over a network
    #: or a bind mount; "" is the first.  Another host's pids name no process here.
    host: str = ""
    #: an outside writer, not a refresher: at each turn it logs in anew (a new grant from
    #: the server, out of band, as a CLI login does) and writes it into the store the
    #: engine's way (``_login``); it refreshes nothing.  Give it a profile of its own.
    logs_in: bool = False


@dataclass(frozen=True, slots=True)
class WorldSpec:
    agents: tuple[AgentSpec, ...]
    policy: Policy = field(default_factory=Policy)
    layout: StoreLayout = StoreLayout.MIRRORED
    os: OsModel = OsModel.LINUX
    provider: str = "openai-codex"
    profile_id: str = "default"
    home: str = "/home/u"
    base_url: str = DEFAULT_BASE_URL
    refresh_margin: float = 300.0
    start_time: float = DEFAULT_START
    max_steps: int = 5000
    server_seed: str = "tokenrace"
    faults: frozenset[FaultKind] = frozenset()  # the faults a schedule may inject
    max_faults: int = 0  # at most this many per run
    restart_delay: float = 1.0  # seconds from a kill until the process is back
    stall_seconds: float = 30.0  # how long a stalled agent stops
    clock_skew: tuple[tuple[str, float], ...] = ()  # (agent, seconds its clock runs ahead)
    nolock_dirs: tuple[str, ...] = ()  # directories on a mount where locks do nothing (NFS)
    torn_writes: bool = False  # a write takes two steps; a reader between sees a prefix
    #: seconds a ``stat`` mtime is rounded down to: FAT 2, HFS+ and SMB 1; 0 is exact
    mtime_resolution: float = 0.0
    #: a killed process restarts with its old pid (an OS reusing pids at once); by default
    #: it gets a new one, and the dead pid names no live process
    pid_reuse: bool = False
    #: profiles in the store that no agent refreshes ("provider:profile_id"); they must survive
    bystanders: tuple[str, ...] = ()
    #: the main store is a symlink to this file (a dotfiles checkout); "": a plain file
    store_link: str = ""
    #: agents configured with the link's target instead of the main store (another tool
    #: that names the real file): they see what a writer that broke the link left behind
    link_readers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = [agent.name for agent in self.agents]
        if not names:
            raise WorldError("a world needs at least one agent")
        if len(set(names)) != len(names):
            raise WorldError(f"agent names must be unique, got {names}")
        for name in names:
            if name != name.lower() or not name.isidentifier():
                raise WorldError(f"agent name {name!r} must be a lowercase identifier")
        for key in (*(agent.profile for agent in self.agents if agent.profile), *self.bystanders):
            provider, _, profile_id = key.partition(":")
            if not provider or not profile_id:
                raise WorldError(f"profile {key!r} must be 'provider:profile_id'")
        if not 0 <= self.mtime_resolution <= 60:
            raise WorldError(f"mtime_resolution must be 0 to 60 s, got {self.mtime_resolution}")
        hosts: dict[int, str] = {}
        for index, agent in enumerate(self.agents):
            if hosts.setdefault(self.pid(index), agent.host) != agent.host:
                raise WorldError(f"agents of one process run on one host: {agent.name} does not")
        if len(set(self.bystanders)) != len(self.bystanders):
            raise WorldError(f"bystander profiles must be distinct, got {list(self.bystanders)}")
        refreshers = [agent.name for agent in self.agents if not agent.logs_in]
        if set(self.bystanders) & {self.profile_of(name) for name in refreshers}:
            raise WorldError("a bystander profile is one no agent refreshes")
        if self.store_link and not self.store_link.startswith("/"):
            raise WorldError(f"store_link must be an absolute path, got {self.store_link!r}")
        if self.store_link and self.store_link in (self.stores[0], *self.stores[2:]):
            raise WorldError(f"store_link {self.store_link!r} is already a store")
        for name in self.link_readers:
            if name not in names:
                raise WorldError(f"link reader {name!r} is not an agent")
        if self.link_readers and not self.store_link:
            raise WorldError("link readers need a store_link to read the target of")

    @property
    def default_profile(self) -> str:
        return profile_key(self.provider, self.profile_id)

    def profile_of(self, name: str) -> str:
        """The profile key agent ``name`` refreshes."""
        agent = next(agent for agent in self.agents if agent.name == name)
        return agent.profile or self.default_profile

    @property
    def profiles(self) -> tuple[str, ...]:
        """Every profile in the store, the ones agents use first (in agent order), then
        the bystanders."""
        used = dict.fromkeys(self.profile_of(agent.name) for agent in self.agents)
        return tuple(dict.fromkeys((*used, *self.bystanders)))

    @property
    def state_dir(self) -> str:
        return posixpath.join(self.home, ".openclaw")

    @property
    def main_store(self) -> str:
        return posixpath.join(self.state_dir, "agents", "main", "agent", STORE_NAME)

    @property
    def stores(self) -> tuple[str, ...]:
        """Every store file: the main one, the link's target (if it is a link), then each
        agent's own."""
        agents = tuple(posixpath.join(self.agent_dir(a.name), STORE_NAME) for a in self.agents)
        return (self.main_store, *((self.store_link,) if self.store_link else ()), *agents)

    @property
    def token_url(self) -> str:
        return self.base_url.rstrip("/") + "/oauth/token"

    def agent_dir(self, name: str) -> str:
        return posixpath.join(self.state_dir, "agents", name, "agent")

    def pid(self, index: int) -> int:
        """Agents with the same ``process`` number share a pid; others get their own."""
        process = self.agents[index].process
        return 1000 + (index if process is None else 100 + process)

    def skew(self, name: str) -> float:
        """How far agent ``name``'s clock runs ahead of true time."""
        return dict(self.clock_skew).get(name, 0.0)

    def context(self, name: str) -> AgentContext:
        provider, _, profile_id = self.profile_of(name).partition(":")
        return AgentContext(
            agent=name,
            provider=provider,
            profile_id=profile_id,
            main_store=self.store_link if name in self.link_readers else self.main_store,
            agent_dir=self.agent_dir(name),
            state_dir=self.state_dir,
            token_url=self.token_url,
            refresh_margin=self.refresh_margin,
            platform=self.os.platform,
        )


def seed_world(spec: WorldSpec, fs: FileSystem, server: AuthServer) -> None:
    """Log in once per profile (or once per agent) and lay the credentials out as
    ``spec.layout`` says."""

    def login(keys: tuple[str, ...]) -> bytes:
        document: dict[str, object] = {}
        for key in keys:
            pair = server.seed_grant(spec.start_time)
            credential = Credential(pair.access_token, pair.refresh_token, pair.expires_at)
            document = with_credential(document, key, key.partition(":")[0], credential)
        return render_store(document)

    separate = spec.layout is StoreLayout.SEPARATE_LOGINS
    for agent in spec.agents:
        fs.makedirs(spec.agent_dir(agent.name))
        if separate:  # each agent logged in on its own, main last
            own = (spec.profile_of(agent.name),)
            fs.write_file(posixpath.join(spec.agent_dir(agent.name), STORE_NAME), login(own))
    data = login(spec.profiles)
    fs.makedirs(posixpath.dirname(spec.main_store))
    if spec.store_link:
        fs.makedirs(posixpath.dirname(spec.store_link))
        fs.write_file(spec.store_link, data)
        fs.symlink(spec.store_link, spec.main_store)
    else:
        fs.write_file(spec.main_store, data)
    if spec.layout is StoreLayout.MIRRORED:
        for agent in spec.agents:
            fs.write_file(posixpath.join(spec.agent_dir(agent.name), STORE_NAME), data)
