"""Engines side by side on real processes (issue 8, item 4).

    python benchmarks/bench_engines.py [--quick] [--agents 8,32] [--expiries 20] [--repeat 3]

N agent processes (a pool started once per N, ``agent_worker.py serve``)
share one login against the real fake server on loopback (``openai``
preset: strict rotation, a reuse revokes the grant).  Expiries are driven
without waiting: before each round the harness ages every store by one
access-token lifetime (``harness.DiskWorld.age``; every clock stays real), so
the credential is expired for everyone at once; all N are released at the
same ``CLOCK_MONOTONIC`` instant (a start barrier) and each asks its engine
for a token: a thundering herd at every expiry, the worst case for a refresh
lock.  A round where the grant was lost (a reuse revoked it, or agents
were stranded) is followed by a new login laid out as before, the way a user
would recover, and counted.

Per engine and N: refreshes per expiry (accepted refreshes / expiries; 1.0
is the floor), reuse errors (refreshes rejected as ``refresh_token_reused``),
new logins needed, agents stranded or failing, and p50/p99 time to obtain a
token (per call, measured in the agent process, successful calls only).  In
the same run, with the same processes and barrier, the server's own refresh
latency: one client refreshing in a row (uncontended), and N clients each
refreshing their own grant at once.  Every figure is the median over
``--repeat`` runs; ratios are computed within each run, then the median taken.
Every loop is bounded in count and time; everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from harness import (
    WORKER,
    DiskWorld,
    Outcome,
    Tally,
    fmt,
    judge,
    machine,
    machine_line,
    median,
    percentile,
    table,
    write_json,
)

from conformance import BUILTIN_ENGINES, builtin_scenarios, load_scenario_file
from fake_oauth_server import Policy, serve_in_thread
from simulator import StoreLayout

ANSWER_TIMEOUT = 60.0  # seconds one agent may take for one token before it is called stuck
BARRIER_LEAD = 0.05  # seconds between sending "go" and the shared start instant
PEER_ENGINES = ("msal-extensions", "msal-extensions-ptc", "filelock-copy")
NOTES = {
    "fcntl-or-nothing": "bug needs Windows (no fcntl); on Linux it is the reference with flock",
    "ignore-replace-error": "bug needs Windows (replace over an open file fails)",
    "trusts-network-flock": "bug needs NFS mounted nolock; here flock works",
    "lockf-in-gateway": "bug needs agents in one process; here each agent is a process",
    "retry-after-backoff": "bug needs a lost response; no faults here",
    "short-stale-timeout": "bug needs a holder stalled > 20 s; O_EXCL lock polled every 1 s",
    "broker": "clean design: clients poll main every 1 s until the broker refreshes",
    "msal-extensions": "CrossPlatLock held across the refresh (O_EXCL file, polled every 0.25 s)",
    "msal-extensions-ptc": "PersistedTokenCache's pattern: refresh outside the lock",
    "filelock-copy": "filelock around the refresh, each agent reading its own copy",
    "reference": "flock per provider+profile, read-through, re-read under the lock",
}


@dataclass(frozen=True, slots=True)
class EngineSetup:
    """How one engine is run: its policy, store layout and agent names."""

    engine: str
    policy: Policy
    layout: StoreLayout

    def agents(self, count: int) -> list[str]:
        if self.engine == "incompatible-locks":  # half a CLI taking flock, half an IDE taking lockf
            return [f"{'cli' if i % 2 == 0 else 'ide'}{i:02d}" for i in range(count)]
        if self.engine == "broker":
            return ["broker", *(f"agent{i:02d}" for i in range(1, count))]
        return [f"agent{i:02d}" for i in range(count)]


def engine_setups(names: Sequence[str] | None = None) -> list[EngineSetup]:
    """The reference, the peers, the broker and every corpus engine in its scenario's world."""
    openai = Policy.preset("openai")
    setups = [EngineSetup("reference", openai, StoreLayout.SHARED)]
    setups += [
        EngineSetup(
            peer,
            openai,
            StoreLayout.MIRRORED if peer == "filelock-copy" else StoreLayout.SHARED,
        )
        for peer in PEER_ENGINES
    ]
    setups.append(EngineSetup("broker", openai, StoreLayout.SHARED))
    for path in builtin_scenarios():
        scenario = load_scenario_file(path)
        if scenario.reproduces and scenario.engine in BUILTIN_ENGINES:
            world = scenario.world
            setups.append(EngineSetup(scenario.engine, world.policy, world.layout))
    if names:
        setups = [setup for setup in setups if setup.engine in names]
    return setups


class Pool:
    """N long-lived agent processes; each answers one JSON line per command."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._processes: list[subprocess.Popen[str]] = []
        self._answers: list[queue.Queue[str]] = []
        for _ in range(size):
            self._spawn()

    def _spawn(self, index: int | None = None) -> None:
        process = subprocess.Popen(
            [sys.executable, str(WORKER), "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        answers: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None
        threading.Thread(target=_pump, args=(process.stdout, answers), daemon=True).start()
        if index is None:
            self._processes.append(process)
            self._answers.append(answers)
        else:
            self._stop(self._processes[index], kill=True)
            self._processes[index] = process
            self._answers[index] = answers

    def ask(self, messages: Sequence[dict[str, Any] | None], timeout: float) -> list[Any]:
        """Send message i to worker i (None: skip it); the answers, None for a stuck worker.

        A worker that does not answer within ``timeout`` is killed and replaced.
        """
        sent = []
        for index, message in enumerate(messages):
            if message is None:
                continue
            stdin = self._processes[index].stdin
            assert stdin is not None
            stdin.write(json.dumps(message) + "\n")
            stdin.flush()
            sent.append(index)
        deadline = time.monotonic() + timeout
        answers: list[Any] = [None] * len(messages)
        for index in sent:
            try:
                line = self._answers[index].get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self._spawn(index)
                continue
            answers[index] = json.loads(line)
        return answers

    def close(self) -> None:
        for process in self._processes:
            self._stop(process, kill=False)
        self._processes.clear()

    @staticmethod
    def _stop(process: subprocess.Popen[str], *, kill: bool) -> None:
        if process.poll() is None and not kill:
            try:
                assert process.stdin is not None
                process.stdin.write('{"op": "quit"}\n')
                process.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
        if process.stdin is not None:
            process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=0 if kill else 10)
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pump(stream: IO[str], answers: queue.Queue[str]) -> None:
    try:
        for line in stream:
            answers.put(line)
    except (OSError, ValueError):
        pass  # closed under us when the worker is replaced


# --------------------------------------------------------------------------- one engine


def run_engine(pool: Pool, setup: EngineSetup, agents: int, expiries: int) -> dict[str, Any]:
    """One run: ``expiries`` rounds of ``agents`` processes, a fresh server and world."""
    names = setup.agents(agents)
    lifetime = setup.policy.access_token_lifetime
    total = Tally()
    relogins = 0
    started = time.perf_counter()
    with serve_in_thread(setup.policy) as running, tempfile.TemporaryDirectory() as tmp:
        world = DiskWorld(Path(tmp))
        world.login(running, names, setup.layout)
        contexts = [dataclasses.asdict(world.context(name, running.token_url)) for name in names]
        pool.ask(
            [{"op": "setup", "engine": setup.engine, "ctx": ctx} for ctx in contexts],
            ANSWER_TIMEOUT,
        )
        for _ in range(expiries):
            world.age(lifetime)
            mark = len(running.server.audit)
            go = {"op": "go", "offset": 0.0, "start_at": time.monotonic() + BARRIER_LEAD}
            answers = pool.ask([go] * agents, ANSWER_TIMEOUT)
            stuck = [
                ctx if answer is None else None
                for ctx, answer in zip(contexts, answers, strict=True)
            ]
            if any(stuck):  # replaced workers need their engine again
                setups = [
                    {"op": "setup", "engine": setup.engine, "ctx": c} if c else None for c in stuck
                ]
                pool.ask(setups, ANSWER_TIMEOUT)
            outcomes = [
                Outcome.from_json(answer) if answer else Outcome.timed_out(name, ANSWER_TIMEOUT)
                for name, answer in zip(names, answers, strict=True)
            ]
            tally = judge(running, running.server.audit[mark:], outcomes)
            total.add(tally)
            if tally.rejected or tally.stranded or tally.bad_tokens:
                relogins += 1  # the grant is gone: log in again, as the user would
                world.login(running, names, setup.layout)
    return {
        "engine": setup.engine,
        "agents": agents,
        "expiries": expiries,
        "refreshes_per_expiry": (total.accepted + total.rejected) / expiries,
        "accepted_per_expiry": total.accepted / expiries,
        "reuse_errors": total.reused,
        "rejected_refreshes": total.rejected,
        "relogins": relogins,
        "stranded": total.stranded,
        "errors": total.errors,
        "timeouts": total.timeouts,
        "bad_tokens": total.bad_tokens,
        "tokens": total.ok,
        "calls": agents * expiries,
        "p50_ms": percentile(total.seconds, 0.50) * 1000,
        "p99_ms": percentile(total.seconds, 0.99) * 1000,
        "seconds": time.perf_counter() - started,
    }


def server_latency(pool: Pool, agents: int, rounds: int, sequential: int) -> dict[str, Any]:
    """The server's own refresh latency, seen from the same pool of processes.

    ``one``: one worker refreshing ``sequential`` times in a row (uncontended).
    ``herd``: every worker refreshing its own grant at the same instant, ``rounds`` times.
    """
    with serve_in_thread("openai") as running:
        url = running.token_url
        now = running.app.now
        token = running.server.seed_grant(now()).refresh_token
        message = {"op": "bare", "token_url": url, "refresh_token": token, "count": sequential}
        message["start_at"] = time.monotonic() + BARRIER_LEAD
        first = pool.ask([message], ANSWER_TIMEOUT)[0]
        one = list(first["seconds"]) if first else []
        tokens = [running.server.seed_grant(now()).refresh_token for _ in range(agents)]
        herd: list[float] = []
        for _ in range(rounds):
            start_at = time.monotonic() + BARRIER_LEAD
            messages = [
                {
                    "op": "bare",
                    "token_url": url,
                    "refresh_token": t,
                    "count": 1,
                    "start_at": start_at,
                }
                for t in tokens
            ]
            answers = pool.ask(messages, ANSWER_TIMEOUT)
            for index, answer in enumerate(answers):
                if answer:
                    herd += answer["seconds"]
                    tokens[index] = answer["refresh_token"]
    return {
        "one_p50_ms": percentile(one, 0.5) * 1000,
        "one_p99_ms": percentile(one, 0.99) * 1000,
        "herd_p50_ms": percentile(herd, 0.5) * 1000,
        "herd_p99_ms": percentile(herd, 0.99) * 1000,
    }


# --------------------------------------------------------------------------- the benchmark


def run(
    agent_counts: Sequence[int],
    expiries: int,
    repeat: int,
    engines: Sequence[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Every engine at every N, ``repeat`` times; medians and same-run ratios."""
    setups = engine_setups(engines)
    runs: list[dict[str, Any]] = []
    baselines: list[dict[str, Any]] = []
    for agents in agent_counts:
        with Pool(agents) as pool:
            for attempt in range(repeat):
                baseline = server_latency(pool, agents, rounds=expiries, sequential=200)
                baseline |= {"agents": agents, "run": attempt}
                baselines.append(baseline)
                for setup in setups:
                    result = run_engine(pool, setup, agents, expiries) | {"run": attempt}
                    if result["engine"] == "reference":
                        result["ratio_one"] = result["p99_ms"] / baseline["one_p99_ms"]
                        result["ratio_herd"] = result["p99_ms"] / baseline["herd_p99_ms"]
                    runs.append(result)
                    if progress:
                        print(
                            f"  N={agents} run {attempt + 1}/{repeat} {setup.engine:<22} "
                            f"{result['refreshes_per_expiry']:5.2f} refreshes/expiry, "
                            f"{result['reuse_errors']} reuse, p99 {result['p99_ms']:.1f} ms "
                            f"({result['seconds']:.1f}s)",
                            file=sys.stderr,
                            flush=True,
                        )
    return {
        "agents": list(agent_counts),
        "expiries": expiries,
        "repeat": repeat,
        "rows": summarize(runs, setups, agent_counts),
        "server": summarize_baselines(baselines, agent_counts),
        "runs": runs,
        "baselines": baselines,
    }


_MEDIANS = (
    "refreshes_per_expiry",
    "accepted_per_expiry",
    "rejected_refreshes",
    "reuse_errors",
    "relogins",
    "stranded",
    "errors",
    "timeouts",
    "bad_tokens",
    "tokens",
    "p50_ms",
    "p99_ms",
)


def summarize(
    runs: list[dict[str, Any]], setups: Sequence[EngineSetup], agent_counts: Sequence[int]
) -> list[dict[str, Any]]:
    rows = []
    for agents in agent_counts:
        for setup in setups:
            mine = [r for r in runs if r["engine"] == setup.engine and r["agents"] == agents]
            if not mine:
                continue
            row: dict[str, Any] = {"engine": setup.engine, "agents": agents, "runs": len(mine)}
            for key in _MEDIANS:
                row[key] = median(r[key] for r in mine)
            row["calls"] = mine[0]["calls"]
            if setup.engine == "reference":
                row["ratio_one"] = median(r["ratio_one"] for r in mine)
                row["ratio_herd"] = median(r["ratio_herd"] for r in mine)
            row["note"] = NOTES.get(setup.engine, "")
            rows.append(row)
    return rows


def summarize_baselines(
    baselines: list[dict[str, Any]], agent_counts: Sequence[int]
) -> list[dict[str, Any]]:
    rows = []
    for agents in agent_counts:
        mine = [b for b in baselines if b["agents"] == agents]
        row: dict[str, Any] = {"agents": agents}
        for key in ("one_p50_ms", "one_p99_ms", "herd_p50_ms", "herd_p99_ms"):
            row[key] = median(b[key] for b in mine)
        rows.append(row)
    return rows


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"N agent processes, {result['expiries']} access-token expiries each (all N at once at "
        f"every expiry), `openai` policy; median of {result['repeat']} runs.\n",
    ]
    columns = [
        "engine",
        "N",
        "refreshes / expiry",
        "reuse errors",
        "new logins",
        "stranded + errors",
        "tokens / calls",
        "p50 ms",
        "p99 ms",
        "note",
    ]
    rows = []
    for row in result["rows"]:
        rows.append(
            [
                row["engine"],
                row["agents"],
                fmt(row["refreshes_per_expiry"], 2),
                fmt(row["reuse_errors"], 0),
                fmt(row["relogins"], 0),
                fmt(row["stranded"] + row["errors"] + row["timeouts"], 0),
                f"{row['tokens']:.0f} / {row['calls']}",
                fmt(row["p50_ms"]),
                fmt(row["p99_ms"]),
                row["note"],
            ]
        )
    lines.append(table(columns, rows))
    server_rows = []
    for base in result["server"]:
        ref = next(
            (
                r
                for r in result["rows"]
                if r["engine"] == "reference" and r["agents"] == base["agents"]
            ),
            None,
        )
        server_rows.append(
            [
                base["agents"],
                fmt(base["one_p50_ms"], 2),
                fmt(base["one_p99_ms"], 2),
                fmt(base["herd_p50_ms"], 2),
                fmt(base["herd_p99_ms"], 2),
                fmt(ref["p99_ms"], 2) if ref else "-",
                f"{ref['ratio_one']:.1f}x" if ref else "-",
                f"{ref['ratio_herd']:.2f}x" if ref else "-",
            ]
        )
    lines.append(
        "\nThe server's own refresh latency in the same runs (same processes, same barrier), "
        "and the reference engine's p99 time to token against it:\n"
    )
    lines.append(
        table(
            [
                "N",
                "server p50 ms (1 client)",
                "server p99 ms (1 client)",
                "server p50 ms (N at once)",
                "server p99 ms (N at once)",
                "reference p99 ms",
                "ratio to 1-client p99",
                "ratio to N-at-once p99",
            ],
            server_rows,
        )
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N=8 only, 5 expiries, 1 run")
    parser.add_argument("--agents", default="8,32", help="process counts, comma-separated")
    parser.add_argument("--expiries", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--engine", action="append", help="only these engines (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("reports/bench"))
    args = parser.parse_args(argv)
    counts = [int(part) for part in args.agents.split(",") if part.strip()]
    if args.quick:
        counts, args.expiries, args.repeat = [8], 5, 1
    if not counts or min(counts) < 1 or max(counts) > 64:
        parser.error("--agents takes 1-64 processes per level")
    if not 1 <= args.expiries <= 200 or not 1 <= args.repeat <= 20:
        parser.error("--expiries 1-200 and --repeat 1-20")
    info = machine()
    result = run(counts, args.expiries, args.repeat, args.engine)
    text = f"Machine: {machine_line(info)}\n\n" + markdown(result)
    print(text)
    write_json(args.out / "engines.json", {"machine": info, **result})
    (args.out / "engines.md").write_text(text)
    print(f"wrote {args.out / 'engines.md'} and {args.out / 'engines.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
