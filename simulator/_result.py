"""What a run gives back, and what it runs: the engine protocol and the run's result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from fake_oauth_server import AuditEvent, Policy
from refresh_engine import AgentContext, Flow

from ._history import HistoryEvent, render
from ._schedule import Schedule


class Engine(Protocol):
    """What the simulator runs: anything with an ``access_token`` flow."""

    def access_token(self, ctx: AgentContext) -> Flow[str]: ...


@dataclass(frozen=True, slots=True)
class RunResult:
    """A finished run: its history, the server's audit log and its schedule."""

    events: tuple[HistoryEvent, ...]
    audit: tuple[AuditEvent, ...]
    schedule: Schedule  # the explicit prefix that replays this run exactly
    steps: int
    preemptions: int  # steps where the chooser departed from the default order
    start_time: float
    home: str
    policy: Policy  # the server's policy in this world (the checker asks about grace)
    stores: tuple[str, ...]  # every credential store path the world watches
    final_files: tuple[tuple[str, bytes], ...] = field(repr=False)  # every store file, at the end

    def render(self) -> str:
        return render(self.events, self.audit, self.start_time, self.home)
