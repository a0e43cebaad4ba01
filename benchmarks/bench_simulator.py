"""Simulator benchmarks: speed, how cost grows, ruling out, and time to find each bug.

    python benchmarks/bench_simulator.py [--quick] [--out reports/bench]

Prints tables and writes ``simulator.json`` and ``simulator.md`` under
``--out``.  Every timing is the median of ``--repeat`` runs measured in this
one process, so figures in one table compare; ratios are what to read, since
these machines are shared and noisy.  Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conformance import BUILTIN_ENGINES, has_fatal, load_scenario, search_engine
from fake_oauth_server import Policy
from simulator import (
    AgentSpec,
    Chooser,
    DefaultChooser,
    PctChooser,
    RandomChooser,
    RunResult,
    StoreLayout,
    Strategy,
    WorldSpec,
    search_exhaustive,
    simulate,
)

LIFETIME = Policy.preset("openai").access_token_lifetime


def world(agents: int, expiries: int) -> WorldSpec:
    names = [f"agent{index}" for index in range(agents)]
    turns = tuple(LIFETIME * (turn + 1) for turn in range(expiries))
    return WorldSpec(
        agents=tuple(AgentSpec(name, turns) for name in names),
        policy=Policy.preset("openai"),
        layout=StoreLayout.SHARED,
        max_steps=20_000,
    )


def median_time(repeat: int, job: Callable[[], object]) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        job()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def speed(repeat: int, runs: int) -> list[dict[str, Any]]:
    """Effects and schedules per second in the headline scenario, per strategy."""
    spec = load_scenario("headline")
    engine = BUILTIN_ENGINES["reference"].factory
    names = [agent.name for agent in spec.agents]
    horizon = simulate(spec, engine(), DefaultChooser()).steps + 1
    makers: dict[str, Callable[[int], Chooser]] = {
        "default order": lambda seed: DefaultChooser(),
        "random": lambda seed: RandomChooser(random.Random(seed)),
        "pct (d=3)": lambda seed: PctChooser(random.Random(seed), names, 3, horizon),
    }
    rows = []
    for label, make in makers.items():
        steps = 0

        def batch(make: Callable[[int], Chooser] = make) -> None:
            nonlocal steps
            steps = sum(simulate(spec, engine(), make(seed)).steps for seed in range(runs))

        elapsed = median_time(repeat, batch)
        rows.append(_speed_row(label, runs, steps, elapsed))
    entry = BUILTIN_ENGINES["reference"]
    for label, strategy in (("hypothesis", Strategy.HYPOTHESIS),):
        result = None

        def searched(strategy: Strategy = strategy) -> None:
            nonlocal result
            result = search_engine(
                "headline", spec, entry, max_examples=runs, seed=0, strategy=strategy
            )

        elapsed = median_time(repeat, searched)
        rows.append(_speed_row(label, runs, steps, elapsed))
    small = load_scenario("small")
    explored = {"n": 0, "steps": 0}

    def exhaustive() -> None:
        def run(chooser: Chooser) -> RunResult:
            result = simulate(small, engine(), chooser)
            explored["steps"] += result.steps
            return result

        explored["steps"] = 0
        explored["n"] = search_exhaustive(run, lambda result: False).examples

    elapsed = median_time(repeat, exhaustive)
    rows.append(_speed_row("exhaustive (small)", explored["n"], explored["steps"], elapsed))
    return rows


def _speed_row(label: str, runs: int, steps: int, elapsed: float) -> dict[str, Any]:
    return {
        "strategy": label,
        "schedules": runs,
        "effects": steps,
        "seconds": round(elapsed, 3),
        "schedules_per_s": round(runs / elapsed, 1),
        "effects_per_s": round(steps / elapsed),
    }


def growth(repeat: int) -> list[dict[str, Any]]:
    """One default-order run: cost against agents and against expiries (steps)."""
    engine = BUILTIN_ENGINES["reference"].factory
    rows = []
    base = None
    for agents, expiries in ((2, 1), (5, 1), (10, 1), (20, 1), (5, 2), (5, 4)):
        spec = world(agents, expiries)
        steps = simulate(spec, engine(), DefaultChooser()).steps
        elapsed = median_time(repeat, lambda spec=spec: simulate(spec, engine(), DefaultChooser()))
        per_step = elapsed / steps
        base = base or per_step
        rows.append(
            {
                "agents": agents,
                "expiries": expiries,
                "steps": steps,
                "ms_per_run": round(elapsed * 1000, 2),
                "us_per_step": round(per_step * 1e6, 1),
                "per_step_vs_2_agents": round(per_step / base, 2),
            }
        )
    return rows


def ruling_out(max_schedules: int, max_seconds: float) -> list[dict[str, Any]]:
    """Exhaustive search of the reference engine, with and without the reduction."""
    engine = BUILTIN_ENGINES["reference"].factory
    rows = []
    for agents, expiries in ((2, 1), (3, 1), (4, 1), (2, 2), (3, 2)):
        spec = world(agents, expiries)
        row: dict[str, Any] = {"agents": agents, "expiries": expiries}
        for reduction in (True, False):

            def run(chooser: Chooser, spec: WorldSpec = spec) -> RunResult:
                return simulate(spec, engine(), chooser)

            started = time.perf_counter()
            result = search_exhaustive(
                run,
                has_fatal,
                reduction=reduction,
                max_schedules=max_schedules,
                max_seconds=max_seconds,
            )
            key = "dpor" if reduction else "none"
            row[f"{key}_schedules"] = result.examples
            row[f"{key}_complete"] = result.complete
            row[f"{key}_seconds"] = round(time.perf_counter() - started, 2)
            row[f"{key}_found_bug"] = result.failing is not None
        full = row["none_schedules"]
        row["reduction_factor"] = (
            f"{full / row['dpor_schedules']:.0f}x"
            if row["none_complete"]
            else f">= {full / row['dpor_schedules']:.0f}x (no-reduction search stopped)"
        )
        rows.append(row)
    return rows


def time_to_find(repeat: int, budget: int) -> list[dict[str, Any]]:
    """For every known-bug engine in its scenario: schedules and time to the first failure."""
    from conformance import builtin_scenarios, load_scenario_file

    rows = []
    for path in builtin_scenarios():
        scenario = load_scenario_file(path)
        if not scenario.reproduces:
            continue  # a clean design, nothing to find
        entry = BUILTIN_ENGINES[scenario.engine]
        row: dict[str, Any] = {"scenario": scenario.name, "engine": entry.name}
        for strategy in Strategy:
            found = []
            times = []
            for seed in range(repeat):
                result = search_engine(
                    scenario.name,
                    scenario.world,
                    entry,
                    max_examples=budget,
                    seed=seed,
                    strategy=strategy,
                )
                found.append(result.first_failure_at)
                times.append(result.time_to_first_failure)
            hits = [n for n in found if n is not None]
            row[strategy.value] = (
                f"{statistics.median(hits):g} / {statistics.median(t for t in times if t):.2f}s"
                if len(hits) == len(found)
                else f"not found in {budget} ({len(hits)}/{repeat})"
            )
        rows.append(row)
    return rows


def table(title: str, rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    columns = list(rows[0])
    lines = [
        f"### {title}",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller budgets (about 1 min)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing (median)")
    parser.add_argument("--out", type=Path, default=Path("reports/bench"))
    args = parser.parse_args(argv)
    quick = args.quick
    machine = f"{platform.machine()} {platform.system()}, Python {platform.python_version()}"
    sections = {
        "Simulator speed (headline scenario, reference engine)": speed(
            args.repeat, 50 if quick else 200
        ),
        "Cost against agents and expiries (one default-order run)": growth(args.repeat),
        "Ruling out: exhaustive search of the reference engine": ruling_out(
            2_000 if quick else 10_000, 20.0 if quick else 30.0
        ),
        "Time to find each known bug (median schedules / seconds to the first failure)": (
            time_to_find(1 if quick else 3, 300 if quick else 1000)
        ),
    }
    command = "python benchmarks/bench_simulator.py" + (" --quick" if quick else "")
    text = f"Machine: {machine}; `{command}`\n\n"
    text += "\n".join(table(title, rows) for title, rows in sections.items())
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "simulator.md").write_text(text)
    payload = {"machine": machine, "quick": quick, "sections": sections}
    (args.out / "simulator.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out / 'simulator.md'} and {args.out / 'simulator.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
