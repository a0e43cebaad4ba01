"""Generated worlds: a matrix cell's world, named by a label ``tokenrace replay`` takes back.

A label is ``layout/os/<agents>x<proc|gw>/policy/fault``, with ``/<n>exp``
when the agents want a token at more than one expiry: for instance
``shared/linux/2xproc/openai/crash``.  The matrix prints it in every replay
command; ``load_scenario`` parses it and builds the very same world, so a
matrix cell replays like a shipped scenario.
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
PROCESSES = ("separate", "gateway")  # gateway: every agent in one process
_LABEL = re.compile(
    r"(?P<layout>[a-z-]+)/(?P<os>[a-z]+)/(?P<agents>[0-9]+)x(?P<processes>proc|gw)/"
    r"(?P<policy>[A-Za-z0-9_.-]+)/(?P<fault>[a-z0-9]+)(?:/(?P<expiries>[0-9]+)exp)?"
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
    fault: str = "none"  # none | a fault kind (one per run)
    expiries: int = 1

    @classmethod
    def parse(cls, label: str) -> GeneratedWorld | None:
        """The axes a label names; None when ``label`` is not a matrix label."""
        found = _LABEL.fullmatch(label)
        if found is None:
            return None
        return cls(
            layout=found["layout"],
            os=found["os"],
            agents=int(found["agents"]),
            processes="gateway" if found["processes"] == "gw" else "separate",
            policy=found["policy"],
            fault=found["fault"],
            expiries=int(found["expiries"] or 1),
        )

    @property
    def label(self) -> str:
        kind = "gw" if self.processes == "gateway" else "proc"
        label = f"{self.layout}/{self.os}/{self.agents}x{kind}/{self.policy}/{self.fault}"
        return label + (f"/{self.expiries}exp" if self.expiries != 1 else "")

    @property
    def title(self) -> str:
        where = "one gateway process" if self.processes == "gateway" else "their own processes"
        expiries = f", {self.expiries} expiries" if self.expiries != 1 else ""
        return (
            f"layout {self.layout}, {self.os}, {self.agents} agents in {where}, "
            f"policy {self.policy}, faults: {self.fault}{expiries}"
        )

    def world(self) -> WorldSpec:
        """The world; a bad axis value is a one-line ``ConformanceError``."""
        if not 1 <= self.agents <= len(AGENT_NAMES):
            raise ConformanceError(f"agents must be 1 to {len(AGENT_NAMES)}, got {self.agents}")
        if self.processes not in PROCESSES:
            raise ConformanceError(f"processes must be separate or gateway, got {self.processes!r}")
        if self.expiries < 1:
            raise ConformanceError(f"expiries must be at least 1, got {self.expiries}")
        faults = frozenset() if self.fault == "none" else frozenset({_fault(self.fault)})
        try:
            policy = Policy.preset(self.policy)
        except FakeServerError as exc:
            raise ConformanceError(str(exc)) from None
        lifetime = Policy.preset("openai").access_token_lifetime
        turns = tuple(lifetime * (index + 1) for index in range(self.expiries))
        process = 1 if self.processes == "gateway" else None
        return WorldSpec(
            agents=tuple(AgentSpec(name, turns, process) for name in AGENT_NAMES[: self.agents]),
            policy=policy,
            layout=choice(StoreLayout, self.layout, "layout"),
            os=choice(OsModel, self.os, "os"),
            faults=faults,
            max_faults=1 if faults else 0,
        )


def _fault(name: str) -> FaultKind:
    try:
        return FaultKind.parse(name)
    except ValueError as exc:
        raise ConformanceError(str(exc)) from None
