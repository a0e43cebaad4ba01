"""The reduced search is sound: it reaches every final state brute force reaches.

Hypothesis writes small engines (effect programs over a few paths, with
locks, fsyncs, renames, unlinks, directories and raw descriptor numbers that
the VFS reuses), small worlds and fault sets; DPOR with sleep sets and the
search without reduction must end in exactly the same set of final states:
every file, the server's ledger, and what every agent saw and returned.
A deliberately wrong footprint must make the property fail.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, Phase, assume, find, given, settings
from hypothesis import strategies as st

import simulator._kernel as kernel
import simulator._semantics as semantics
import simulator._shard as shard_module
from fake_oauth_server import AuditEvent
from refresh_engine import (
    AgentContext,
    Close,
    CreateExclusive,
    Effect,
    Flock,
    Flow,
    Fsync,
    HttpPost,
    Lockf,
    LockFileEx,
    LockOp,
    Mkdir,
    Mutex,
    Now,
    Open,
    OpenFlags,
    Outcome,
    Read,
    ReadLink,
    Replace,
    Rmdir,
    Seek,
    Sleep,
    Stat,
    Touch,
    Truncate,
    Unlink,
    Write,
)
from simulator import (
    AgentSpec,
    Chooser,
    FaultKind,
    NotModelled,
    OsModel,
    RunResult,
    Shard,
    Simulation,
    StoreLayout,
    VirtualFS,
    WorldSpec,
    search_exhaustive,
)
from simulator._footprint import Footprint, local

BRUTE_FORCE_BUDGET = 1000  # runs; a world brute force cannot finish is not compared
HOME = "/home/u"
BASE = "/home/u/.openclaw/agents/main/agent"
NAMES = ("auth-profiles.json", "t", "d", "d/f")
LAST_FD = -1  # the descriptor this agent opened last (raw numbers may name another's)


# ------------------------------------------------------------------ programs


@dataclass(frozen=True, slots=True)
class Op:
    """One step of a program: an effect template the engine fills in as it runs."""

    kind: str
    name: str = ""
    other: str = ""
    fd: int = LAST_FD
    flags: OpenFlags = OpenFlags.READ
    lock: LockOp = LockOp.EXCLUSIVE
    blocking: bool = True
    timeout: float | None = None  # of a blocking lock call: a 1 s sleep or 5 s stall outlasts it
    data: str = "junk"  # junk, last (bytes last read or received), store (a store from them)
    size: int | None = None  # of a read: all, or a chunk


class ProgramEngine:
    """Runs each agent's program; the access token it returns digests all it saw."""

    def __init__(self, programs: dict[str, tuple[Op, ...]]) -> None:
        self.programs = programs

    def access_token(self, ctx: AgentContext) -> Flow[str]:
        seen: list[str] = []
        last = b""
        opened = 3
        for op in self.programs.get(ctx.agent, ()):
            effect = _effect(op, opened, last, ctx)
            outcome: Outcome | Exception
            try:
                outcome = yield effect
            except OSError as exc:
                outcome = exc
            seen.append(_observed(outcome))
            opened = getattr(outcome, "fd", opened)
            last = getattr(outcome, "data", None) or getattr(outcome, "body", None) or last
        return hashlib.sha256(repr(seen).encode()).hexdigest()[:16]


def _observed(outcome: Outcome | Exception) -> str:
    if isinstance(outcome, OSError):
        return f"{type(outcome).__name__}:{outcome.errno}"
    return repr(dataclasses.astuple(outcome)) if dataclasses.is_dataclass(outcome) else ""


def _refresh_body(last: bytes) -> bytes:
    found = re.search(rb'"refresh(?:_token)?"\s*:\s*"([^"]+)"', last)
    token = found.group(1) if found else b"junk"
    return b"grant_type=refresh_token&refresh_token=" + token


def _data(kind: str, last: bytes) -> bytes:
    if kind == "last":
        return last or b"x"
    if kind == "store":
        try:
            payload = json.loads(last)
            refresh = payload["refresh_token"]
        except (ValueError, KeyError, TypeError):
            return b"{}"
        return json.dumps({"profiles": {"openai-codex:default": {"refresh": refresh}}}).encode()
    return b"junk-" + kind.encode()


def _effect(op: Op, opened: int, last: bytes, ctx: AgentContext) -> Effect:
    path = f"{BASE}/{op.name}"
    fd = opened if op.fd == LAST_FD else op.fd
    match op.kind:
        case "open":
            return Open(path, op.flags)
        case "create-exclusive":
            return CreateExclusive(path)
        case "read":
            return Read(fd, op.size)
        case "write":
            return Write(fd, _data(op.data, last))
        case "truncate":
            return Truncate(fd, 0)
        case "fsync":
            return Fsync(fd)
        case "close":
            return Close(fd)
        case "seek":
            return Seek(fd, 0)
        case "replace":
            return Replace(path, f"{BASE}/{op.other}")
        case "unlink":
            return Unlink(path)
        case "mkdir":
            return Mkdir(path)
        case "rmdir":
            return Rmdir(path)
        case "stat":
            return Stat(path)
        case "readlink":
            return ReadLink(path)
        case "touch":
            return Touch(path)
        case "flock":
            return Flock(fd, op.lock, op.blocking, op.timeout)
        case "lockf":
            return Lockf(fd, op.lock, op.blocking, op.timeout)
        case "lock-file-ex":
            return LockFileEx(fd, op.lock, op.blocking, timeout=op.timeout)
        case "mutex":
            return Mutex("m", op.lock)
        case "now":
            return Now()
        case "sleep":
            return Sleep(1.0)
        case "post":
            return HttpPost(ctx.token_url, _refresh_body(last), "application/x-www-form-urlencoded")
    raise AssertionError(op.kind)


# ------------------------------------------------------------- generating

FLAGS = (
    OpenFlags.READ,
    OpenFlags.READ | OpenFlags.WRITE | OpenFlags.CREATE,
    OpenFlags.WRITE | OpenFlags.CREATE | OpenFlags.TRUNCATE,
    OpenFlags.WRITE | OpenFlags.APPEND,
)
names = st.sampled_from((NAMES[0], *NAMES))  # the store twice
fds = st.sampled_from((LAST_FD, LAST_FD, 3, 4))
locks = st.sampled_from((LockOp.EXCLUSIVE, LockOp.SHARED, LockOp.UNLOCK))

ops = st.one_of(
    st.builds(Op, st.just("open"), names, flags=st.sampled_from(FLAGS)),
    st.builds(Op, st.just("create-exclusive"), names),
    st.builds(Op, st.just("read"), fd=fds, size=st.sampled_from((None, None, 4))),
    st.builds(Op, st.sampled_from(("truncate", "fsync", "close", "seek")), fd=fds),
    st.builds(Op, st.just("write"), fd=fds, data=st.sampled_from(("junk", "last", "store"))),
    st.builds(Op, st.just("replace"), names, names),
    st.builds(
        Op, st.sampled_from(("unlink", "mkdir", "rmdir", "stat", "touch", "readlink")), names
    ),
    st.builds(
        Op,
        st.sampled_from(("flock", "lockf", "lock-file-ex")),
        fd=fds,
        lock=locks,
        blocking=st.booleans(),
        timeout=st.sampled_from((None, None, 0.5)),
    ),
    st.builds(Op, st.just("mutex"), lock=st.sampled_from((LockOp.EXCLUSIVE, LockOp.UNLOCK))),
    st.builds(Op, st.sampled_from(("now", "sleep", "post"))),
)


@dataclass(frozen=True, slots=True)
class Case:
    spec: WorldSpec
    programs: dict[str, tuple[Op, ...]]


@st.composite
def cases(draw: st.DrawFn, faults: bool = True) -> Case:
    count = draw(st.sampled_from((1, 2, 2, 2, 3)))
    agents = ("atlas", "nova", "orion")[:count]
    longest = 4 if count == 1 else 3 if count == 2 else 2
    programs = {agent: tuple(draw(st.lists(ops, min_size=1, max_size=longest))) for agent in agents}
    shared = draw(st.booleans())
    kinds = st.sampled_from((FaultKind.CRASH, FaultKind.KILL, *FaultKind))  # the wide ones twice
    chosen = draw(st.sets(kinds, max_size=2)) if faults else set()
    spec = WorldSpec(
        agents=tuple(AgentSpec(agent, (10.0,), 0 if shared else None) for agent in agents),
        layout=StoreLayout.SHARED,
        os=draw(st.sampled_from((OsModel.LINUX, OsModel.WINDOWS))),
        faults=frozenset(chosen),
        max_faults=1 if chosen else 0,
        torn_writes=draw(st.booleans()),
        store_link=draw(st.sampled_from(("", "", f"{BASE}/t"))),  # the store a link to "t"
        max_steps=400,
        stall_seconds=5.0,
    )
    return Case(spec, programs)


@st.composite
def lock_waits(draw: st.DrawFn) -> Case:
    """Agents that each lock one file (one kind for all), maybe sleep holding it, do one
    random op, and unlock: where a blocked call with a timeout gives up, because a holder
    sleeps (1 s) or stalls (5 s) past its 0.5 s, at a clock jump no step chooses."""
    kind = draw(st.sampled_from(("flock", "lockf", "lock-file-ex")))
    agents = ("atlas", "nova", "orion")[: draw(st.sampled_from((2, 2, 3)))]
    programs = {}
    for agent in agents:
        timeout = draw(st.sampled_from((None, 0.5, 0.5)))
        program = [Op("open", "t", flags=FLAGS[1]), Op(kind, timeout=timeout)]
        if draw(st.booleans()):
            program.append(Op("sleep"))
        program += [draw(ops), Op(kind, lock=LockOp.UNLOCK)]
        programs[agent] = tuple(program)
    stall = draw(st.booleans())
    spec = WorldSpec(
        agents=tuple(AgentSpec(agent, (10.0,)) for agent in agents),
        layout=StoreLayout.SHARED,
        os=OsModel.WINDOWS if kind == "lock-file-ex" else OsModel.LINUX,
        faults=frozenset({FaultKind.STALL} if stall else ()),
        max_faults=1 if stall else 0,
        max_steps=400,
        stall_seconds=5.0,
    )
    return Case(spec, programs)


# ------------------------------------------------------------- final states


def _files(fs: VirtualFS, path: str = "/") -> Iterator[tuple[str, object]]:
    """Every name in the filesystem, with a file's bytes (None for a directory; for a
    link, its target)."""
    for name in fs.listdir(path):
        child = path.rstrip("/") + "/" + name
        if fs.is_symlink(child):
            yield child, ("link", fs.readlink(child))
            continue
        try:
            yield child, fs.read_file(child)
        except IsADirectoryError:
            yield child, None
            yield from _files(fs, child)


def _ledger(audit: tuple[AuditEvent, ...]) -> tuple[AuditEvent, ...]:
    """The audit log without request ids: they number steps, which reorderings renumber."""
    return tuple(dataclasses.replace(event, request_id="") for event in audit)


FinalState = tuple[object, ...]


def final_states(
    case: Case, reduction: bool, shard: Shard | None = None, counted: list[int] | None = None
) -> tuple[set[FinalState], bool]:
    """The final states one exhaustive search (or one shard of it) reaches, and whether it
    finished; ``counted`` gets the schedules it counted.

    A world the OS model refuses (``NotModelled``) counts as not finished.
    """
    states: set[FinalState] = set()

    def run(chooser: Chooser) -> RunResult:
        sim = Simulation(case.spec, ProgramEngine(case.programs), chooser)
        result = sim.run()
        outcomes = tuple(
            (event.kind.value, event.agent, event.error_type, event.ok, event.note)
            for event in result.events
            if event.kind.value in {"turn-end", "token-use", "deadlock", "step-bound"}
        )
        states.add((tuple(_files(sim.fs)), _ledger(result.audit), tuple(sorted(outcomes))))
        return result

    try:
        search = search_exhaustive(
            run,
            lambda result: False,
            reduction=reduction,
            max_schedules=BRUTE_FORCE_BUDGET,
            shard=shard,
        )
    except NotModelled:
        return states, False
    if counted is not None:
        counted.append(search.examples)
    return states, search.complete


def reduction_misses(case: Case) -> bool:
    """Whether DPOR misses (or invents) a final state brute force reaches."""
    full, finished = final_states(case, reduction=False)
    if not finished:
        return False
    reduced, done = final_states(case, reduction=True)
    assert done
    return reduced != full


def check_sound(case: Case) -> None:
    full, finished = final_states(case, reduction=False)
    assume(finished)
    reduced, done = final_states(case, reduction=True)
    assert done
    assert reduced == full, f"DPOR: {len(reduced)} final states, brute force: {len(full)}"


def check_shards_sound(case: Case, count: int, depth: int) -> None:
    """The shards' final states together are the brute-force ones, and their schedules sum
    to the split search's unsharded (one shard's)."""
    full, finished = final_states(case, reduction=False)
    assume(finished)
    whole: list[int] = []
    unsharded, done = final_states(case, True, Shard(1, 1, depth), whole)
    assert done
    union: set[FinalState] = set()
    counted: list[int] = []
    for index in range(1, count + 1):
        states, done = final_states(case, True, Shard(index, count, depth), counted)
        assert done
        union |= states
    assert union == unsharded == full, (
        f"{count} shards split at {depth}: {len(union)} final states, "
        f"unsharded {len(unsharded)}, brute force {len(full)}"
    )
    assert sum(counted) == whole[0]


def shards_miss(case: Case, count: int = 2, depth: int = 2) -> bool:
    """Whether ``count`` shards split at ``depth`` together miss a brute-force final state."""
    full, finished = final_states(case, reduction=False)
    if not finished:
        return False
    union: set[FinalState] = set()
    for index in range(1, count + 1):
        union |= final_states(case, True, Shard(index, count, depth))[0]
    return union != full


# ------------------------------------------------------------------ tests

PROPERTY = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)


@PROPERTY
@given(cases())
def test_reduction_reaches_every_final_state(case: Case) -> None:
    check_sound(case)


@pytest.mark.slow
@settings(PROPERTY, max_examples=1500)
@given(cases())
def test_reduction_reaches_every_final_state_long(case: Case) -> None:
    check_sound(case)


@settings(PROPERTY, max_examples=20)
@given(lock_waits())
def test_reduction_reaches_every_final_state_with_lock_give_ups(case: Case) -> None:
    check_sound(case)


@pytest.mark.slow
@settings(PROPERTY, max_examples=300)
@given(lock_waits())
def test_reduction_reaches_every_final_state_with_lock_give_ups_long(case: Case) -> None:
    check_sound(case)


@settings(PROPERTY, max_examples=15)
@given(cases(), st.integers(1, 4), st.integers(0, 6))
def test_shards_together_reach_every_final_state(case: Case, count: int, depth: int) -> None:
    check_shards_sound(case, count, depth)


@pytest.mark.slow
@settings(PROPERTY, max_examples=600)
@given(cases(), st.integers(1, 4), st.integers(0, 6))
def test_shards_together_reach_every_final_state_long(case: Case, count: int, depth: int) -> None:
    check_shards_sound(case, count, depth)


def crash_world() -> Case:
    """One agent only reads the clock; the other rewrites the store without fsync."""
    rewrite = (
        Op("open", "auth-profiles.json", flags=OpenFlags.WRITE | OpenFlags.TRUNCATE),
        Op("write", data="junk"),
        Op("close"),
    )
    spec = WorldSpec(
        agents=(AgentSpec("atlas", (10.0,)), AgentSpec("nova", (10.0,))),
        layout=StoreLayout.SHARED,
        faults=frozenset({FaultKind.CRASH}),
        max_faults=1,
        max_steps=200,
    )
    return Case(spec, {"atlas": (Op("now"),), "nova": rewrite})


def test_a_call_on_a_descriptor_meets_whichever_open_takes_it() -> None:
    """Three agents of one process: atlas reads fd 4, nova and orion each open a file.  The
    second open takes fd 4, and which open is second depends on their order, so the race
    of atlas's read is with nova's open in one order and orion's in the other.  Trying
    only the latest race (Flanagan and Godefroid) reached 2 of the 4 final states."""
    spec = WorldSpec(
        agents=tuple(AgentSpec(agent, (10.0,), 0) for agent in ("atlas", "nova", "orion")),
        layout=StoreLayout.SHARED,
        max_steps=400,
    )
    programs = {
        "atlas": (Op("read", fd=4),),
        "nova": (Op("open", NAMES[0]),),
        "orion": (Op("open", NAMES[0]),),
    }
    full, finished = final_states(Case(spec, programs), reduction=False)
    assert finished
    assert len(full) == 4
    reduced, done = final_states(Case(spec, programs), reduction=True)
    assert done
    assert reduced == full


def test_a_crash_is_dependent_on_an_unsynced_write() -> None:
    """The crash after the write rolls the store back: DPOR must reach that state too."""
    case = crash_world()
    full, finished = final_states(case, reduction=False)
    reduced, done = final_states(case, reduction=True)
    assert finished
    assert done
    stores = {dict(state[0])[f"{BASE}/auth-profiles.json"] for state in full}
    assert len(stores) == 2  # rewritten, or rolled back by the crash
    assert reduced == full


def _independent(scene: semantics.Scene, effect: object) -> Footprint:
    return local(scene.agent)


def _break_rule(name: str) -> Callable[[pytest.MonkeyPatch], None]:
    """Make one row's footprint say "independent of everything"."""

    def breaks(patch: pytest.MonkeyPatch) -> None:
        rule = getattr(semantics, name)
        broken = dataclasses.replace(rule, touches=_independent)
        patch.setattr(semantics, name, broken)
        patch.setitem(semantics._ROWS, rule.effect, broken)  # what ``rule_for`` looks up

    return breaks


def _crash_independent(fault: FaultKind, agent: str) -> Footprint:
    return local(agent) if fault is FaultKind.CRASH else semantics.fault_footprint(fault, agent)


def _break_crash(patch: pytest.MonkeyPatch) -> None:
    patch.setattr(kernel, "fault_footprint", _crash_independent)


def _catches(breaks: Callable[[pytest.MonkeyPatch], None], examples: int) -> Case:
    """The property, run on the generator with a footprint broken, finds a counterexample."""
    with pytest.MonkeyPatch.context() as patch:
        breaks(patch)
        found = find(
            cases(),
            reduction_misses,
            settings=settings(
                max_examples=examples,
                deadline=None,
                database=None,
                derandomize=True,  # the same examples every run: this test cannot flake
                phases=[Phase.generate],
            ),
        )
        assert reduction_misses(found)
    assert not reduction_misses(found)  # with the table as it is, the same case passes
    return found


def test_the_property_catches_a_crash_made_independent() -> None:
    assert reduction_misses(crash_world()) is False
    with pytest.MonkeyPatch.context() as patch:
        _break_crash(patch)
        assert reduction_misses(crash_world())
    _catches(_break_crash, examples=200)


def test_the_property_catches_an_open_made_independent() -> None:
    _catches(_break_rule("OPEN"), examples=200)


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["READ", "WRITE", "UNLINK", "REPLACE"])
def test_the_property_catches_an_effect_made_independent(rule: str) -> None:
    _catches(_break_rule(rule), examples=1500)


def _catches_shards(breaks: Callable[[pytest.MonkeyPatch], None]) -> None:
    """The shard property, run with the split broken, finds a counterexample."""
    with pytest.MonkeyPatch.context() as patch:
        breaks(patch)
        found = find(
            cases(faults=False),
            shards_miss,
            settings=settings(
                max_examples=300,
                deadline=None,
                database=None,
                derandomize=True,  # the same examples every run: this test cannot flake
                phases=[Phase.generate],
            ),
        )
        assert shards_miss(found)
    assert not shards_miss(found)  # with the split as it is, the same case passes


def test_the_shard_property_catches_a_subtree_no_shard_owns() -> None:
    def lose_one(patch: pytest.MonkeyPatch) -> None:
        owns = Shard.owns
        patch.setattr(Shard, "owns", lambda self, subtree: subtree != 1 and owns(self, subtree))

    _catches_shards(lose_one)


def test_the_shard_property_catches_a_reduced_prefix() -> None:
    """Above the split, DPOR alone is not enough: races of a subtree's steps with the
    prefix's ask for options no shard would try."""

    def reduce_prefix(patch: pytest.MonkeyPatch) -> None:
        patch.setattr(shard_module.Splitter, "unreduced", lambda self, depth: False)

    _catches_shards(reduce_prefix)
