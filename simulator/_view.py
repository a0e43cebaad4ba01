"""The chooser's window on one step of a simulation (the kernel's ``StepView``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._agent import AgentStatus
from ._faults import FaultKind
from ._footprint import Footprint

if TYPE_CHECKING:
    from ._kernel import Simulation


class _View:
    """The chooser's window on one step (see ``StepView``)."""

    __slots__ = ("_sim", "step", "runnable", "last")

    def __init__(self, sim: Simulation, step: int, runnable: list[str], last: str | None) -> None:
        self._sim = sim
        self.step = step
        self.runnable = runnable
        self.last = last

    def faults(self, agent: str) -> tuple[FaultKind, ...]:
        return self._sim.fault_options(self._sim._agent(agent))

    def footprint(self, option: str) -> Footprint:
        """What running ``option`` (``"atlas"`` or ``"atlas!kill"``) now would touch."""
        name, _, fault = option.partition("!")
        return self._sim.footprint(
            self._sim._agent(name), FaultKind.parse(fault) if fault else None
        )

    @property
    def waiting(self) -> list[str]:
        """Agents with an effect to do that cannot run now (they wait for a lock)."""
        return [
            agent.name
            for agent in self._sim.agents
            if agent.status is AgentStatus.READY and agent.name not in self.runnable
        ]
