"""Time to find each known bug: tokenrace's strategies against what a user would do instead.

    python benchmarks/bench_find.py [--quick] [--repeat 3] [--budget 60] [--scenario NAME]
                                    [--merge]

``--merge`` (with ``--scenario``) re-measures only those rows and keeps the
others of the existing ``find.json``; ``--only frontrun`` (or ``stress``,
``tokenrace``, comma-separated) re-measures only those columns of them.
Every figure records the run it comes from (date and git revision; those
from before this was recorded say so).

For every known-bug scenario (``conformance/scenarios/``), from a cold start:

- **tokenrace**: ``conformance.search_engine`` with each ``simulator.Strategy``
  (the approach of ``bench_simulator.time_to_find``): schedules run and
  seconds until the first failing schedule (shrinking not counted).
- **stress test**: what a user writes by hand.  The scenario's agents as
  real processes (``agent_worker.py once``, the ``--command`` contract; the
  agents of one gateway as threads of one process) started at once against
  the real fake server on loopback, turn after turn, and the whole attempt
  repeated in a fresh world until an attempt fails or the time budget is
  spent.  Expiries between turns are made by ageing the stores
  (``harness.DiskWorld.age``), not by waiting.
- **frontrun** (PyPI; DPOR and random bytecode scheduling of Python
  threads): the same engine run as threads through ``RealWorld`` against
  the real fake server, one ``frontrun.explore`` call per cold start, in a
  child process under the ``frontrun`` CLI (``explore`` refuses to run
  without it).  Two adaptations frontrun needs, both what its documentation
  tells a user to do: blocking lock calls (``flock``, ``lockf``, the
  in-process mutex) become non-blocking tries with a ``time.sleep`` between
  them (the kernel still decides every lock; frontrun makes the sleep a
  scheduling point), since frontrun cannot schedule a thread blocked in the
  kernel and otherwise times out ("inconclusive"); and DPOR runs with
  ``clock="virtual"``, without which its depth-first search spins forever in
  a waiting thread.  Random runs with the real clock (sleeps are pure yields).

An attempt fails when the checker's fatal anomaly kinds show: a refresh token
reused (the server's audit), an agent stranded (needs a new login), an engine
error (a torn read surfaces here), a token the server refuses, or an agent
stuck (deadlock).  Each figure is the median over ``--repeat`` cold starts;
an alternative that finds nothing within its budget in a cold start is not
repeated and is reported as not found.  Ratios compare each alternative's
median time with tokenrace's (the strategy the scenario file names, which
``tokenrace run`` uses).

Scenarios of the ``windows`` OS model get their stress test under Wine: each
agent process is the official Windows CPython (``simulator.real``, set up by
the benchmark itself with ``setup_wine_python``, cached) running
``agent_worker.py once`` with the state dir as a Windows path (``Z:\\...``),
so the engine sees ``sys.platform == "win32"``, no ``fcntl`` and Windows'
sharing rules; the fake server and the harness stay
native and the agents reach it over loopback.  When Wine cannot be set up
the row says why instead.  frontrun cannot follow there (no Windows build of
it), and run natively its threads get Linux semantics, where these engines
are correct: the row says so.  A scenario that needs NFS mounted nolock is
run by tokenrace only.  Every loop is bounded in count and time; loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import itertools
import json
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from agent_worker import obtain
from harness import (
    WORKER,
    DiskWorld,
    Outcome,
    fmt,
    git_revision,
    judge,
    machine,
    machine_line,
    median,
    table,
    write_json,
)
from overlap import ForcedOverlap, OverlapBarrier

from conformance import (
    BUILTIN_ENGINES,
    Scenario,
    builtin_scenarios,
    load_scenario_file,
    search_engine,
)
from fake_oauth_server import RunningServer, serve_in_thread
from refresh_engine import (
    AgentContext,
    Close,
    CreateExclusive,
    Done,
    Effect,
    Failed,
    Flock,
    Fsync,
    Lockf,
    LockOp,
    Mkdir,
    Mutex,
    Open,
    Opened,
    OpenFlags,
    Read,
    ReadLink,
    RealWorld,
    Replace,
    Rmdir,
    Stat,
    Touch,
    Truncate,
    Unlink,
    Write,
)
from refresh_engine import (
    Outcome as EffectOutcome,
)
from simulator import OsModel, Strategy
from simulator.real import WineError, WinePython, WineUnavailable, setup_wine_python, windows_path

_REAL_TIME = time.time  # captured before frontrun can patch the time module
ATTEMPT_TIMEOUT = 30.0  # seconds one stress turn may take before its agents are called stuck
MAX_ATTEMPTS = 10_000
#: how far ahead the agents of a Wine turn are told to ask at once (``--start-at``): a Windows
#: CPython takes 1.4-1.9 s to start under Wine here, spread wider than the race window
WINE_START_LEAD = 2.5
FRONTRUN_STRATEGIES = ("dpor", "random")
#: what one run measures (``--only``); a row's figures per section, by the run they come from
SECTIONS = frozenset({"tokenrace", "stress", "frontrun"})
SECTION_KEYS = {
    "tokenrace": ("tokenrace",),
    "stress": ("stress",),
    "frontrun": tuple(f"frontrun_{strategy}" for strategy in FRONTRUN_STRATEGIES),
}


def known_bug_scenarios(names: list[str] | None = None) -> list[Scenario]:
    scenarios = [load_scenario_file(path) for path in builtin_scenarios()]
    scenarios = [s for s in scenarios if s.reproduces and s.engine in BUILTIN_ENGINES]
    if names:
        scenarios = [s for s in scenarios if s.name in names]
    return scenarios


def real_world_gap(scenario: Scenario) -> str:
    """Why this scenario cannot be run for real on this machine ("" when it can).

    ``windows`` scenarios can: their agent processes run under Wine
    (``needs_wine``).
    """
    world = scenario.world
    if world.nolock_dirs:
        return "needs a state dir on NFS mounted nolock (simulated only here)"
    if world.os not in (OsModel.LINUX, OsModel.WINDOWS):
        return f"needs {world.os.value} semantics (simulated only on this Linux machine)"
    return ""


def needs_wine(scenario: Scenario) -> bool:
    """Whether the stress test runs this scenario's agents as Windows processes under Wine."""
    return scenario.world.os is OsModel.WINDOWS


#: why frontrun is not run on a ``windows`` scenario (checked against PyPI for frontrun 0.7.0)
FRONTRUN_WINDOWS_GAP = (
    "frontrun cannot run in the Windows CPython: 0.7.0 has no Windows wheel on PyPI "
    "(manylinux and macOS only; its DPOR is a compiled extension, _dpor, and its CLI's "
    "I/O hook an LD_PRELOAD library), and run natively its threads get Linux semantics, "
    "where this engine is correct"
)


def wine_python() -> tuple[WinePython | None, str]:
    """The Windows CPython under Wine (the benchmark sets it up: ``setup_wine_python``),
    or why it cannot be had."""
    try:
        return setup_wine_python(), ""  # a benchmark sets Wine up itself
    except (WineUnavailable, WineError, OSError, subprocess.SubprocessError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return None, f"Wine unavailable: {reason[:200]}"


def fault_gap(scenario: Scenario) -> str:
    faults = sorted(fault.value for fault in scenario.world.faults)
    if not faults:
        return ""
    return f"needs a {'/'.join(faults)} fault, which it does not inject"


# --------------------------------------------------------------------------- tokenrace


def tokenrace_times(scenario: Scenario, repeat: int, budget: int) -> dict[str, Any]:
    """Per strategy: median schedules and seconds to the first failure over ``repeat`` seeds."""
    entry = BUILTIN_ENGINES[scenario.engine]
    out: dict[str, Any] = {}
    for strategy in Strategy:
        found: list[int] = []
        times: list[float] = []
        for seed in range(repeat):
            result = search_engine(
                scenario.name,
                scenario.world,
                entry,
                max_examples=budget,
                seed=seed,
                strategy=strategy,
            )
            if result.first_failure_at is None or result.time_to_first_failure is None:
                break
            found.append(result.first_failure_at)
            times.append(result.time_to_first_failure)
        complete = len(found) == repeat
        out[strategy.value] = {
            "found": complete,
            "runs": len(found) + (0 if complete else 1),
            "schedules": median(found) if complete else None,
            "seconds": median(times) if complete else None,
            "budget_schedules": budget,
        }
    return out


# --------------------------------------------------------------------------- stress test


def _groups(scenario: Scenario) -> list[list[str]]:
    """Agents by process: the agents of one gateway process share a group."""
    groups: dict[object, list[str]] = {}
    for index, agent in enumerate(scenario.world.agents):
        key = agent.process if agent.process is not None else ("own", index)
        groups.setdefault(key, []).append(agent.name)
    return list(groups.values())


def stress_attempt(
    running: RunningServer,
    scenario: Scenario,
    root: Path,
    wine: WinePython | None = None,
    *,
    overlap: ForcedOverlap | None = None,
    peaks: list[int] | None = None,
) -> set[str]:
    """One attempt: every turn, all processes at once, in a fresh world; the anomaly kinds.

    With ``wine``, every agent process is the Windows CPython under Wine.
    Free-running unless ``overlap`` is given: then each turn's token requests
    are held until the agents wait there together (``overlap.ForcedOverlap``),
    and the most held at once in each turn is appended to ``peaks``.
    """
    world = DiskWorld(root)
    names = [agent.name for agent in scenario.world.agents]
    world.login(running, names, scenario.world.layout)
    mark = len(running.server.audit)
    turns = sorted({turn for agent in scenario.world.agents for turn in agent.turns})
    outcomes: list[Outcome] = []
    previous = 0.0
    for turn in turns:
        world.age(turn - previous)  # the clock reaching this turn, as the stores see it
        previous = turn
        if overlap is None:
            outcomes += _stress_turn(world, running, scenario, wine)
            continue
        with OverlapBarrier(running.control, overlap) as barrier:
            outcomes += _stress_turn(world, running, scenario, wine)
        if peaks is not None:
            peaks.append(barrier.peak)
    return judge(running, running.server.audit[mark:], outcomes).kinds


def _stress_turn(
    world: DiskWorld, running: RunningServer, scenario: Scenario, wine: WinePython | None
) -> list[Outcome]:
    """Every process of the scenario at once (under Wine with ``wine``); their outcomes."""
    if wine is not None:
        return _wine_turn(world, running, scenario, wine)
    outcomes: list[Outcome] = []
    processes = []
    for group in _groups(scenario):
        argv = [sys.executable, str(WORKER), "once", "--engine", scenario.engine]
        if len(group) > 1:
            argv += ["--agents", ",".join(group)]
        env = world.env(group[0], running.token_url)
        processes.append(
            (group, subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True))
        )
    deadline = time.monotonic() + ATTEMPT_TIMEOUT
    for group, process in processes:
        try:
            out, _ = process.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            outcomes += [Outcome.timed_out(name, ATTEMPT_TIMEOUT) for name in group]
            continue
        answered = [Outcome.from_json(json.loads(line)) for line in out.splitlines() if line]
        outcomes += answered
        missing = set(group) - {outcome.agent for outcome in answered}
        outcomes += [Outcome(name, False, 0.0, error="Crashed: no answer") for name in missing]
    return outcomes


def wine_env(world: DiskWorld, agent: str, token_url: str, wine: WinePython) -> dict[str, str]:
    """The ``--command`` environment with Windows paths, over Wine's own (prefix, no DISPLAY).

    The paths are ``Z:/...`` with forward slashes, as the probes name them
    (``simulator.real.Probe``): the engines join paths with ``posixpath``, and
    Windows takes either separator.
    """
    env = world.env(agent, token_url)
    for name in ("TOKENRACE_STORE", "TOKENRACE_STATE_DIR", "TOKENRACE_AGENT_DIR"):
        env[name] = windows_path(env[name], "/")
    return {**env, **wine.env()}


def _wine_turn(
    world: DiskWorld, running: RunningServer, scenario: Scenario, wine: WinePython
) -> list[Outcome]:
    """Every process of the scenario at once as Windows CPython under Wine; their outcomes.

    Output goes through pipes that are read until each process exits, never
    until end-of-file: Wine's helper processes inherit and keep the pipes
    (``simulator.real.run_command``).
    """
    processes: list[tuple[list[str], subprocess.Popen[bytes]]] = []
    start_at = time.time() + WINE_START_LEAD
    for group in _groups(scenario):
        args = ["once", "--engine", scenario.engine, "--start-at", repr(start_at)]
        if len(group) > 1:
            args += ["--agents", ",".join(group)]
        command = wine.command(windows_path(WORKER), *args)
        env = wine_env(world, group[0], running.token_url, wine)
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        processes.append((group, process))
    outputs = _read_until_exit([process for _, process in processes], ATTEMPT_TIMEOUT)
    outcomes: list[Outcome] = []
    for group, process in processes:
        out, exited = outputs[process.pid]
        if not exited:
            outcomes += [Outcome.timed_out(name, ATTEMPT_TIMEOUT) for name in group]
            continue
        lines = [line for line in out.splitlines() if line.startswith("{")]
        answered = [Outcome.from_json(json.loads(line)) for line in lines]
        outcomes += answered
        missing = set(group) - {outcome.agent for outcome in answered}
        outcomes += [Outcome(name, False, 0.0, error="Crashed: no answer") for name in missing]
    return outcomes


def _read_until_exit(
    processes: list[subprocess.Popen[bytes]], timeout: float
) -> dict[int, tuple[str, bool]]:
    """Each process's stdout and whether it exited within ``timeout`` (the rest are killed).

    Reads stdout and stderr of all of them meanwhile, so none blocks on a
    full pipe; stderr is dropped.
    """
    deadline = time.monotonic() + timeout
    chunks: dict[int, list[bytes]] = {process.pid: [] for process in processes}
    killed: set[int] = set()
    owner: dict[int, subprocess.Popen[bytes]] = {}
    with selectors.DefaultSelector() as selector:
        for process in processes:
            for stream in (process.stdout, process.stderr):
                assert stream is not None
                selector.register(stream, selectors.EVENT_READ)
                owner[stream.fileno()] = process
        try:
            while True:  # bounded by the deadline
                exited = all(process.poll() is not None for process in processes)
                ready = selector.select(0 if exited else 0.02) if selector.get_map() else []
                for key, _ in ready:
                    data = os.read(key.fd, 65536)
                    process = owner[key.fd]
                    if not data:
                        selector.unregister(key.fileobj)
                    elif key.fileobj is process.stdout:
                        chunks[process.pid].append(data)
                if exited and not ready:
                    break
                if time.monotonic() > deadline:
                    for process in processes:
                        if process.poll() is None:
                            process.kill()
                            process.wait()
                            killed.add(process.pid)
                    break
        finally:
            for process in processes:
                for stream in (process.stdout, process.stderr):
                    if stream is not None:
                        stream.close()
    return {
        process.pid: (
            b"".join(chunks[process.pid]).decode(errors="replace"),
            process.pid not in killed,
        )
        for process in processes
    }


def stress_search(
    scenario: Scenario, budget: float, wine: WinePython | None = None
) -> dict[str, Any]:
    """Repeat attempts from a cold start until one fails or ``budget`` seconds pass."""
    started = time.perf_counter()
    with serve_in_thread(scenario.world.policy) as running, tempfile.TemporaryDirectory() as tmp:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            kinds = stress_attempt(running, scenario, Path(tmp) / f"a{attempt}", wine)
            elapsed = time.perf_counter() - started
            if kinds:
                return {
                    "found": True,
                    "seconds": elapsed,
                    "attempts": attempt,
                    "kinds": sorted(kinds),
                }
            if elapsed > budget:
                return {"found": False, "seconds": elapsed, "attempts": attempt, "kinds": []}
    return {"found": False, "seconds": time.perf_counter() - started, "attempts": MAX_ATTEMPTS}


# --------------------------------------------------------------------------- frontrun


class CooperativeRealWorld(RealWorld):
    """``RealWorld`` made explorable by frontrun, without changing what the kernel decides.

    - Every blocking lock is non-blocking tries with a ``time.sleep`` between
      them: frontrun makes the sleep a scheduling point, so a waiting thread
      lets the holder run instead of blocking where frontrun cannot see it.
    - Every file effect is reported to frontrun's DPOR as a read or write of
      its path, before it is done.  frontrun sees files opened with the
      builtin ``open()`` only; ``RealWorld`` works on descriptors
      (``os.open``, ``os.read``, ``os.replace``), so without this DPOR would
      see no file conflict at all.  frontrun 0.7 has no public call for it:
      this uses ``frontrun._io_detection.get_io_reporter`` (``None`` outside
      an exploration, and then nothing is reported).
    """

    SPINS = 1_000_000
    _mutexes: dict[str, threading.Lock] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._paths: dict[int, str] = {}

    def perform(self, effect: Effect) -> EffectOutcome:
        self._report(effect)
        match effect:
            case Flock(fd, op, True) if op is not LockOp.UNLOCK:
                return self._spin(Flock(fd, op, False))
            case Lockf(fd, op, True) if op is not LockOp.UNLOCK:
                return self._spin(Lockf(fd, op, False))
            case Mutex(name, op):
                # no guard around it: a real lock held across a frontrun preemption
                # would block the next thread where frontrun cannot see it
                lock = self._mutexes.setdefault(name, threading.Lock())
                if op is LockOp.UNLOCK:
                    lock.release()
                    return Done()
                for _ in range(self.SPINS):
                    if lock.acquire(blocking=False):
                        return Done()
                    time.sleep(0.001)
                return Failed("TimeoutError", errno.ETIMEDOUT, "mutex not granted")
        outcome = super().perform(effect)
        if isinstance(effect, Open | CreateExclusive) and isinstance(outcome, Opened):
            self._paths[outcome.fd] = effect.path
        return outcome

    def _spin(self, effect: Effect) -> EffectOutcome:
        outcome = super().perform(effect)
        for _ in range(self.SPINS):
            if not (isinstance(outcome, Failed) and outcome.errno in (errno.EAGAIN, errno.EACCES)):
                break
            time.sleep(0.001)
            outcome = super().perform(effect)
        return outcome

    def _report(self, effect: Effect) -> None:
        from frontrun._io_detection import get_io_reporter

        reporter = get_io_reporter()
        if reporter is None:
            return
        for path, kind in self._accesses(effect):
            reporter(f"file:{os.path.realpath(path)}", kind)

    def _accesses(self, effect: Effect) -> list[tuple[str, str]]:
        match effect:
            case Open(path, flags):
                writes = flags & (OpenFlags.WRITE | OpenFlags.CREATE | OpenFlags.TRUNCATE)
                return [(path, "write" if writes else "read")]
            case CreateExclusive(path) | Unlink(path) | Mkdir(path) | Rmdir(path) | Touch(path):
                return [(path, "write")]
            case Stat(path) | ReadLink(path):
                return [(path, "read")]
            case Replace(src, dst):
                return [(src, "write"), (dst, "write")]
            case Read(fd):
                return [(self._paths[fd], "read")] if fd in self._paths else []
            case Write(fd) | Truncate(fd) | Fsync(fd):
                return [(self._paths[fd], "write")] if fd in self._paths else []
            case Close():
                # closing changes no file's contents (reported as a write, it made every
                # two readers of the store conflict, and DPOR reorder reads among themselves)
                return []
            case Flock(fd) | Lockf(fd):
                return [(self._paths[fd], "write")] if fd in self._paths else []
        return []


def _frontrun_call(
    engine: Any, ctx: AgentContext, http: httpx.Client, clock: Callable[[], float]
) -> str:
    """One engine call through ``CooperativeRealWorld`` (``obtain``'s callable).

    A module function with the engine as an argument, not a closure: frontrun
    keys a closure's cell by its code object, so every thread's own ``engine``
    would look like one shared variable written by all of them.
    """
    world = CooperativeRealWorld(http, clock=clock, sleep=time.sleep)
    return str(world.run(engine.access_token(ctx)))


def frontrun_search(
    scenario: Scenario, strategy: str, budget: float, seed: int, search: str | None = None
) -> dict[str, Any]:
    """One ``frontrun.explore`` from a cold start (run this under the ``frontrun`` CLI).

    ``search`` is DPOR's wakeup-tree order (``explore(search=...)``: ``"dfs"``,
    ``"bit-reversal[:seed]"``, ``"round-robin[:seed]"``, ``"stride[:seed]"``,
    ``"conflict-first"``); ``None`` keeps frontrun's default, depth-first.
    """
    if search is not None and strategy != "dpor":
        raise ValueError("search is an option of frontrun's DPOR only")
    import frontrun

    entry = BUILTIN_ENGINES[scenario.engine]
    spec = scenario.world
    names = [agent.name for agent in spec.agents]
    turns = sorted({turn for agent in spec.agents for turn in agent.turns})
    counter = itertools.count()
    executions = 0

    with serve_in_thread(spec.policy) as running, tempfile.TemporaryDirectory() as tmp:

        class State:
            def __init__(self) -> None:
                self.world = DiskWorld(Path(tmp) / f"e{next(counter)}")
                self.world.login(running, names, spec.layout, now=_REAL_TIME)
                self.world.age(turns[0])  # the first turn's expiry; later turns move the clock
                self.mark = len(running.server.audit)
                # one list per agent: a list every thread appends to would be a shared
                # object to frontrun, whose DPOR would spend its budget reordering appends
                self.outcomes: dict[str, list[Outcome]] = {name: [] for name in names}
                self.clients = {name: httpx.Client(timeout=30.0) for name in names}

        def agent(name: str) -> Callable[[State], None]:
            def work(state: State) -> None:
                ctx: AgentContext = state.world.context(name, running.token_url)
                outcomes = state.outcomes[name]
                call = functools.partial(_frontrun_call, entry.factory())

                for turn in turns:
                    offset = turn - turns[0]
                    answer = obtain(call, ctx, state.clients[name], offset, now=_REAL_TIME)
                    outcomes.append(Outcome.from_json(answer))

            return work

        def invariant(state: State) -> bool:
            nonlocal executions
            executions += 1
            for client in state.clients.values():
                client.close()
            audit = running.server.audit[state.mark :]
            outcomes = [outcome for name in names for outcome in state.outcomes[name]]
            tally = judge(running, audit, outcomes, now=_REAL_TIME())
            if os.environ.get("BENCH_FIND_DEBUG"):  # what each interleaving ended with
                print(sorted(tally.kinds), [o.error for o in outcomes], file=sys.stderr)
            return not tally.fatal

        options: dict[str, Any] = {
            "strategy": strategy,
            "total_timeout": budget,
            "reproduce_on_failure": 0,
            "timeout_per_run": 30.0,
        }
        if strategy == "dpor":
            options |= {"clock": "virtual", "max_executions": 1_000_000}
            if search is not None:
                options["search"] = search
        else:
            options |= {"max_attempts": 1_000_000, "max_ops": 200_000, "seed": seed}
        started = time.perf_counter()
        result = frontrun.explore(
            setup=State, workers=[agent(name) for name in names], invariant=invariant, **options
        )
        elapsed = time.perf_counter() - started
    found = result.property_holds is False
    answer = {
        "found": found,
        "seconds": elapsed,
        "executions": int(result.num_explored or executions),
        "inconclusive": str(result.inconclusive_reason or "")[:300],
    }
    return answer | ({"search": search} if search is not None else {})


def frontrun_command() -> list[str]:
    """``frontrun`` (the CLI that sets up its environment) running this interpreter."""
    found = shutil.which("frontrun", path=str(Path(sys.executable).parent)) or shutil.which(
        "frontrun"
    )
    if found is None:
        raise FileNotFoundError("the frontrun CLI is not installed (pip install frontrun)")
    return [found, sys.executable]


def frontrun_cold_start(
    scenario: Scenario, strategy: str, budget: float, seed: int, search: str | None = None
) -> dict[str, Any]:
    """Run ``frontrun_search`` in a child process under the ``frontrun`` CLI."""
    argv = [
        *frontrun_command(),
        str(Path(__file__).resolve()),
        "frontrun-child",
        scenario.name,
        strategy,
        repr(budget),
        str(seed),
        *([search] if search is not None else []),
    ]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=budget + 120, check=False
        )
    except subprocess.TimeoutExpired:
        return {"found": False, "seconds": budget, "executions": 0, "error": "child timed out"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"found": False, "seconds": budget, "executions": 0, "error": tail[0][:300]}
    answer: dict[str, Any] = json.loads(lines[-1])
    return answer


# --------------------------------------------------------------------------- cold starts


def cold_starts(repeat: int, search: Callable[[int], dict[str, Any]]) -> dict[str, Any]:
    """Up to ``repeat`` cold starts; stop at the first that finds nothing within its budget."""
    runs = []
    for seed in range(repeat):
        run = search(seed)
        runs.append(run)
        if not run["found"]:
            break
    found = [run for run in runs if run["found"]]
    count_key = "attempts" if "attempts" in runs[0] else "executions"
    summary: dict[str, Any] = {"runs": runs, "found_in": f"{len(found)}/{len(runs)}"}
    if len(found) == len(runs):
        summary |= {
            "found": True,
            "seconds": median(run["seconds"] for run in found),
            "count": median(run[count_key] for run in found),
        }
    else:
        summary |= {"found": False, "seconds": None, "count": None}
        last = runs[-1]
        summary["why"] = last.get("error") or last.get("inconclusive") or ""
    return summary


def run(
    scenario_names: list[str] | None,
    repeat: int,
    budget: float,
    schedules: int,
    progress: bool = True,
    only: frozenset[str] = SECTIONS,
) -> dict[str, Any]:
    """Measure every section of ``only`` (``SECTIONS``) for each scenario.

    A row lacks the sections left out (``merge`` takes them from an earlier run).
    """
    rows = []
    wine_state: tuple[WinePython | None, str] | None = None  # set up once, on first need
    for scenario in known_bug_scenarios(scenario_names):
        row: dict[str, Any] = {
            "scenario": scenario.name,
            "class": scenario.race_class,
            "engine": scenario.engine,
            "default_strategy": scenario.strategy.value,
        }
        if "tokenrace" in only:
            row["tokenrace"] = tokenrace_times(scenario, repeat, schedules)
        gap = real_world_gap(scenario)
        row["skipped"] = gap
        row["fault_gap"] = fault_gap(scenario)
        row["gaps"] = {}  # alternative -> why it was not run on this row
        wine: WinePython | None = None
        if not gap and needs_wine(scenario):
            row["stress_runner"] = "Windows CPython under Wine"
            if wine_state is None:
                wine_state = wine_python()
            wine, why = wine_state
            if wine is None:
                row["gaps"]["stress"] = why
            for strategy in FRONTRUN_STRATEGIES:
                row["gaps"][f"frontrun_{strategy}"] = FRONTRUN_WINDOWS_GAP
        if not gap and "stress" not in row["gaps"] and "stress" in only:
            row["stress"] = cold_starts(
                repeat,
                lambda seed, scenario=scenario, wine=wine: stress_search(scenario, budget, wine),
            )
        if not gap and "frontrun" in only:
            for strategy in FRONTRUN_STRATEGIES:
                if f"frontrun_{strategy}" in row["gaps"]:
                    continue
                row[f"frontrun_{strategy}"] = cold_starts(
                    repeat,
                    lambda seed, strategy=strategy, scenario=scenario: frontrun_cold_start(
                        scenario, strategy, budget, seed
                    ),
                )
        if "tokenrace" in row:
            row["ratios"] = ratios(row)
        rows.append(row)
        if progress and "tokenrace" in row:
            print(f"  {scenario.name}: {summary_line(row)}", file=sys.stderr, flush=True)
    return {"repeat": repeat, "budget_seconds": budget, "budget_schedules": schedules, "rows": rows}


ALTERNATIVES = {
    "stress": "stress test",
    "frontrun_dpor": "frontrun DPOR",
    "frontrun_random": "frontrun random",
}


def ratios(row: dict[str, Any]) -> dict[str, str]:
    """Each alternative's median time over tokenrace's (the scenario's own strategy)."""
    base = row["tokenrace"][row["default_strategy"]]
    out = {}
    for key in ALTERNATIVES:
        alternative = row.get(key)
        if alternative is None:
            out[key] = "not run"
        elif not alternative["found"]:
            out[key] = "not found within budget"
        elif not base["found"] or not base["seconds"]:
            out[key] = "-"
        else:
            out[key] = f"{alternative['seconds'] / base['seconds']:,.0f}x"
    return out


def summary_line(row: dict[str, Any]) -> str:
    base = row["tokenrace"][row["default_strategy"]]
    parts = [f"tokenrace {_cell(base, 'schedules')}"]
    for key, label in ALTERNATIVES.items():
        if key in row:
            parts.append(f"{label} {_cell(row[key], 'count')}")
    return "; ".join(parts)


def _cell(result: dict[str, Any], count_key: str) -> str:
    if not result["found"]:
        return "not found"
    seconds = result["seconds"]
    shown = f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"
    return f"{shown} / {fmt(result[count_key], 0)}"


def markdown(result: dict[str, Any]) -> str:
    budget = result["budget_seconds"]
    lines = [
        f"Median of {result['repeat']} cold starts; budgets: tokenrace "
        f"{result['budget_schedules']} schedules per strategy, stress test and frontrun "
        f"{budget:g} s each.  Cells: time / schedules (tokenrace), attempts (stress test: "
        "every turn with all agents at once, in a fresh world), or interleavings (frontrun).\n",
    ]
    strategies = [strategy.value for strategy in Strategy]
    rows = []
    for row in result["rows"]:
        cells = [f"{row['scenario']} ({row['class']})", row["engine"]]
        for strategy in strategies:
            cell = _cell(row["tokenrace"][strategy], "schedules")
            if strategy == row["default_strategy"]:
                cell = f"**{cell}**"
            cells.append(cell)
        rows.append(cells)
    lines.append("tokenrace, per strategy (bold: the scenario's own, used for the ratios):\n")
    lines.append(table(["scenario (class)", "engine", *strategies], rows))
    rows = []
    for row in result["rows"]:
        cells = [
            f"{row['scenario']} ({row['class']})",
            _cell(row["tokenrace"][row["default_strategy"]], "schedules"),
        ]
        if row["skipped"]:
            cells += ["-", "-", "-", "-", "-", "-", row["skipped"]]
        else:
            for key in ALTERNATIVES:
                cells.append(_cell(row[key], "count") if key in row else "-")
            cells += [row["ratios"][key] if key in row else "-" for key in ALTERNATIVES]
            cells.append(_note(row))
        rows.append(cells)
    lines.append("\nAgainst what a user would do instead (ratio: its time over tokenrace's):\n")
    lines.append(
        table(
            [
                "scenario (class)",
                "tokenrace",
                "stress test",
                "frontrun DPOR",
                "frontrun random",
                "stress ÷ tokenrace",
                "DPOR ÷ tokenrace",
                "random ÷ tokenrace",
                "note",
            ],
            rows,
        )
    )
    runs: dict[str, list[str]] = {}
    for row in result["rows"]:
        measured = row.get("measured", {})
        for section in ("tokenrace", "stress", "frontrun"):
            if section in measured:
                runs.setdefault(measured[section], []).append(f"{row['scenario']} ({section})")
    if len(runs) > 1:
        lines.append("\nFigures from different runs (same budgets and repeat count):\n")
        lines += [f"- {when}: {', '.join(names)}" for when, names in runs.items()]
    lines.append("\nNever found within the budget:\n")
    for key, label in ALTERNATIVES.items():
        missed = [r["scenario"] for r in result["rows"] if key in r and not r[key]["found"]]
        lines.append(f"- {label}: {', '.join(missed) if missed else 'none'}")
    skipped = [r["scenario"] for r in result["rows"] if r["skipped"]]
    lines.append(f"- not runnable on this machine (tokenrace only): {', '.join(skipped) or 'none'}")
    wined = [r["scenario"] for r in result["rows"] if r.get("stress_runner")]
    if wined:
        lines.append(
            "- stress test with every agent process the Windows CPython under Wine: "
            + ", ".join(wined)
        )
    return "\n".join(lines) + "\n"


def _note(row: dict[str, Any]) -> str:
    if row["fault_gap"]:
        return str(row["fault_gap"])
    notes = []
    if row.get("stress_runner"):
        notes.append(f"stress test: agents as {row['stress_runner']}")
    gaps: dict[str, str] = row.get("gaps", {})
    if "stress" in gaps:
        notes.append(f"stress test not run: {gaps['stress']}")
    frontrun_gaps = {gaps[key] for key in ("frontrun_dpor", "frontrun_random") if key in gaps}
    notes += [f"frontrun not run: {gap}" for gap in sorted(frontrun_gaps)]
    if row["engine"] == "no-lock" and not row.get("frontrun_dpor", {}).get("found", True):
        notes.append("frontrun runs threads of one process, which the in-process mutex serializes")
    for key, label in ALTERNATIVES.items():
        why = row.get(key, {}).get("why")
        if why and not row[key]["found"]:
            notes.append(f"{label}: {why[:120]}")
    return "; ".join(notes)


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    if args_list[:1] == ["frontrun-child"]:
        return _child(args_list[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s budgets, 300 schedules, 1 run")
    parser.add_argument("--repeat", type=int, default=3, help="cold starts per figure (median)")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per alternative run")
    parser.add_argument("--schedules", type=int, default=1000, help="tokenrace's budget")
    parser.add_argument("--scenario", action="append", help="only these scenarios (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("reports/bench"))
    parser.add_argument(
        "--merge", action="store_true", help="keep the other rows of the existing find.json"
    )
    parser.add_argument(
        "--only",
        help=f"comma-separated sections to measure ({', '.join(sorted(SECTIONS))}; needs --merge)",
    )
    args = parser.parse_args(args_list)
    only = SECTIONS
    if args.only:
        only = frozenset(part.strip() for part in args.only.split(",") if part.strip())
        if not only <= SECTIONS or not only:
            parser.error(f"--only takes {', '.join(sorted(SECTIONS))}")
        if only != SECTIONS and not args.merge:
            parser.error("--only needs --merge: the other figures come from find.json")
    if args.quick:
        args.repeat, args.budget, args.schedules = 1, 5.0, 300
    if not 1 <= args.repeat <= 20 or not 0 < args.budget <= 3600 or not args.schedules >= 1:
        parser.error("--repeat 1-20, --budget up to 3600 s, --schedules at least 1")
    info = machine()
    result = run(args.scenario, args.repeat, args.budget, args.schedules, only=only)
    result["sections"] = sorted(only)
    measured = f"{time.strftime('%Y-%m-%d')} @ {git_revision()}"
    for row in result["rows"]:
        row["measured"] = {
            section: measured
            for section in only
            if any(key in row for key in SECTION_KEYS[section])
        }
    if args.merge:
        try:
            result = merge(json.loads((args.out / "find.json").read_text()), result)
        except (OSError, ValueError) as exc:
            parser.error(f"--merge: cannot use {args.out / 'find.json'}: {exc}")
    text = f"Machine: {machine_line(info)}\n\n" + markdown(result)
    print(text)
    write_json(args.out / "find.json", {"machine": info, **result})
    (args.out / "find.md").write_text(text)
    print(f"wrote {args.out / 'find.md'} and {args.out / 'find.json'}", file=sys.stderr)
    return 0


EARLIER_RUN = "an earlier run (not recorded)"


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``old``'s rows with those ``new`` re-measured replaced (in scenario order).

    The budgets and repeat count must match: a table mixes runs, never settings.
    """
    for key in ("repeat", "budget_seconds", "budget_schedules"):
        if old.get(key) != new[key]:
            raise ValueError(f"{key} was {old.get(key)!r} there, {new[key]!r} now")
    only = frozenset(new.get("sections", SECTIONS))
    fresh = {row["scenario"]: row for row in new["rows"]}
    rows = []
    for row in old.get("rows", []):
        row.setdefault("gaps", {})
        if not isinstance(row.get("measured"), dict):
            row["measured"] = {
                section: row.get("measured", EARLIER_RUN)
                for section in SECTIONS
                if any(key in row for key in SECTION_KEYS[section])
            }
        update = fresh.pop(row["scenario"], None)
        if update is None:
            rows.append(row)
            continue
        merged = dict(update)
        for section in SECTIONS - only:  # the sections not re-measured stay as they were
            for key in SECTION_KEYS[section]:
                if key in row:
                    merged[key] = row[key]
            if section in row["measured"]:
                merged["measured"][section] = row["measured"][section]
        if "tokenrace" in merged:
            merged["ratios"] = ratios(merged)
        rows.append(merged)
    rows += fresh.values()
    order = {scenario.name: index for index, scenario in enumerate(known_bug_scenarios())}
    rows.sort(key=lambda row: order.get(row["scenario"], len(order)))
    return {**new, "rows": rows}


def _child(argv: list[str]) -> int:
    """``bench_find.py frontrun-child SCENARIO STRATEGY BUDGET SEED [SEARCH]``: one JSON line."""
    name, strategy, budget, seed, *rest = argv
    search = rest[0] if rest else None
    scenario = known_bug_scenarios([name])[0]
    with contextlib.redirect_stdout(sys.stderr):  # frontrun's own chatter stays off our line
        answer = frontrun_search(scenario, strategy, float(budget), int(seed), search)
    print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
