"""One run of ``check --command … --fs``: file steps and refreshes released one at a time.

The agents' state directory is a scheduled filesystem (``simulator.real``'s
``ScheduledMount``): every open, read, write, truncate, rename, unlink, fsync
and close an agent's process makes there waits at a door, and so does its
refresh at the fake server.  Before each decision the harness waits until
every live agent stands at a door (or has exited), so what is waiting
depends on the decisions so far only; then it lets one agent's step through.

Which agent: the *default* keeps the agent that went last while it has a
step waiting, else the first agent in the agents' order.  An agent whose step
just failed with ``EEXIST``/``EAGAIN`` (a lock taken by someone else) is
*blocked*, and so is one that repeats its last step with its last result
while nobody changed that path (polling a lock through a lookup): it goes
after the others, and it is not waited for (its retries of an exclusive
create are answered by the kernel, not at a door) until a step of another
agent changes the path it failed on; then it is expected at a door again.
So a lock-wait loop neither starves the holder nor makes a run depend on the
loop's timer.  An agent the kernel itself keeps waiting behind
another agent's door (its create waits for the directory's lock, its lookup for
the same name's) is *stalled*: seen in an uninterruptible wait for ``STALL``
seconds with no door of its own, it is not waited for either.  A *schedule* names the decisions
where the run departs from the default, ``12:nova,30:atlas``; the empty
schedule is ``default``.  Whoever picks (the schedule given, or a random or
PCT ``Picker``), a run records the departures it actually took: that
schedule replays it.  One schedule run twice gives the same history
when the program depends on nothing but its files and the server.

A ``Kill`` (``nova@12``) SIGKILLs the agent's process group just before
decision 12: what it waits for at the filesystem is answered ``EINTR``
without running, a refresh it has held is let through (its answer unread),
and the program is started again, as a restarted client would be.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from fake_oauth_server import serve_in_thread
from simulator.real import AGENT_ENV, FileStep, ScheduledMount, StallWatch

from ._client_diagram import ClientEvent, ClientEventKind
from ._client_run import ClientRun, _kill, _Run, _slack, policy_of, resolve_program
from ._client_scenarios import ClientScenario
from ._errors import ConformanceError
from ._isolation import loopback_only

__all__ = [
    "Decision",
    "Deviation",
    "Door",
    "FsRun",
    "Kill",
    "Picker",
    "format_schedule",
    "parse_kill",
    "parse_schedule",
    "run_fs",
]

#: Results that mean "someone else has it": the agent yields (it will try again).
YIELDS = frozenset({"EEXIST", "EAGAIN", "EWOULDBLOCK", "EBUSY"})
#: Decisions a run goes on, per agent, while every agent only polls a lock nobody releases
#: (a lock file left by a killed holder): then the agents still running are judged stuck.
SPIN_LIMIT = 4
#: The path a refresh touches: the server's state, shared by every refresh.
SERVER = "<token endpoint>"


@dataclass(frozen=True, slots=True)
class Door:
    """What one agent waits at: a file step or its refresh held at the server."""

    agent: str
    what: str  # "open auth-profiles.json O_RDONLY", "refresh rt:1a2b"
    touches: frozenset[str]
    mutates: bool
    step: FileStep | None = field(default=None, compare=False)
    request: dict[str, Any] | None = field(default=None, compare=False, hash=False)

    def conflicts(self, other: Door) -> bool:
        """Does the order of the two matter (a common path, one of them changing it)?"""
        return bool(self.touches & other.touches) and (self.mutates or other.mutates)


@dataclass(frozen=True, slots=True)
class Decision:
    """Who was waiting where, who went, and who the default would have sent."""

    doors: tuple[Door, ...]
    chosen: str
    default: str

    def door(self, agent: str) -> Door | None:
        return next((door for door in self.doors if door.agent == agent), None)

    @property
    def racing(self) -> bool:
        """Does another agent's step conflict with the default's here?"""
        default = self.door(self.default)
        return default is not None and any(
            door.agent != self.default and door.conflicts(default) for door in self.doors
        )


@dataclass(frozen=True, slots=True)
class Deviation:
    """At decision ``index``, ``agent`` goes instead of the default."""

    index: int
    agent: str


@dataclass(frozen=True, slots=True)
class Kill:
    """SIGKILL ``agent`` just before decision ``decision``, then start it again."""

    agent: str
    decision: int

    def __str__(self) -> str:
        return f"{self.agent}@{self.decision}"


class Picker(Protocol):
    """Who goes at a decision: one of the agents ``ready`` at a door (not blocked) or, if
    none is, waiting at one (``doors``); ``racing``: those of them whose step conflicts with
    the step of the ``default`` (their order matters here)."""

    def pick(
        self,
        index: int,
        doors: Mapping[str, Door],
        ready: tuple[str, ...],
        racing: tuple[str, ...],
        default: str,
    ) -> str: ...


class _Follow:
    """A schedule's picker: its departures, the default elsewhere."""

    def __init__(self, schedule: tuple[Deviation, ...]) -> None:
        self.planned = {deviation.index: deviation.agent for deviation in schedule}

    def pick(
        self,
        index: int,
        doors: Mapping[str, Door],
        ready: tuple[str, ...],
        racing: tuple[str, ...],
        default: str,
    ) -> str:
        return self.planned.get(index, default)


@dataclass(frozen=True, slots=True)
class FsRun:
    """A run: the black-box run, its decisions, the departures it took and any divergence."""

    client: ClientRun
    decisions: tuple[Decision, ...]
    schedule: tuple[Deviation, ...]  # the departures taken: the schedule that replays it
    diverged: str = ""  # a schedule's agent was not waiting where it said: why
    kill: Kill | None = None

    @property
    def file_steps(self) -> int:
        return sum(1 for d in self.decisions if (door := d.door(d.chosen)) and door.step)


def format_schedule(schedule: tuple[Deviation, ...]) -> str:
    return ",".join(f"{d.index}:{d.agent}" for d in schedule) or "default"


def parse_schedule(text: str, agents: tuple[str, ...]) -> tuple[Deviation, ...]:
    """``12:nova,30:atlas`` or ``default``; a ConformanceError says what is wrong."""
    if text.strip() == "default":
        return ()
    found: list[Deviation] = []
    for part in text.split(","):
        index, _, agent = part.strip().partition(":")
        if not index.isdigit() or agent not in agents:
            raise ConformanceError(
                f"bad --schedule part {part!r}: expected DECISION:AGENT, AGENT one of "
                f"{', '.join(agents)} (e.g. 12:{agents[-1]}), or 'default'"
            )
        if found and int(index) <= found[-1].index:
            raise ConformanceError(f"bad --schedule {text!r}: decisions go in increasing order")
        found.append(Deviation(int(index), agent))
    return tuple(found)


def parse_kill(text: str, agents: tuple[str, ...]) -> Kill:
    """``nova@12``: a ConformanceError says what is wrong."""
    agent, _, decision = text.strip().partition("@")
    if agent not in agents or not decision.isdigit():
        raise ConformanceError(
            f"bad --kill {text!r} with --fs: expected AGENT@DECISION, AGENT one of "
            f"{', '.join(agents)} (e.g. {agents[-1]}@3)"
        )
    return Kill(agent, int(decision))


def run_fs(
    scenario: ClientScenario,
    schedule: tuple[Deviation, ...] = (),
    *,
    picker: Picker | None = None,
    kill: Kill | None = None,
    free: bool = False,
) -> FsRun:
    """Start the program once per agent on a scheduled store directory; follow ``schedule``
    (or let ``picker`` pick), killing and restarting an agent at ``kill``.

    ``free``: schedule nothing (the agents run at once, as fast as they go, through the
    same mount and server): the free-running stress loop the benchmark compares against.
    """
    with (
        loopback_only() as isolation,
        serve_in_thread(
            policy_of(scenario), hold_timeout=scenario.timeout + 30 + _slack(scenario)
        ) as running,
        tempfile.TemporaryDirectory(prefix="tokenrace-fs-") as temp,
    ):
        backing, mountpoint = Path(temp, "store"), Path(temp, "mnt")
        backing.mkdir()
        mountpoint.mkdir()
        with ScheduledMount(backing, mountpoint) as mount:
            run = _FsRun(scenario, running, mountpoint, resolve_program(scenario), mount)
            try:
                run.seed_stores()
                if free:
                    mount.free()
                run.control.hold(not free)
                for agent in scenario.agents:
                    run.start(agent)
                if not free:
                    run.schedule_steps(picker or _Follow(schedule), kill)
                mount.free()
                run.control.hold(False)
                result = run.finish(scenario.agents, "")
            finally:
                mount.free()
                run.stop()
    client = ClientRun(result, isolation.describe(), tuple(run.released), run.diagram)
    return FsRun(client, tuple(run.decisions), tuple(run.taken), run.diverged, kill)


class _FsRun(_Run):
    def __init__(self, scenario: ClientScenario, running: Any, root: Path, executable: str,
                 mount: ScheduledMount) -> None:  # fmt: skip
        super().__init__(scenario, running, root, executable)
        self.mount = mount
        self.decisions: list[Decision] = []
        self.diverged = ""
        #: agents whose last step failed on someone else's lock, by that step: the kernel
        #: answers their retries itself (an O_EXCL create of an existing file never reaches
        #: the filesystem), so they are not waited for until a step changes that path
        self.blocked: dict[str, Door] = {}
        self.previous: dict[str, tuple[Door, str]] = {}  # each agent's last step and result
        self.taken: list[Deviation] = []  # where the run departed from the default
        self.kill_done = False

    def environment(self, agent: str) -> dict[str, str]:
        return super().environment(agent) | {AGENT_ENV: agent}

    def schedule_steps(self, picker: Picker, kill: Kill | None = None) -> None:
        """Release one waiting step at a time, whoever ``picker`` picks, until all exit."""
        agents = self.scenario.agents
        last, spinning = "", 0  # decisions in a row where every agent only polled a lock
        while True:
            doors = self.gather_doors()
            if not doors:
                break
            index = len(self.decisions)
            if kill is not None and not self.kill_done and index >= kill.decision:
                self.kill_done = True
                self.kill_at(kill, doors.get(kill.agent))
                continue
            waiting = tuple(a for a in agents if a in doors)
            ready = tuple(a for a in waiting if a not in self.blocked) or waiting
            default = last if last in ready else ready[0]
            racing = tuple(a for a in ready if a != default and doors[a].conflicts(doors[default]))
            chosen = picker.pick(index, doors, ready, racing, default)
            if chosen not in doors:
                self.diverged = self.diverged or (
                    f"decision {index}: {chosen} was not waiting "
                    f"(waiting: {', '.join(sorted(doors)) or 'nobody'})"
                )
                chosen = default
            if chosen != default:
                self.taken.append(Deviation(index, chosen))
            door = doors[chosen]
            self.decisions.append(Decision(tuple(doors[a] for a in waiting), chosen, default))
            result = self.pass_door(door)
            self.log.append(f"{index:>3} {chosen}: {door.what} -> {result}")
            for agent, failed in list(self.blocked.items()):
                if agent != chosen and failed.conflicts(door):
                    del self.blocked[agent]  # what it waits for changed: it comes back to a door
            for agent, (earlier, _) in list(self.previous.items()):
                if agent != chosen and earlier.conflicts(door):
                    del self.previous[agent]
            if result in YIELDS or self.previous.get(chosen) == (door, result):
                self.blocked[chosen] = door  # failed on a lock, or polls what nobody changed
            else:
                self.blocked.pop(chosen, None)
            self.previous[chosen] = (door, result)
            last = chosen
            live = [a for a in agents if self.processes[a].poll() is None]
            all_blocked = chosen in self.blocked and all(a in self.blocked for a in live)
            spinning = spinning + 1 if all_blocked else 0
            if spinning >= SPIN_LIMIT * len(agents):
                self.log.append("every agent polls a lock none of them will release: stopped")
                self.deadline = time.monotonic()  # judged now: the agents still running are stuck
                break
        if kill is not None and not self.kill_done:
            self.log.append(f"kill {kill}: the run ended after {len(self.decisions)} decisions")

    def kill_at(self, kill: Kill, door: Door | None) -> None:
        """SIGKILL the agent's process group where it stands, answer its doors, start it again."""
        agent, process = kill.agent, self.processes[kill.agent]
        if process.poll() is not None:
            self.log.append(f"kill {kill}: {agent} had exited already")
            return
        self.killed = agent
        _kill(process)
        where = f"at {door.what}" if door is not None else "not at a door"
        self.log.append(f"SIGKILL {agent} before decision {kill.decision}, {where}")
        self.event(ClientEventKind.KILLED, agent, note=f"SIGKILL {where}")
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            for step in self.mount.waiting():  # the kernel lets it die once these are answered
                if step.agent == agent:
                    self.mount.go(step, timeout=2.0, drop=True)
            self.mount.wait_change(0.005)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.communicate(timeout=5)
        if door is not None and door.request is not None:  # in flight: the server still has it
            status = self.control.release(door.request["id"], wait=True)
            self.log.append(f"release {agent} {door.request['token_fp']} -> {status}, unread")
            self.event(ClientEventKind.RELEASED, agent, door.request, status,
                       "released after the kill")  # fmt: skip
        self.blocked.pop(agent, None)
        self.previous.pop(agent, None)
        self.log.append(f"restart {agent}")
        self.event(ClientEventKind.RESTARTED, agent)
        self.start(agent)

    def pass_door(self, door: Door) -> str:
        if door.step is not None:
            left = max(1.0, self.deadline - time.monotonic())
            result = self.mount.go(door.step, timeout=left)
            self.events.append(ClientEvent(ClientEventKind.FILE, door.agent, note=door.what,
                                           path=door.step.path, result=result))  # fmt: skip
            return result
        request = door.request or {}
        self.event(ClientEventKind.HELD, door.agent, request)
        self.released.append(door.agent)
        status = self.control.release(request["id"], wait=True)
        self.event(ClientEventKind.RELEASED, door.agent, request, status)
        return f"HTTP {status}"

    def gather_doors(self) -> dict[str, Door]:
        """Each live agent's door, once every live agent stands at one.

        An agent that is neither at a door nor exited ``settle`` seconds after
        the others stand at theirs is left behind (logged: the run may then not
        repeat); none left alive, or the run's deadline passed, gives ``{}``.
        """
        settled = 0.0
        stalls = StallWatch()
        while True:
            live = [a for a in self.scenario.agents if self.processes[a].poll() is None]
            doors: dict[str, Door] = {}
            for step in self.mount.waiting():
                if step.agent in self.processes and step.agent not in doors:
                    doors[step.agent] = Door(
                        step.agent, step.describe(), step.touches(), step.mutates, step
                    )
            for request in self.control.held(at_least=0, timeout=0):
                agent = str(request["client_id"])
                if agent not in doors:
                    what = f"refresh {request['token_fp']}"
                    doors[agent] = Door(agent, what, frozenset({SERVER}), True, None, request)
            if not live or time.monotonic() > self.deadline:
                return {}
            missing = [a for a in live if a not in doors and a not in self.blocked]
            if doors and all(a in self.blocked for a in doors):  # only pollers: wait for all
                missing = [a for a in live if a not in doors]
            now = time.monotonic()
            stalled = all(stalls.stalled(a, self.processes[a].pid, now) for a in missing)
            if stalled and doors:
                return doors
            # in a kernel wait with nobody at a door: a request on its way to its door, mostly
            # (blocked agents with no door: they come back); so not the end of scheduling yet
            if doors or (stalled and missing):
                settled = settled or now + self.scenario.settle
                if now >= settled:
                    gone = "not at a door; went on" if doors else "in the kernel, no door: ended"
                    self.log.append(f"settle: {', '.join(missing)} {gone}")
                    return doors
            self.mount.wait_change(0.002)
