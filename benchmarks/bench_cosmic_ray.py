"""Source-level mutants of the reference engine (cosmic-ray), killed by the default battery.

    python benchmarks/bench_cosmic_ray.py [--sample 40] [--examples 100] [--timeout 300]

The second source of mutants for issue 18, item 4, beside the effect-level
operators of ``bench_mutants.py``: cosmic-ray's generic operators (operators
swapped, comparisons flipped, constants changed, ``break``/``continue``
swapped, ...) over the modules of ``refresh_engine`` that the simulator runs
(``_reference.py``, ``_locks.py``, ``_store.py``, ``_flow.py``).  The test
command is ``tokenrace check --engine reference``: the default battery, each
scenario at ``--examples`` schedules (smaller than the scenarios' own
budgets, to keep a run within minutes), so a mutant is killed when the
battery finds a fatal anomaly in the mutated reference (or it no longer
runs).

cosmic-ray mutates files in place, so everything runs in a copy of the
packages in a temporary directory, never in this tree.  There are several
hundred mutants; ``--sample N`` runs an evenly spread, deterministic N of
them (every k-th in cosmic-ray's order) and marks the rest skipped.  Needs
the ``bench`` extra (cosmic-ray).  Writes ``reports/bench/cosmic-ray.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("refresh_engine", "fake_oauth_server", "simulator", "conformance")
MODULES = ("_reference.py", "_locks.py", "_store.py", "_flow.py")
OUT = ROOT / "reports" / "bench" / "cosmic-ray.json"


def config(work: Path, examples: int, timeout: float) -> str:
    check = (
        f"{sys.executable} -m conformance._cli check --engine reference "
        f"--examples {examples} --report-dir {work / 'report'}"
    )
    modules = ", ".join(f'"refresh_engine/{name}"' for name in MODULES)
    return (
        "[cosmic-ray]\n"
        f"module-path = [{modules}]\n"
        f"timeout = {timeout}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(check)}\n\n"
        '[cosmic-ray.distributor]\nname = "local"\n'
    )


def cosmic(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cosmic_ray.cli", *args],
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
    )


def sample(work: Path, count: int) -> int:
    """Keep an evenly spread ``count`` of the pending mutants; mark the rest skipped."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    with use_db(str(work / "session.sqlite"), WorkDB.Mode.open) as db:
        items = sorted(db.pending_work_items, key=lambda item: item.job_id)
        items.sort(key=lambda item: [(str(m.module_path), m.start_pos) for m in item.mutations])
        step = max(1, len(items) // count) if count else 1
        keep = {item.job_id for item in items[::step][:count]} if count else set()
        skipped = [item.job_id for item in items if item.job_id not in keep]
        db.set_multiple_results(skipped, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
        return len(items)


def results(work: Path) -> list[dict[str, object]]:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome

    found = []
    with use_db(str(work / "session.sqlite"), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome is WorkerOutcome.SKIPPED:
                continue
            mutation = item.mutations[0]
            found.append(
                {
                    "job": item.job_id,
                    "module": str(mutation.module_path),
                    "line": mutation.start_pos[0],
                    "operator": mutation.operator_name,
                    "occurrence": mutation.occurrence,
                    "outcome": _value(result.test_outcome or result.worker_outcome),
                    "diff": result.diff or "",
                }
            )
    return sorted(found, key=lambda row: (str(row["module"]), int(str(row["line"]))))


def _value(outcome: object) -> str:
    return str(getattr(outcome, "value", outcome))


def reached_lines(examples: int) -> set[tuple[str, int]]:
    """Every (module, line) of ``MODULES`` the reference runs in the battery: a survivor on
    a line never reached is dead code for this engine (another lock kind, another OS)."""
    from conformance import builtin_scenarios as files
    from conformance import load_engine, load_scenario_file, search_engine

    wanted = {str(ROOT / "refresh_engine" / name): f"refresh_engine/{name}" for name in MODULES}
    seen: set[tuple[str, int]] = set()

    def tracer(frame: FrameType, event: str, arg: object) -> Callable[..., object] | None:
        module = wanted.get(frame.f_code.co_filename)
        if module is None:
            return None
        seen.add((module, frame.f_lineno))
        return tracer

    reference = load_engine("reference")
    sys.settrace(tracer)
    try:
        for path in files():
            scenario = load_scenario_file(Path(path))
            if scenario.reference.value != "clean":
                continue
            search_engine(
                scenario.name,
                scenario.world,
                reference,
                max_examples=examples,
                seed=scenario.seed,
                strategy=scenario.strategy,
            )
    finally:
        sys.settrace(None)
    return seen


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", type=int, default=40, help="mutants to run (0: all)")
    parser.add_argument("--examples", type=int, default=100, help="schedules per scenario")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tokenrace-cosmic-") as temp:
        work = Path(temp)
        for package in PACKAGES:
            shutil.copytree(ROOT / package, work / package, ignore=shutil.ignore_patterns("*.pyc"))
        (work / "cr.toml").write_text(config(work, args.examples, args.timeout), encoding="utf-8")
        where = subprocess.run(
            [sys.executable, "-c", "import refresh_engine; print(refresh_engine.__file__)"],
            cwd=work,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if not where.startswith(str(work)):
            raise SystemExit(f"the copy is not what runs ({where}): cannot mutate safely")
        cosmic(work, "init", "cr.toml", "session.sqlite")
        total = sample(work, args.sample)
        print(f"bench_cosmic_ray: {total} mutants in {', '.join(MODULES)}; running {args.sample}")
        baseline = subprocess.run(
            [sys.executable, "-m", "conformance._cli", "check", "--engine", "reference"]
            + ["--examples", str(args.examples), "--report-dir", str(work / "report")],
            cwd=work,
            capture_output=True,
            text=True,
        )
        if baseline.returncode != 0:
            raise SystemExit("the unmutated reference fails the battery: no baseline")
        print(f"baseline (unmutated battery): {time.perf_counter() - started:.0f}s", flush=True)
        runner = subprocess.Popen(
            [sys.executable, "-m", "cosmic_ray.cli", "exec", "cr.toml", "session.sqlite"],
            cwd=work,
        )
        runner.wait()
        rows = results(work)
    reached = reached_lines(min(args.examples, 20))
    for row in rows:
        row["reached"] = (str(row["module"]), int(str(row["line"]))) in reached
    killed = [row for row in rows if row["outcome"] == "killed"]
    survived = [row for row in rows if row["outcome"] == "survived"]
    other = [row for row in rows if row["outcome"] not in ("killed", "survived")]
    for row in rows:
        print(f"  {row['outcome']:10} {row['module']}:{row['line']} {row['operator']}")
    for row in survived:
        why = "" if row["reached"] else " (line never run by the reference in the battery)"
        print(f"\nsurvivor {row['module']}:{row['line']} {row['operator']}{why}\n{row['diff']}")
    scored = len(killed) + len(survived)
    score = len(killed) / scored if scored else 1.0
    print(
        f"\ncosmic-ray: {len(killed)}/{scored} killed = {score:.1%} "
        f"({len(other)} incompetent or errored; {total} mutants in all, {len(rows)} run); "
        f"{time.perf_counter() - started:.0f}s"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    unreached = [row for row in survived if not row["reached"]]
    print(f"survivors on lines the reference never runs in the battery: {len(unreached)}")
    summary = {"total": total, "run": len(rows), "killed": len(killed), "score": score}
    args.out.write_text(json.dumps({**summary, "rows": rows}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
