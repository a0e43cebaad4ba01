"""Mutation testing: every operator changes the engine, and the battery keeps killing a
fixed subset of mutants (so the mutation score cannot silently fall).

The probe world here is a scripted interpreter for one agent: a dict of
files, a clock, a token endpoint that always answers, and, per mutant, the
fault that makes its change visible (a failing effect kind, a busy lock).
"""

from __future__ import annotations

import dataclasses
import errno
import importlib
import inspect
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from conformance._battery import battery_scenarios
from conformance._engines import BUILTIN_ENGINES
from conformance._errors import ConformanceError
from conformance._mutant_stream import StreamMutant, StreamRule, rewrite
from conformance._mutant_witness import witnesses
from conformance._mutants import MUTANTS, Gap, Mutant, Operator, Probe, mutant_named
from conformance._mutate import (
    Fate,
    MutationReport,
    mutant_entry,
    run_mutant,
    select,
    witness_search,
)
from refresh_engine import (
    AgentContext,
    Alive,
    Clock,
    CreateExclusive,
    Credential,
    Done,
    Effect,
    Failed,
    Flock,
    FlowRunner,
    GetPid,
    HttpPost,
    HttpResponse,
    Lockf,
    LockFileEx,
    Mkdir,
    MsvcrtLocking,
    MsvcrtMode,
    Now,
    Open,
    Opened,
    OpenFlags,
    Outcome,
    Pid,
    Position,
    ProcessAlive,
    Raised,
    Read,
    ReadData,
    ReadLink,
    ReferenceEngine,
    Replace,
    Returned,
    Rmdir,
    Seek,
    Sleep,
    Stat,
    StatResult,
    Truncate,
    Unlink,
    Write,
    Wrote,
    render_store,
    with_credential,
)
from simulator import FaultKind, OsModel, Strategy

START = 1_767_225_600.0


class Script:
    """A one-agent world, scripted: every call succeeds unless the probe says otherwise."""

    def __init__(self, probe: Probe, ctx: AgentContext) -> None:
        self.probe = probe
        self.now = START
        self.files: dict[str, bytes] = {}
        self.dirs: set[str] = set()
        self.fds: dict[int, str] = {}
        self.next_fd = 3
        self.refreshes = 0
        stale = Credential("a0", "r0", START - 10)
        self.files[ctx.main_store] = render_store(
            with_credential({"profiles": {}}, ctx.key, ctx.provider, stale)
        )

    def fail(self, effect: Effect) -> Failed | None:
        if self.probe.fail is not None and isinstance(effect, self.probe.fail):
            return Failed.from_exception(self.probe.error(errno.EIO, "injected by the probe"))
        busy = (
            isinstance(effect, Flock | Lockf | LockFileEx)
            and not effect.blocking
            or isinstance(effect, MsvcrtLocking)
            and effect.mode is MsvcrtMode.NBLOCK
        )
        if self.probe.busy and busy:
            return Failed.from_exception(BlockingIOError(errno.EAGAIN, "busy"))
        return None

    def missing(self, path: str) -> Failed:
        return Failed.from_exception(FileNotFoundError(errno.ENOENT, "no such file", path))

    def answer(self, effect: Effect) -> Outcome:
        failed = self.fail(effect)
        if failed is not None:
            return failed
        match effect:
            case Open(path=path, flags=flags):
                if path not in self.files and OpenFlags.CREATE not in flags:
                    return self.missing(path)
                if OpenFlags.TRUNCATE in flags or path not in self.files:
                    self.files[path] = b""
                return self._open(path)
            case CreateExclusive(path=path):
                if path in self.files:
                    return Failed.from_exception(FileExistsError(errno.EEXIST, "exists", path))
                self.files[path] = b""
                return self._open(path)
            case Read(fd=fd):
                return ReadData(self.files.get(self.fds[fd], b""))
            case Write(fd=fd, data=data):
                self.files[self.fds[fd]] = self.files.get(self.fds[fd], b"") + data
                return Wrote(len(data))
            case Truncate(fd=fd, size=size):
                self.files[self.fds[fd]] = self.files.get(self.fds[fd], b"")[:size]
            case Replace(src=src, dst=dst):
                if src not in self.files:
                    return self.missing(src)
                self.files[dst] = self.files.pop(src)
            case Unlink(path=path):
                if self.files.pop(path, None) is None:
                    return self.missing(path)
            case Mkdir(path=path):
                if path in self.dirs:
                    return Failed.from_exception(FileExistsError(errno.EEXIST, "exists", path))
                self.dirs.add(path)
            case Rmdir(path=path):
                self.dirs.discard(path)
            case Stat(path=path):
                return StatResult(len(self.files.get(path, b"")), self.now)
            case ReadLink(path=path):  # no links here
                return Failed.from_exception(OSError(errno.EINVAL, "Invalid argument", path))
            case Seek(offset=offset):
                return Position(offset)
            case GetPid():
                return Pid(4242)
            case ProcessAlive():
                return Alive(True)
            case Now():
                return Clock(self.now)
            case Sleep(seconds=seconds):
                self.now += seconds
            case HttpPost():
                self.refreshes += 1
                body = {
                    "access_token": f"a{self.refreshes}",
                    "refresh_token": f"r{self.refreshes}",
                    "expires_in": 3600,
                }
                return HttpResponse(200, json.dumps(body).encode())
        return Done()

    def _open(self, path: str) -> Opened:
        fd, self.next_fd = self.next_fd, self.next_fd + 1
        self.fds[fd] = path
        return Opened(fd)


def context(platform: str) -> AgentContext:
    home = "C:/Users/u" if platform == "win32" else "/home/u"
    return AgentContext(
        agent="atlas",
        provider="openai-codex",
        profile_id="default",
        main_store=f"{home}/.openclaw/auth-profiles.json",
        agent_dir=f"{home}/.openclaw/agents/atlas",
        state_dir=f"{home}/.openclaw/state",
        token_url="https://auth.example/oauth/token",
        platform=platform,
    )


def trace(engine: Any, probe: Probe) -> list[str]:
    """Every effect and outcome of ``probe.turns`` refreshes one after the other, and how
    each ended."""
    ctx = context(probe.platform)
    script = Script(probe, ctx)
    lines: list[str] = []
    for _ in range(probe.turns):
        runner = FlowRunner(engine.access_token(ctx))
        step = runner.start()
        for _ in range(2000):
            if isinstance(step, Returned | Raised):
                break
            outcome = script.answer(step)
            lines.append(f"{step!r} -> {outcome!r}")
            step = runner.resume(outcome)
        assert isinstance(step, Returned | Raised), "the flow did not end"
        end = step.value if isinstance(step, Returned) else type(step.error).__name__
        lines.append(f"ended: {end}")
        script.now += 7200  # the next turn finds the token expired again
    return lines


# ------------------------------------------------------------------- the catalogue


def test_at_least_40_mutants_across_12_operators() -> None:
    assert len(MUTANTS) >= 40
    assert len({mutant.operator for mutant in MUTANTS}) >= 12
    assert {mutant.operator for mutant in MUTANTS} == set(Operator)
    assert len({mutant.name for mutant in MUTANTS}) == len(MUTANTS)


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_an_equivalent_mutant_is_argued_and_a_survivor_named(mutant: Mutant) -> None:
    assert mutant.name.startswith(mutant.operator.value + "/")
    if mutant.equivalent:
        assert len(mutant.equivalent) > 80, "an equivalence is argued, not asserted"
        assert mutant.gap is Gap.NONE


# ------------------------------------------------- each operator changes the engine


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_each_mutant_changes_the_effect_trace(mutant: Mutant) -> None:
    """A mutant whose trace equals the reference's in its probe world is a broken operator."""
    reference = trace(ReferenceEngine(), mutant.probe)
    mutated = trace(mutant.build(), mutant.probe)
    assert mutated != reference, f"{mutant.name} changes nothing in {mutant.probe}"


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
@pytest.mark.parametrize("platform", ["linux", "win32"])
def test_each_mutant_still_works_alone(mutant: Mutant, platform: str) -> None:
    """With no race and no fault, a mutant refreshes like the reference: it is caught only
    by the worlds that expose its bug, never for crashing on its own."""
    lines = trace(mutant.build(), Probe(platform=platform, turns=2))
    ends = [line for line in lines if line.startswith("ended: ")]
    assert ends == ["ended: a1", "ended: a2"], lines[-6:]


@pytest.mark.parametrize(
    "probe",
    [
        Probe(),
        Probe(platform="win32", turns=2),
        Probe(platform="darwin"),
        Probe(fail=Replace),
        Probe(fail=Mkdir),
        Probe(fail=Read, error=OSError),
        Probe(busy=True),
    ],
)
def test_the_identity_rewrite_is_transparent(probe: Probe) -> None:
    """The rewriter with a rule that changes nothing gives the reference's trace exactly,
    errors thrown in included: what a mutant changes is its rule's doing alone."""
    assert trace(StreamMutant(StreamRule), probe) == trace(ReferenceEngine(), probe)


def test_closing_a_rewritten_flow_closes_the_engine_flow() -> None:
    """A killed process's flow is closed: the engine's own flow must be closed with it."""
    closed: list[bool] = []

    def engine_flow() -> Any:
        try:
            yield Now()
            yield Now()
        finally:
            closed.append(True)
        return "token"

    flow = rewrite(engine_flow(), StreamRule(StreamMutant(StreamRule), context("linux")))
    assert isinstance(next(flow), Now)
    flow.close()
    assert closed == [True]


def test_a_killed_flow_whose_finally_yields_is_closed_for_good() -> None:
    """The reference's ``finally`` yields its release: closing must not leave it suspended
    (it would be finalized later, with a 'generator ignored GeneratorExit' warning)."""

    def engine_flow() -> Any:
        try:
            yield Now()
        finally:
            yield Now()  # the release of a lock
        return "token"

    inner = engine_flow()
    runner = FlowRunner(rewrite(inner, StreamRule(StreamMutant(StreamRule), context("linux"))))
    assert isinstance(runner.start(), Now)
    runner.close()
    assert inspect.getgeneratorstate(inner) == inspect.GEN_CLOSED


def test_select_by_name_or_operator() -> None:
    assert [m.name for m in select(["drop-lock/all"])] == ["drop-lock/all"]
    assert {m.operator for m in select(["stale-break"])} == {Operator.STALE_BREAK}
    with pytest.raises(ConformanceError, match="unknown mutant"):
        select(["drop-the-lock"])


# ------------------------------------------------------------ the score, pinned

#: each mutant with the battery world that kills it first in the full run: a subset the
#: battery must keep killing; docs/mutation.md has the full run
PINNED = {
    "drop-lock/all": "shared/linux/3xproc/openai/none",
    "narrow-lock/per-agent-name": "shared/linux/3xproc/openai/none",
    "lock-owner/reentrant-per-process": "shared/linux/3xgw/openai/none",
    "skip-reread/decision": "shared/linux/3xproc/openai/none",
    "write-in-place/ftruncate-0": "shared/linux/2xgw/openai/none/2exp",
    "unlock-early/after-exchange": "shared/linux/3xproc/openai/none",
    "stale-break/age-20s": "shared/linux/2xproc/openai/429",
    "stale-break/age-60s": "shared/linux/2xproc/openai/kill",
    "lock-give-up/after-10s": "shared/linux/2xproc/openai/slow",
    "ignore-error/replace": "shared/linux/1xproc/openai/ioerror+crash",
    "ignore-error/write": "shared/linux/2xproc/openai/ioerror",
    "ignore-error/lock": "shared/linux/2xproc/openai/ioerror",
    "ignore-error/fsync": "shared/linux/1xproc/openai/ioerror+crash",
}


def test_the_pinned_mutants_are_each_killed_by_their_scenario() -> None:
    by_name = {scenario.name: scenario for scenario in battery_scenarios()}
    results = []
    for name, scenario in PINNED.items():
        result = run_mutant(mutant_named(name), [by_name[scenario]])
        assert result.fate is Fate.KILLED, f"{name} survived {scenario}: the battery weakened"
        assert result.scenario == scenario
        results.append(result)
    report = MutationReport(tuple(results), 0.0)
    assert report.score == 1.0
    assert len({mutant_named(name).operator for name in PINNED}) >= 7


def test_a_survivor_says_why_and_an_equivalent_one_is_left_out_of_the_score() -> None:
    by_name = {scenario.name: scenario for scenario in battery_scenarios()}
    quick = [by_name["lock-per-agent-dir"]]
    temp = run_mutant(mutant_named("shared-temp/fixed"), quick)
    assert temp.fate is Fate.SURVIVED
    assert "outside writer" in temp.reason
    equivalent = run_mutant(mutant_named("narrow-lock/store-file"), quick)
    assert equivalent.fate is Fate.EQUIVALENT
    assert equivalent.reason.startswith("equivalent: ")
    report = MutationReport((temp, equivalent), 0.0)
    assert (report.killed, report.scored, report.score) == (0, 1, 0.0)


# ------------------------------------------------------------------ the benchmarks


def test_bench_mutants_runs_and_writes_its_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``benchmarks/bench_mutants.py`` is not a test; this keeps it from rotting."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    bench = importlib.import_module("bench_mutants")
    out = tmp_path / "mutants.json"
    assert bench.main(["--mutant", "drop-lock/all", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    # the battery's first world: three agents in their own processes
    first = "shared/linux/3xproc/openai/none"
    assert f"drop-lock/all: killed by {first} (refresh-token-reuse)" in printed
    assert "mutation score: 1/1 = 100.0%" in printed
    report = json.loads(out.read_text(encoding="utf-8"))
    assert (report["killed"], report["scored"]) == (1, 1)
    assert report["results"][0]["fate"] == "killed"


def test_bench_cosmic_ray_config_names_the_modules_and_runs_the_check_battery(
    tmp_path: Path,
) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    bench = importlib.import_module("bench_cosmic_ray")
    config = tomllib.loads(bench.config(tmp_path, 50, 60.0))["cosmic-ray"]
    root = Path(__file__).resolve().parents[1]
    assert all((root / module).is_file() for module in config["module-path"])
    assert "check --engine reference --examples 50" in config["test-command"]
    assert config["distributor"]["name"] == "local"


def test_witness_worlds_stretch_one_dimension_of_a_shipped_scenario() -> None:
    battery = {scenario.name: scenario for scenario in battery_scenarios()}
    (macos,) = witnesses(list(battery.values()), Gap.OS_MODELS)
    assert macos.world == dataclasses.replace(battery["lock-per-agent-dir"].world, os=OsModel.MACOS)
    (stall,) = witnesses(list(battery.values()), Gap.LONG_STALLS)
    assert stall.world.stall_seconds > 600 > battery["stale-lock-break"].world.stall_seconds
    crash, kill = witnesses(list(battery.values()), Gap.PROCESS_FAULTS)
    assert crash.world.faults == {FaultKind.CRASH}
    assert kill.world.faults == {FaultKind.KILL}
    (two,) = witnesses(list(battery.values()), Gap.MUTUAL_EXCLUSION)
    assert two.world == battery["lock-per-agent-dir"].world
    assert two.strategy is Strategy.HYPOTHESIS
    for gap in (Gap.STORE_POPULATION, Gap.OUTSIDE_WRITER):
        assert witnesses(list(battery.values()), gap) == []


def test_two_lock_holders_at_once_is_seen_where_the_checker_sees_nothing() -> None:
    """The mutual-exclusion witness: unlinking the lock file while holding it lets a waiter
    and a newcomer hold 'the' lock together; the reference never does (exhaustive bound)."""
    (world,) = witnesses(battery_scenarios(), Gap.MUTUAL_EXCLUSION)
    world = dataclasses.replace(world, strategy=Strategy.EXHAUSTIVE, examples=2000)
    churn = mutant_entry(mutant_named("lock-file-churn/unlink-before-unlock"))
    found = witness_search(churn, world, Gap.MUTUAL_EXCLUSION)
    assert found is not None
    assert found[0] == "two lock holders at once"
    assert witness_search(BUILTIN_ENGINES["reference"], world, Gap.MUTUAL_EXCLUSION) is None


def test_mutate_takes_a_scenario_by_name_or_file(capsys: pytest.CaptureFixture[str]) -> None:
    from conformance._cli import main
    from conformance._scenario_files import builtin_scenarios

    shipped = next(path for path in builtin_scenarios() if path.stem.endswith("mirrored-copies"))
    for value in ("headline", str(shipped)):
        assert main(["mutate", "--mutant", "drop-lock/all", "--scenario", value]) == 0
        assert "KILLED by headline" in capsys.readouterr().out
