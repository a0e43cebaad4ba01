"""Every benchmark of issue 8 in one command: tables on stdout, reports under ``reports/bench/``.

    python benchmarks/run_all.py            # the full run (about 35 minutes on 2 CPUs)
    python benchmarks/run_all.py --quick    # every section small (about 2-3 minutes)
    python benchmarks/run_all.py --only engines,find

Sections (``--only`` picks some, comma-separated):

- ``engines``: engines side by side on real processes (``bench_engines.py``);
- ``find``: time to find each known bug, tokenrace against a stress test and
  frontrun (``bench_find.py``);
- ``simulator``: ruling out, simulator speed and growth, time to find per
  strategy (``bench_simulator.py``; left out of ``--quick``, whose own
  ``--quick`` takes about a minute: add ``--only ...,simulator`` to have it);
- ``server``: the fake server's refresh throughput and latency on loopback at
  1, 8 and 64 clients (``bench_server.py``'s load loop, median of the runs).

Writes ``reports/bench/index.md`` (every table, the machine, the command)
and ``reports/bench/bench.json``, besides each section's own
``engines.{md,json}``, ``find.{md,json}``, ``simulator.{md,json}``.
Each figure is a median of several runs (``--repeat``, 1 with ``--quick``);
comparisons are measured in the same run and given as ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import bench_engines
import bench_find
import bench_server
import bench_simulator
from harness import fmt, git_revision, machine, machine_line, median, percentile, table, write_json

SECTIONS = ("engines", "find", "simulator", "server")
QUICK_SECTIONS = ("engines", "find", "server")


def server_section(repeat: int, requests: int, seconds: float) -> dict[str, Any]:
    """bench_server's levels, ``repeat`` times each; medians per level."""
    levels = (1, 8, 64)
    runs: dict[int, list[dict[str, float]]] = {level: [] for level in levels}
    process, base_url = bench_server.start_server()
    try:
        for _ in range(repeat):
            for clients in levels:
                level = asyncio.run(bench_server.run_level(base_url, clients, requests, seconds))
                runs[clients].append(
                    {
                        "requests": level.requests,
                        "errors": level.errors,
                        "per_s": level.requests / level.seconds,
                        "p50_ms": percentile(level.latencies, 0.5) * 1000,
                        "p99_ms": percentile(level.latencies, 0.99) * 1000,
                    }
                )
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
    rows = [
        {
            "clients": clients,
            "refresh_per_s": median(run["per_s"] for run in runs[clients]),
            "p50_ms": median(run["p50_ms"] for run in runs[clients]),
            "p99_ms": median(run["p99_ms"] for run in runs[clients]),
            "errors": sum(run["errors"] for run in runs[clients]),
        }
        for clients in levels
    ]
    return {"repeat": repeat, "requests_per_level": requests, "rows": rows, "runs": runs}


def server_markdown(result: dict[str, Any]) -> str:
    rows = [
        [row["clients"], fmt(row["refresh_per_s"], 0), fmt(row["p50_ms"], 2), fmt(row["p99_ms"], 2)]
        for row in result["rows"]
    ]
    head = (
        f"Refreshes on loopback, server in a child process, each client its own connection "
        f"and grant; at most {result['requests_per_level']} refreshes per level; median of "
        f"{result['repeat']} runs.\n\n"
    )
    return head + table(["clients", "refresh/s", "p50 ms", "p99 ms"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every section small (~2-3 min)")
    parser.add_argument("--only", default="", help=f"sections, comma-separated: {SECTIONS}")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--out", type=Path, default=Path("reports/bench"))
    args = parser.parse_args(argv)
    chosen = [part for part in args.only.split(",") if part] or list(
        QUICK_SECTIONS if args.quick else SECTIONS
    )
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; pick from {SECTIONS}")
    repeat = 1 if args.quick else args.repeat
    if not 1 <= repeat <= 20:
        parser.error("--repeat 1-20")
    command = "python benchmarks/run_all.py" + " ".join(
        [""] + (["--quick"] if args.quick else []) + ([f"--only {args.only}"] if args.only else [])
    )
    info = machine()
    started = time.perf_counter()
    results: dict[str, Any] = {}
    texts: list[str] = []
    out = args.out
    if "engines" in chosen:
        print("engines side by side on real processes ...", file=sys.stderr, flush=True)
        counts, expiries = ([8], 5) if args.quick else ([8, 32], 20)
        results["engines"] = bench_engines.run(counts, expiries, repeat)
        text = bench_engines.markdown(results["engines"])
        write_json(out / "engines.json", {"machine": info, **results["engines"]})
        (out / "engines.md").write_text(f"Machine: {machine_line(info)}\n\n{text}")
        texts.append("## Engines side by side on real processes\n\n" + text)
    if "find" in chosen:
        print("time to find each known bug ...", file=sys.stderr, flush=True)
        budget, schedules = (4.0, 300) if args.quick else (30.0, 1000)
        results["find"] = bench_find.run(None, repeat, budget, schedules)
        text = bench_find.markdown(results["find"])
        write_json(out / "find.json", {"machine": info, **results["find"]})
        (out / "find.md").write_text(f"Machine: {machine_line(info)}\n\n{text}")
        texts.append("## Time to find each known bug\n\n" + text)
    if "simulator" in chosen:
        print("simulator: speed, growth, ruling out ...", file=sys.stderr, flush=True)
        flags = ["--quick"] if args.quick else []
        bench_simulator.main([*flags, "--repeat", str(repeat), "--out", str(out)])
        results["simulator"] = {"report": str(out / "simulator.json")}
        texts.append("## Simulator\n\n" + (out / "simulator.md").read_text())
    if "server" in chosen:
        print("fake server throughput ...", file=sys.stderr, flush=True)
        requests, seconds = (500, 3.0) if args.quick else (3000, 10.0)
        results["server"] = server_section(repeat, requests, seconds)
        texts.append("## Fake server on loopback\n\n" + server_markdown(results["server"]))
    elapsed = time.perf_counter() - started
    header = (
        f"# tokenrace benchmarks\n\nMachine: {machine_line(info)}\n\n"
        f"Command: `{command}` (revision {git_revision()}, {elapsed / 60:.1f} min)\n\n"
    )
    text = header + "\n".join(texts)
    print(text)
    write_json(
        out / "bench.json",
        {"machine": info, "command": command, "seconds": elapsed, "sections": results},
    )
    (out / "index.md").write_text(text)
    print(f"wrote {out / 'index.md'} and {out / 'bench.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
