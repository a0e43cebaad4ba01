"""Generated worlds: a matrix cell's world, named by a label ``tokenrace replay`` takes back.

A label is ``layout/os/<agents>x<proc|gw|mix>/policy/fault``, with
``/<n>exp`` when the agents want a token at more than one expiry and
``/2prof``, ``/bystander`` or ``/login`` (an outside writer logging in to
another profile while the agents refresh) for a store of several profiles: for instance
``shared/linux/2xproc/openai/crash`` or ``shared/linux/3xmix/openai/none/2prof``.
``mix`` puts every agent but the last in one gateway process; a fault
``stall<N>`` stalls an agent for N seconds (``stall`` alone: 30), ``slow<N>``
delays the server's answer as long, and
``ioerror+crash`` allows two faults in one run, one of each kind.  The matrix
and ``check``'s battery print labels in every replay command;
``load_scenario`` parses one and builds the very same world, so a generated
world replays like a shipped scenario.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import TypeVar

from fake_oauth_server import FakeServerError, Policy
from simulator import AgentSpec, FaultKind, OsModel, StoreLayout, WorldSpec

from ._errors import ConformanceError

AGENT_NAMES = ("atlas", "nova", "lumi", "axon", "nexis", "orion", "vega", "lyra")
#: separate: a process each; gateway: every agent in one process; mixed: all but the last
PROCESSES = ("separate", "gateway", "mixed")
_KINDS = {"separate": "proc", "gateway": "gw", "mixed": "mix"}
#: one: one profile; two: the agents alternate between two; bystander: one, plus one
#: nobody refreshes; login: one, plus an outside writer logging in to another at once
POPULATIONS = ("one", "two", "bystander", "login")
#: the outside writer of a ``login`` population (``AgentSpec.logs_in``)
LOGIN_AGENT = "login"
SECOND_PROFILE = "anthropic:default"
BYSTANDER = "openai-codex:work"
_LABEL = re.compile(
    r"(?P<layout>[a-z-]+)/(?P<os>[a-z]+)/(?P<agents>[0-9]+)x(?P<processes>proc|gw|mix)/"
    r"(?P<policy>[A-Za-z0-9_.-]+)/(?P<fault>[a-z0-9+]+)(?:/(?P<expiries>[0-9]+)exp)?"
    r"(?:/(?P<population>2prof|bystander|login))?(?:/skew(?P<skew>[0-9]+))?(?P<torn>/torn)?"
)

E = TypeVar("E", bound=enum.Enum)


def choice(kind: type[E], value: str, what: str) -> E:
    """The member of ``kind`` whose value is ``value``, or a one-line error naming them all."""
    for member in kind:
        if member.value == value:
            return member
    known = ", ".join(str(member.value) for member in kind)
    raise ConformanceError(f"unknown {what} {value!r}: expected one of {known}")


@dataclass(frozen=True, slots=True)
class GeneratedWorld:
    """One value of each world axis of the matrix."""

    layout: str = "shared"
    os: str = "linux"
    agents: int = 2
    processes: str = "separate"
    policy: str = "openai"
    fault: str = "none"  # none | a fault kind (one per run) | stall<seconds>
    expiries: int = 1
    population: str = "one"  # one | two | bystander (POPULATIONS)
    skew: int = 0  # seconds the last agent's clock runs ahead
    torn: bool = False  # a write takes two steps; a reader between sees a prefix

    @classmethod
    def parse(cls, label: str) -> GeneratedWorld | None:
        """The axes a label names; None when ``label`` is not a matrix label."""
        found = _LABEL.fullmatch(label)
        if found is None:
            return None
        kinds = {kind: name for name, kind in _KINDS.items()}
        population = {"2prof": "two", "bystander": "bystander", "login": "login"}.get(
            found["population"] or ""
        )
        return cls(
            layout=found["layout"],
            os=found["os"],
            agents=int(found["agents"]),
            processes=kinds[found["processes"]],
            policy=found["policy"],
            fault=found["fault"],
            expiries=int(found["expiries"] or 1),
            population=population or "one",
            skew=int(found["skew"] or 0),
            torn=bool(found["torn"]),
        )

    @property
    def label(self) -> str:
        kind = _KINDS.get(self.processes, self.processes)
        label = f"{self.layout}/{self.os}/{self.agents}x{kind}/{self.policy}/{self.fault}"
        label += f"/{self.expiries}exp" if self.expiries != 1 else ""
        label += {"two": "/2prof", "bystander": "/bystander", "login": "/login"}.get(
            self.population, ""
        )
        label += f"/skew{self.skew}" if self.skew else ""
        return label + ("/torn" if self.torn else "")

    @property
    def title(self) -> str:
        where = {
            "gateway": "one gateway process",
            "mixed": "a gateway and a process of its own",
        }.get(self.processes, "their own processes")
        expiries = f", {self.expiries} expiries" if self.expiries != 1 else ""
        store = {
            "two": ", two profiles in the store",
            "bystander": ", a bystander profile in the store",
            "login": ", an outside login to another profile",
        }.get(self.population, "")
        store += f", the last agent's clock {self.skew} s ahead" if self.skew else ""
        store += ", torn writes" if self.torn else ""
        return (
            f"layout {self.layout}, {self.os}, {self.agents} agents in {where}, "
            f"policy {self.policy}, faults: {self.fault}{expiries}{store}"
        )

    def world(self) -> WorldSpec:
        """The world; a bad axis value is a one-line ``ConformanceError``."""
        if not 1 <= self.agents <= len(AGENT_NAMES):
            raise ConformanceError(f"agents must be 1 to {len(AGENT_NAMES)}, got {self.agents}")
        if self.processes not in PROCESSES:
            known = ", ".join(PROCESSES)
            raise ConformanceError(f"processes must be one of {known}, got {self.processes!r}")
        if self.population not in POPULATIONS:
            known = ", ".join(POPULATIONS)
            raise ConformanceError(f"population must be one of {known}, got {self.population!r}")
        if self.expiries < 1:
            raise ConformanceError(f"expiries must be at least 1, got {self.expiries}")
        if self.skew < 0:  # a label names seconds ahead: /skew<N>
            raise ConformanceError(f"skew must be 0 or more seconds, got {self.skew}")
        faults, stall = _faults_and_stall(self.fault)
        try:
            policy = Policy.preset(self.policy)
        except FakeServerError as exc:
            raise ConformanceError(str(exc)) from None
        lifetime = Policy.preset("openai").access_token_lifetime
        turns = tuple(lifetime * (index + 1) for index in range(self.expiries))
        names = AGENT_NAMES[: self.agents]
        agents = []
        for index, name in enumerate(names):
            last = index == len(names) - 1
            shared = self.processes == "gateway" or (self.processes == "mixed" and not last)
            profile = SECOND_PROFILE if self.population == "two" and index % 2 else ""
            agents.append(AgentSpec(name, turns, 1 if shared else None, profile))
        if self.population == "login":  # logs in to another profile as the agents refresh
            agents.append(AgentSpec(LOGIN_AGENT, turns[:1], profile=SECOND_PROFILE, logs_in=True))
        return WorldSpec(
            agents=tuple(agents),
            policy=policy,
            layout=choice(StoreLayout, self.layout, "layout"),
            os=choice(OsModel, self.os, "os"),
            faults=faults,
            max_faults=len(faults),
            stall_seconds=stall,
            bystanders=(BYSTANDER,) if self.population == "bystander" else (),
            clock_skew=((names[-1], float(self.skew)),) if self.skew else (),
            torn_writes=self.torn,
        )


def _faults_and_stall(name: str) -> tuple[frozenset[FaultKind], float]:
    """The faults a label names, each striking at most once (``ioerror+crash``: both), and
    the stall length (``stall<N>`` or ``slow<N>``, a slow answer: N seconds; else 30)."""
    if name == "none":
        return frozenset(), 30.0
    faults: set[FaultKind] = set()
    stall = 30.0
    for part in name.split("+"):
        found = re.fullmatch(r"(stall|slow)([0-9]+)", part)
        try:
            kind = FaultKind.parse(found[1] if found else part)
        except ValueError as exc:
            raise ConformanceError(str(exc)) from None
        if kind in faults:
            raise ConformanceError(f"fault {kind.value!r} is named twice in {name!r}")
        faults.add(kind)
        stall = float(found[2]) if found else stall
    return frozenset(faults), stall
