"""The deterministic kernel: one effect per step, a virtual clock, a split network.

Each step, the chooser picks one runnable agent and the kernel carries out
that agent's pending effect against the virtual filesystem or the fake
server.  An HTTP request takes two steps: the server handles (and commits)
it at the first, the agent sees the response at the second, and other agents
may run in between.  Virtual time moves only when no agent can run: the
clock jumps to the earliest wake-up.  Nothing here reads the real clock or a
random source, so a schedule replays byte for byte.
"""

from __future__ import annotations

import copy
import errno
import itertools
import math
import posixpath
import urllib.parse
from typing import Any

from fake_oauth_server import AuthServer, fingerprint
from refresh_engine import (
    Done,
    Effect,
    Failed,
    Flow,
    FlowRunner,
    HttpPost,
    MsvcrtLocking,
    MsvcrtMode,
    Mutex,
    Outcome,
    Raised,
    ReloginRequired,
    Returned,
    Sleep,
    Write,
    Wrote,
)

from ._agent import (
    _REQUEST_FAULT_OUTCOMES,
    AgentStatus,
    _Agent,
    alive_from,
    fault_options,
    gave_up,
    mutex_call,
)
from ._faults import FaultKind
from ._filesystem import FileSystemFactory
from ._footprint import SERVER_READ, Footprint, local
from ._history import EventKind, HistoryEvent, Refusal
from ._login import outside_login
from ._os import MSVCRT_TRIES, WINDOWS_EDEADLOCK, OsLayer
from ._result import Engine, RunResult
from ._schedule import Chooser, default_choice, minimal_schedule
from ._semantics import (
    Machine,
    Performer,
    Scene,
    fault_footprint,
    footprint,
    io_failure,
    rule_for,
)
from ._syscalls import http_call, os_call
from ._vfs import VirtualFS
from ._view import _View
from ._watch import StoreWatch, note_kept, read_files
from ._world import WorldSpec, seed_world


class Simulation:
    """One run of one engine in one world under one chooser."""

    def __init__(
        self,
        spec: WorldSpec,
        engine: Engine,
        chooser: Chooser,
        backend: FileSystemFactory = VirtualFS,
    ) -> None:
        """``backend`` builds the filesystem from the virtual clock: ``VirtualFS``, or a
        real one that ``simulator.real`` builds to check the model against an OS."""
        self.spec = spec
        self.engine = engine  # a template: each process runs a copy of its own (``_flow``)
        self._engines: dict[int, Engine] = {}
        self._new_pids = itertools.count(5001)  # pids for restarted processes: none used yet
        self.chooser = chooser
        self.now = spec.start_time
        self.fs = backend(lambda: self.now)
        self.os = OsLayer(self.fs, spec.os, spec.nolock_dirs, spec.mtime_resolution)
        self.server = AuthServer(spec.policy, seed=spec.server_seed)
        seed_world(spec, self.fs, self.server)
        self.agents = [
            _Agent(a.name, spec.pid(i), spec.context(a.name), a.turns, spec.skew(a.name), a)
            for i, a in enumerate(spec.agents)
        ]
        self.faults_left = spec.max_faults
        self.watch = StoreWatch(spec.stores, spec.profiles)
        self.mutexes: dict[tuple[int, str], str] = {}  # (pid, name) -> holding agent
        self._by_name = {agent.name: agent for agent in self.agents}
        self.events: list[HistoryEvent] = []
        self.step = 0
        self._base = urllib.parse.urlsplit(spec.base_url)
        for agent in self.agents:
            self._schedule_next_turn(agent)
        if len(spec.profiles) > 1:  # what each profile starts from: a writer may carry it back
            for store in filter(self.fs.exists, self.watch.stores):
                self._record_store("", store)

    # ----------------------------------------------------------- main loop

    def run(self) -> RunResult:
        chosen: list[str] = []
        defaults: list[bool] = []
        try:
            self._loop(chosen, defaults)
        finally:
            for agent in self.agents:  # a deadlocked or aborted run leaves flows open
                if agent.runner is not None:
                    agent.runner.close()
            self.fs.close_all()
        return RunResult(
            events=tuple(self.events),
            audit=self.server.audit,
            schedule=minimal_schedule(chosen, defaults),
            steps=self.step,
            preemptions=defaults.count(False),
            start_time=self.spec.start_time,
            home=self.spec.home,
            policy=self.spec.policy,
            stores=self.watch.stores,
            final_files=read_files(self.fs, self.spec.stores),
        )

    def _loop(self, chosen: list[str], defaults: list[bool]) -> None:
        last: str | None = None
        while True:
            runnable = [agent.name for agent in self.agents if self._can_run(agent)]
            if not runnable:
                if self._advance_clock():
                    continue
                stuck = getattr(self.chooser, "stuck", None)
                if stuck is not None:  # the explorer races what waits forever, too
                    stuck(_View(self, self.step, [], last))
                break
            if self.step >= self.spec.max_steps:
                self._record(EventKind.STEP_BOUND, "", note=f"stopped at {self.step} steps")
                break
            choice = self.chooser.choose(_View(self, self.step, runnable, last))
            chosen.append(choice)
            defaults.append(choice == default_choice(runnable, last))
            name, _, fault = choice.partition("!")
            if fault:
                self.faults_left -= 1
                self._strike(self._agent(name), FaultKind.parse(fault))
            else:
                self._run_step(self._agent(name))
            last = name
            self.step += 1

    def _agent(self, name: str) -> _Agent:
        return self._by_name[name]

    def _can_run(self, agent: _Agent) -> bool:
        if agent.status is AgentStatus.AWAITING or agent.status is AgentStatus.USING:
            return True
        if agent.status is not AgentStatus.READY:
            return False
        effect = agent.runner.pending if agent.runner is not None else None
        if effect is None:
            return True
        can_run = rule_for(effect).can_run
        return can_run is None or can_run(self._machine(agent.pid), effect)

    def _advance_clock(self) -> bool:
        """Jump to the earliest wake-up; False when nothing will ever wake."""
        waiting = [a for a in self.agents if a.waits_until < math.inf]
        if not waiting:
            blocked = [a.name for a in self.agents if a.status is not AgentStatus.DONE]
            if blocked:
                self._record(EventKind.DEADLOCK, "", note="waiting forever: " + ", ".join(blocked))
            return False
        self.now = min(agent.waits_until for agent in waiting)
        self._record(EventKind.CLOCK, "")
        for agent in waiting:
            if agent.waits_until != self.now:
                continue
            if agent.status is AgentStatus.READY:
                self._give_up(agent)
            elif agent.status is AgentStatus.IDLE:
                self._begin_turn(agent)
            elif agent.status is AgentStatus.STALLED:  # the pending effect is still to do
                agent.issue(agent.runner.pending if agent.runner else None, self.now)
            elif agent.status is AgentStatus.DELAYED:
                agent.status = AgentStatus.AWAITING  # the slow answer is here
            else:
                self._resume(agent, Done())
        return True

    # -------------------------------------------------------------- turns

    def _schedule_next_turn(self, agent: _Agent) -> None:
        if agent.next_turn >= len(agent.turns):
            agent.status = AgentStatus.DONE
            return
        agent.status = AgentStatus.IDLE
        agent.wake_at = max(self.now, self.spec.start_time + agent.turns[agent.next_turn])

    def _begin_turn(self, agent: _Agent) -> None:
        agent.next_turn += 1
        self._record(EventKind.TURN_BEGIN, agent.name, note=f"turn {agent.next_turn}")
        agent.runner = FlowRunner(self._flow(agent))
        self._after(agent, agent.runner.start())

    def _flow(self, agent: _Agent) -> Flow[str]:
        """The turn, by the process's own engine copy (made anew after a kill, so what an
        engine keeps in memory dies with its process); or an outside login (``_login``)."""
        engine = self._engines.get(agent.pid)
        if engine is None:
            engine = self._engines[agent.pid] = copy.deepcopy(self.engine)
        if not agent.logs_in:
            return engine.access_token(agent.ctx)
        return outside_login(engine, agent.ctx, self.server.seed_grant(self.now))

    def _resume(self, agent: _Agent, outcome: Outcome) -> None:
        assert agent.runner is not None
        self._after(agent, agent.runner.resume(outcome))

    def _after(self, agent: _Agent, result: Effect | Returned[str] | Raised) -> None:
        if isinstance(result, Returned):
            agent.token = str(result.value)
            self._record(
                EventKind.TURN_END, agent.name, note=f"access token {fingerprint(agent.token)}"
            )
            agent.status = AgentStatus.USING
        elif isinstance(result, Raised):
            error = result.error
            self._record(
                EventKind.TURN_END,
                agent.name,
                error_type=type(error).__name__,
                stranded=isinstance(error, ReloginRequired),
                note=str(error),
            )
            agent.status = AgentStatus.DONE
        else:
            agent.issue(result, self.now)

    def _give_up(self, agent: _Agent) -> None:
        """A blocked lock call's timeout ran out: it fails as the real one (``gave_up``)."""
        effect, failed, fields = gave_up(agent, self.agents)
        self._record(EventKind.EFFECT, agent.name, effect=effect, outcome=failed, **fields)
        self._resume(agent, failed)

    # -------------------------------------------------------------- steps

    def _use_token(self, agent: _Agent) -> None:
        """The workload calls the resource endpoint with the token it was given."""
        check = self.server.check_access(agent.token, self.now)
        self._record(
            EventKind.TOKEN_USE,
            agent.name,
            ok=check.ok,
            refusal=Refusal.of(check),
            family=check.family,
            note=fingerprint(agent.token) + ("" if check.ok else f" ({check.reason})"),
        )
        agent.token = ""
        self._schedule_next_turn(agent)
        if agent.status is AgentStatus.IDLE and agent.wake_at <= self.now:
            self._begin_turn(agent)

    def _run_step(self, agent: _Agent) -> None:
        if agent.status is AgentStatus.USING:
            self._use_token(agent)
            return
        if agent.status is AgentStatus.AWAITING:
            outcome = agent.response
            assert outcome is not None
            self._record(
                EventKind.RESPONSE, agent.name, outcome=outcome, request_id=agent.request_id
            )
            agent.response = None
            self._resume(agent, outcome)
            return
        assert agent.runner is not None
        assert agent.runner.pending is not None
        effect = agent.runner.pending
        if rule_for(effect).performer is Performer.KERNEL:
            self._kernel_effect(agent, effect)
            return
        outcome = self._do(agent, effect)
        if outcome is None:
            return  # a torn write's first part: the agent writes the rest next step
        if self._msvcrt_retry(agent, effect, outcome):
            return
        agent.tries = 0
        self._record_effect(agent, effect, outcome)
        self._resume(agent, outcome)

    def _kernel_effect(self, agent: _Agent, effect: Effect) -> None:
        """The effects whose row says the kernel carries them out: they wait or take two steps."""
        match effect:
            case HttpPost():
                agent.request_id = request_id = f"s{self.step}"
                agent.response = http_call(self.server, self._base, effect, request_id, self.now)
                agent.status = AgentStatus.AWAITING
                self._record(
                    EventKind.REQUEST, agent.name, effect=effect, request_id=agent.request_id
                )
            case Mutex():
                outcome = mutex_call(self.mutexes, agent, effect)
                self._record(EventKind.EFFECT, agent.name, effect=effect, outcome=outcome)
                self._resume(agent, outcome)
            case Sleep():
                self._record(EventKind.EFFECT, agent.name, effect=effect)
                agent.status = AgentStatus.SLEEPING
                agent.wake_at = self.now + max(0.0, effect.seconds)
            case _:
                raise AssertionError(f"{type(effect).__name__} is the OS layer's to carry out")

    def _do(self, agent: _Agent, effect: Effect) -> Outcome | None:
        """Carry out an OS effect; ``None`` when only a torn write's first part was written.

        With ``torn_writes`` a write tears: one step writes a prefix, the
        agent's next step the rest, and a reader running in between sees the
        prefix, as a concurrent read of a real file can.
        """
        if not (isinstance(effect, Write) and self.spec.torn_writes and len(effect.data) > 1):
            return self._perform(agent.pid, effect)
        half = len(effect.data) // 2
        if not agent.torn:
            first = Write(effect.fd, effect.data[:half])
            outcome = self._perform(agent.pid, first)
            if isinstance(outcome, Failed):
                return outcome
            agent.torn = True
            self._record_effect(agent, first, outcome, note="first part of a torn write")
            return None
        agent.torn = False
        outcome = self._perform(agent.pid, Write(effect.fd, effect.data[half:]))
        return Wrote(len(effect.data)) if isinstance(outcome, Wrote) else outcome

    def _record_effect(
        self, agent: _Agent, effect: Effect, outcome: Outcome, note: str = ""
    ) -> None:
        """The effect's history line, and the store's new generation if it changed one."""
        self.watch.track(agent.pid, effect, getattr(outcome, "fd", None))
        fd = getattr(effect, "fd", None)
        path = self.watch.path_of(agent.pid, fd) if fd is not None else ""
        self._record(
            EventKind.EFFECT, agent.name, effect=effect, outcome=outcome, path=path, note=note
        )
        stores = () if isinstance(outcome, Failed) else self.watch.changed_stores(agent.pid, effect)
        for store in stores:
            self._record_store(agent.name, store)

    def _record_store(self, agent: str, store: str) -> None:
        several = len(self.watch.keys) > 1
        for key in self.watch.keys:
            held = self.watch.reading(self.fs, store, key, self.server.family_of)
            fields = {"store": held.state, "family": held.family, "generation": held.generation}
            note = f"{key} {held.note}" if several else held.note
            profile = key if several else ""
            self._record(EventKind.STORE, agent, path=store, note=note, profile=profile, **fields)

    def _msvcrt_retry(self, agent: _Agent, effect: Effect, outcome: Outcome) -> bool:
        """``LK_LOCK`` tries once a second, ten times, then fails with EDEADLOCK."""
        if not isinstance(effect, MsvcrtLocking) or not isinstance(outcome, Failed):
            return False
        if effect.mode not in (MsvcrtMode.LOCK, MsvcrtMode.RLOCK) or outcome.errno != errno.EACCES:
            return False
        agent.tries += 1
        if agent.tries < MSVCRT_TRIES:
            self._record(EventKind.BLOCKED, agent.name, effect=effect, note="retry in 1s")
            agent.status = AgentStatus.STALLED  # the same effect is tried again on waking
            agent.wake_at = self.now + 1.0
            return True
        agent.tries = 0
        failed = Failed("OSError", WINDOWS_EDEADLOCK, "Resource deadlock avoided")
        self._record(EventKind.EFFECT, agent.name, effect=effect, outcome=failed)
        self._resume(agent, failed)
        return True

    def _skew_of(self, pid: int) -> float:
        return next((agent.skew for agent in self.agents if agent.pid == pid), 0.0)

    def _perform(self, pid: int, effect: Effect) -> Outcome:
        return os_call(
            self.os,
            pid,
            effect,
            now=self.now + self._skew_of(pid),
            alive=alive_from(self.agents, pid),
            path_of=self.watch.path_of,
        )

    def _machine(self, pid: int) -> Machine:
        """What a row of ``_semantics`` sees of this simulation, for process ``pid``."""
        return Machine(
            self.os,
            pid,
            self.now + self._skew_of(pid),
            alive_from(self.agents, pid),
            self.watch.path_of,
            lambda owner, name: (owner, name) not in self.mutexes,
        )

    def footprint(self, agent: _Agent, fault: FaultKind | None = None) -> Footprint:
        """What ``agent``'s next step (struck by ``fault``) would touch; see ``_semantics``."""
        if fault is not None:
            return fault_footprint(fault, agent.name)
        if agent.status is AgentStatus.AWAITING:
            return local(agent.name)  # the response arrives: the server was written already
        if agent.status is AgentStatus.USING:
            return SERVER_READ
        if agent.runner is None or agent.runner.pending is None:
            return local(agent.name)
        scene = Scene(
            self.fs, agent.pid, agent.name, self.os.path, self.os.windows, self.os.holds_lock
        )
        return footprint(scene, agent.runner.pending)

    # ------------------------------------------------------------- faults

    def fault_options(self, agent: _Agent) -> tuple[FaultKind, ...]:
        """The faults that may strike ``agent`` now; none once the budget is spent."""
        return fault_options(agent, self.spec.faults if self.faults_left > 0 else frozenset())

    def _strike(self, agent: _Agent, fault: FaultKind) -> None:
        first = len(self.events)
        self._record(EventKind.FAULT, agent.name, fault=fault, struck=agent.name, note=fault.value)
        self._strike_effects(agent, fault)
        if fault.kills:  # what the dead left on disk, for the checker's avoidable losses
            note_kept(self.events, first, self.fs, self.watch, self.server.family_of)

    def _strike_effects(self, agent: _Agent, fault: FaultKind) -> None:
        match fault:
            case FaultKind.KILL:
                self._kill(agent.pid, agent.name, fault)
            case FaultKind.CRASH:
                for pid in sorted({other.pid for other in self.agents}):
                    self._kill(pid, agent.name, fault)
                self.fs.crash()
                for store in filter(self.fs.exists, self.watch.stores):
                    self._record_store("", store)
            case FaultKind.DROP:
                agent.response = Failed("TimeoutError", errno.ETIMEDOUT, "the response was lost")
                self._run_step(agent)
            case FaultKind.SERVER_ERROR | FaultKind.RATE_LIMIT | FaultKind.RESET:
                # the request never reaches the server; the agent sees the failure next step
                agent.request_id = f"s{self.step}"
                agent.response = _REQUEST_FAULT_OUTCOMES[fault]
                agent.status = AgentStatus.AWAITING
            case FaultKind.STALL | FaultKind.SLOW:
                slow = fault is FaultKind.SLOW
                agent.status = AgentStatus.DELAYED if slow else AgentStatus.STALLED
                agent.wake_at = self.now + self.spec.stall_seconds
            case FaultKind.DENIED:
                self.os.deny_writes(posixpath.dirname(store) for store in self.watch.stores)
            case FaultKind.IO_ERROR:  # the call fails before it touches anything
                effect = agent.runner.pending if agent.runner is not None else None
                failed = io_failure(effect)
                assert effect is not None
                assert failed is not None
                agent.torn = False  # a torn write's second part fails: the prefix stays
                self._record_effect(agent, effect, failed)
                self._resume(agent, failed)

    def _kill(self, pid: int, struck: str, fault: FaultKind) -> None:
        """Kill a process: its flows stop mid-step, the OS closes its files, it restarts later."""
        self.os.kill(pid)
        self._engines.pop(pid, None)  # a restarted process starts from a fresh engine
        for other in self.agents:  # the process's other agents die with ``struck``
            if other.pid == pid and other.name != struck and other.status is not AgentStatus.DONE:
                note = f"{fault.value} (with {struck})"
                self._record(EventKind.FAULT, other.name, fault=fault, struck=struck, note=note)
        self.watch.forget_process(pid)
        self.mutexes = {key: holder for key, holder in self.mutexes.items() if key[0] != pid}
        # the restarted process gets a pid of its own: a lock file naming the dead one now
        # names no live process (``pid_reuse``: it gets the dead pid back, as a busy OS may)
        restarted = pid if self.spec.pid_reuse else next(self._new_pids)
        for agent in self.agents:
            if agent.pid != pid:
                continue
            agent.pid = restarted
            if agent.status is AgentStatus.DONE:
                continue
            if agent.runner is not None:
                agent.runner.close()
                agent.runner = None
            if agent.status is not AgentStatus.IDLE:
                agent.next_turn -= 1  # the interrupted turn is asked for again
            agent.response = None
            agent.token = ""
            agent.torn = False  # a torn write's second part dies with the process
            agent.tries = 0
            turn_at = self.spec.start_time + agent.turns[agent.next_turn]
            agent.status = AgentStatus.IDLE
            agent.wake_at = max(turn_at, self.now + self.spec.restart_delay)

    # ------------------------------------------------------------ history

    def _record(self, kind: EventKind, agent: str, **fields: Any) -> None:
        self.events.append(HistoryEvent(self.step, self.now, agent, kind, **fields))


def simulate(
    spec: WorldSpec, engine: Engine, chooser: Chooser, backend: FileSystemFactory = VirtualFS
) -> RunResult:
    """Run ``engine`` in a fresh world built from ``spec``, on ``backend``'s filesystem."""
    return Simulation(spec, engine, chooser, backend).run()
