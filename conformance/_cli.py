"""The ``tokenrace`` command line.

Exit status: 0 when every engine met its expectation (clean engines clean,
known-bug engines reproduced), 1 when one did not or a replay shows a fatal
anomaly, 2 for a usage or setup error.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from simulator import OsModel, SimulatorError, Strategy

from ._campaign import (
    EngineResult,
    run_campaign,
)
from ._check_engine import check_engine
from ._client_cli import add_clients_parser, client_subcommand
from ._command import add_fault_options, check_command
from ._console import (
    Running,
    anomaly_column,
    cell_label,
    narrow,
    plural,
    print_result,
    progress_bar,
    verdict_line,
)
from ._engines import BUILTIN_ENGINES, Expectation, load_engine, with_lock
from ._entry import DESCRIPTION, Version
from ._errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, ConformanceError
from ._fs_check import add_fs_options, check_fs
from ._listing import add_list_parser, list_command
from ._matrix import MatrixAxes, default_cells, is_scenario_file, matrix_cells, run_cells
from ._merge import add_merge_parser, merge_command
from ._mutate import add_mutate_parser, mutate_command
from ._options import hang_limit, hang_option, report_dir_option, search_options
from ._replaying import run_replay
from ._report import results_json, write_report
from ._scenario_files import ReferenceClaim, load_scenario_file
from ._shards import add_shard_options, shard_cells, shard_mark, shard_of, write_shard
from ._validate import (
    OneLineParser,
    check_names,
    check_report_dir,
    describe,
    one_line,
    positive,
    settle_seconds,
)

DEFAULT_DB = ".hypothesis/tokenrace"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="tokenrace",
        description=DESCRIPTION,
    )
    parser.add_argument("--version", action=Version, help="print the version and exit")
    commands = parser.add_subparsers(dest="subcommand", metavar="COMMAND")
    commands.add_parser(
        "serve", help="run the fake OAuth server on loopback (tokenrace serve --help)"
    )
    commands.add_parser("wine", help="set up Wine for Windows processes (tokenrace wine --help)")

    run = commands.add_parser(
        "run", help="the default campaign: every shipped scenario, its engine and the reference"
    )
    run.add_argument(
        "--scenario",
        action="append",
        dest="scenarios",
        metavar="NAME|FILE",
        help="only this scenario: a shipped one's name, or a scenario file (repeatable; "
        "default: every shipped scenario)",
    )
    run.add_argument(
        "--engine",
        action="append",
        dest="engines",
        metavar="ENGINE",
        help="only this engine; a module:attribute engine is checked where the reference is",
    )
    search_options(run)
    add_shard_options(run)
    run.add_argument("--jobs", type=positive, help="cells run at once (default: one per CPU)")
    report_dir_option(run)
    run.add_argument(
        "--hypothesis-db",
        metavar="DIR",
        help="keep failing schedules in DIR and try them first next time, as CI should "
        f"(e.g. {DEFAULT_DB}); the search is then no longer seeded",
    )
    run.add_argument("--quiet", action="store_true", help="print only the verdict table")
    run.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="print every cell's block, clean ones too, with up to 4 anomalies each",
    )
    run.add_argument("--json", action="store_true", help="print results.json, nothing else")

    mat = commands.add_parser(
        "matrix",
        help="engine x layout x lock x OS x agents/processes x policy x faults, a verdict each",
    )
    mat.add_argument(
        "--engine",
        action="append",
        dest="engines",
        metavar="ENGINE",
        help="an engine to cross with the axes (repeatable; default: reference)",
    )
    for axis_name, default, meaning in (
        ("layout", "shared", "shared, mirrored, separate-logins"),
        ("lock", "", "a lock kind for engines that take one (flock, lockf, mutex, ...)"),
        ("scope", "", "a lock scope: agent-dir, store-file, profile"),
        ("os", "linux", "linux, macos, windows"),
        ("agents", "2", "agent counts"),
        ("processes", "separate", "separate, gateway (one process), mixed (all but one)"),
        ("population", "one", "one profile, two (agents alternate), bystander (one untouched)"),
        ("policy", "openai", "server presets"),
        ("faults", "none", "none, or kill, drop, 5xx, 429, reset, stall, stall<seconds>, crash"),
    ):
        mat.add_argument(f"--{axis_name}", default=default, help=f"comma-separated: {meaning}")
    mat.add_argument("--expiries", type=positive, default=1, help="access-token expiries")
    mat.add_argument("--skew", type=int, default=0, help="seconds the last agent's clock is ahead")
    mat.add_argument("--torn-writes", action="store_true", help="a write takes two steps")
    search_options(mat, strategy=Strategy.HYPOTHESIS, examples=200, seed=0)
    mat.add_argument("--jobs", type=positive, help="cells run at once (default: one per CPU)")
    report_dir_option(mat)
    mat.add_argument("--quiet", action="store_true", help="print only the verdict table")

    repro = commands.add_parser(
        "reproduce", help="run a scenario file (a bug report) and print its verdict"
    )
    repro.add_argument("file", type=Path, help="a scenario .toml file")
    repro.add_argument("--engine", help="check this engine instead of the file's")
    repro.add_argument("--examples", type=positive, help="override the file's search budget")
    hang_option(repro, "the file's own, else")
    report_dir_option(repro)
    add_clients_parser(commands, repro)  # and --order, --kill for client scenario files

    chk = commands.add_parser(
        "check", help="check an engine against the battery and the shipped scenarios"
    )
    what = chk.add_mutually_exclusive_group(required=True)
    what.add_argument("--engine", help="built-in name or module:attribute")
    what.add_argument(
        "--command",
        help="a program in any language, started once per agent (see README, 'Any language')",
    )
    chk.add_argument(
        "--agents", default="atlas,nova,lumi", help="--command: agent names (default 3)"
    )
    chk.add_argument("--orders", type=positive, default=6, help="--command: release orders")
    chk.add_argument("--order", help="--command: exactly this release order, e.g. nova,atlas")
    chk.add_argument(
        "--kill",
        nargs="?",
        const=True,
        default=False,
        metavar="AGENT@DECISION",
        help="--command: also SIGKILL the agent let through first; with --fs, AGENT@DECISION: "
        "SIGKILL that agent before that decision and start it again",
    )
    chk.add_argument("--policy", default="openai", help="--command: the server's preset")
    chk.add_argument(
        "--layout",
        choices=["shared", "mirrored"],
        default="shared",
        help="--command: mirrored copies main's store into every agent dir first",
    )
    chk.add_argument("--timeout", type=float, default=30.0, help="--command: seconds per run")
    add_fault_options(chk)
    add_fs_options(chk)
    chk.add_argument(
        "--settle",
        type=settle_seconds,
        default=2.0,
        help="--command: seconds to wait for an agent not yet at the token endpoint (default 2)",
    )
    chk.add_argument(
        "--scenario",
        action="append",
        dest="scenarios",
        metavar="NAME|FILE",
        help="a shipped scenario's name or a scenario file (repeatable; default: the battery "
        "and every shipped scenario)",
    )
    search_options(chk)
    add_shard_options(chk)
    report_dir_option(chk)
    chk.add_argument("--hypothesis-db", metavar="DIR", help="as for run")
    chk.add_argument("--jobs", type=positive, help="--engine: worlds run at once (default: CPUs)")

    add_mutate_parser(commands)
    add_list_parser(commands)

    rep = commands.add_parser("replay", help="replay one schedule and print its history")
    rep.add_argument("schedule", help="a schedule string, e.g. 'atlas*12 nova*3' or 'default'")
    rep.add_argument(
        "--scenario",
        default="headline",
        metavar="NAME|FILE",
        help="a scenario name, matrix label or file, as the replay line gives it "
        "(default: headline; tokenrace list scenarios)",
    )
    rep.add_argument(
        "--engine",
        default="mirrored",
        help="a built-in engine or module:attribute (default: mirrored; tokenrace list engines)",
    )
    rep.add_argument(
        "--os",
        choices=[model.value for model in OsModel],
        help="the OS the world runs (default: the scenario's)",
    )
    rep.add_argument(
        "--real",
        action="store_true",
        help="replay on real processes (windows on Linux: under Wine) and check the model",
    )
    hang_option(rep)
    add_merge_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["serve"]:  # the fake server's own command line
        from fake_oauth_server import main as serve_main

        return serve_main(args_list[1:], prog="tokenrace serve")
    if args_list[:1] == ["wine"]:  # Wine's set-up: the one command that installs anything
        from simulator.real import wine_main

        return wine_main(args_list[1:], prog="tokenrace wine")
    argv = args_list
    parser = build_parser()
    args = parser.parse_args(argv)
    # piped on Windows: the same table as elsewhere, not the legacy console's (narrower, other box)
    console = Console(highlight=False, legacy_windows=False if not sys.stdout.isatty() else None)
    errors = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)  # paths unbroken
    try:
        if getattr(args, "report_dir", None) is not None:
            check_report_dir(args.report_dir)  # before the search, not after it
        if (status := client_subcommand(args, console)) is not None:
            return status
        if args.subcommand == "run":
            return _run(args, console)
        if args.subcommand == "replay":
            return run_replay(args, console)
        if args.subcommand == "reproduce":
            return _reproduce(args, console)
        if args.subcommand == "check":
            return _check(args, console)
        if args.subcommand == "matrix":
            return _matrix(args, console)
        if args.subcommand == "mutate":
            return mutate_command(args, console)
        if args.subcommand == "list":
            return list_command(args, console)
        if args.subcommand == "merge-shards":
            return merge_command(args, console)
    except (ConformanceError, SimulatorError) as exc:
        errors.print(f"[bold red]tokenrace: error:[/] {escape(one_line(str(exc)))}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        errors.print("tokenrace: interrupted; no report written")
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug of ours or an engine's mistake mid-search: still one line
        if os.environ.get("TOKENRACE_TRACEBACK"):
            raise
        errors.print(
            f"[bold red]tokenrace: unexpected error:[/] {escape(describe(exc))} "
            "(TOKENRACE_TRACEBACK=1 shows the traceback)"
        )
        return EXIT_USAGE
    parser.print_help()
    return EXIT_USAGE


def _run(args: argparse.Namespace, console: Console) -> int:
    shard = shard_of(args)
    names = args.engines or []
    for name in names:
        load_engine(name, hang_after=hang_limit(args))  # fail early (exit 2) on a bad engine
    names_only = [name for name in args.scenarios or () if not is_scenario_file(name)]
    check_names("--scenario", names_only, [cell.scenario for cell in default_cells()])
    builtin = [name for name in names if name in BUILTIN_ENGINES]
    cells = default_cells(
        engines=builtin if names else (),
        scenarios=args.scenarios or (),
        examples=args.examples,
        strategy=args.strategy,
        seed=args.seed,
        hang_after=args.hang_after,
    )
    for name in (name for name in names if name not in BUILTIN_ENGINES):
        cells += [
            dataclasses.replace(cell, engine=name, expectation=Expectation.CLEAN)
            for cell in default_cells(
                scenarios=args.scenarios or (),
                examples=args.examples,
                strategy=args.strategy,
                seed=args.seed,
                hang_after=args.hang_after,
            )
            if cell.engine == "reference"
        ]
    if not cells:
        raise ConformanceError("no cell to run: the --scenario and --engine filters match nothing")
    if args.hypothesis_db:
        cells = [dataclasses.replace(cell, database=args.hypothesis_db) for cell in cells]
    cells = shard_cells(cells, shard)
    if not args.json:
        scenarios = len({cell.scenario for cell in cells})
        jobs = plural(args.jobs or os.cpu_count() or 1, "job")
        console.print(
            f"tokenrace run: {plural(len(cells), 'cell')} "
            f"({plural(scenarios, 'scenario')} x engines), {jobs}"
        )
    now = Running([cell_label(cell.scenario, cell.engine) for cell in cells], args.jobs)
    with progress_bar(console, disable=args.quiet or args.json) as progress:
        task = progress.add_task(now.label(), total=len(cells))

        def show(result: EngineResult) -> None:
            label = now.done(cell_label(result.scenario, result.engine))
            progress.update(task, advance=1, description=label)
            if args.quiet or args.json:
                return
            if args.verbose:
                print_result(console, result.scenario, result)
            elif result.caught or not result.passed:  # what to replay; the report has the rest
                print_result(console, result.scenario, result, shown=1)

        campaign = run_cells(cells, jobs=args.jobs, on_result=show)
    write_report(campaign, args.report_dir)
    if args.json:
        status = EXIT_OK if campaign.passed else EXIT_FAILED
        if shard is not None:  # the shard file too, said nothing about
            status = write_shard(campaign, cells, shard, "run", args.shard_output, None)
        console.print_json(data=results_json(campaign))
        return status
    table = Table(title="tokenrace run")
    columns = ("scenario", "engine", "expected", "verdict", "anomaly", "schedules", "time", "ok")
    kept = ("scenario", "engine", "verdict", "ok") if narrow(console) else columns
    for column in kept:  # fold long names in a narrow terminal rather than cut them
        table.add_column(column, overflow="fold", no_wrap=column in ("verdict", "ok"))
    for result in campaign.cells:
        row = dict(
            zip(
                columns,
                (
                    escape(result.scenario),
                    escape(result.engine),
                    result.expectation.value,
                    result.verdict.value,
                    anomaly_column(result),
                    str(result.examples),
                    f"{result.elapsed:.1f}s",
                    shard_mark(result, sharded=shard is not None),
                ),
                strict=True,
            )
        )
        table.add_row(*(row[column] for column in kept))
    console.print(table)
    if shard is not None:  # what the shard file holds: not the whole search's verdict
        return write_shard(campaign, cells, shard, "run", args.shard_output, console)
    console.print(verdict_line("tokenrace run", campaign, args.report_dir))
    return EXIT_OK if campaign.passed else EXIT_FAILED


def _matrix(args: argparse.Namespace, console: Console) -> int:
    def axis(text: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in text.split(",")) or ("",)

    try:
        counts = tuple(int(count) for count in axis(args.agents))
    except ValueError:
        raise ConformanceError(f"--agents must be numbers, got {args.agents!r}") from None
    axes = MatrixAxes(
        engines=tuple(args.engines or ["reference"]),
        layouts=axis(args.layout),
        locks=axis(args.lock),
        scopes=axis(args.scope),
        oses=axis(args.os),
        agents=counts,
        processes=axis(args.processes),
        populations=axis(args.population),
        policies=axis(args.policy),
        faults=axis(args.faults),
        expiries=args.expiries,
        skew=args.skew,
        torn=args.torn_writes,
    )
    cells = matrix_cells(
        axes,
        strategy=args.strategy,
        examples=args.examples,
        seed=args.seed,
        hang_after=args.hang_after,
    )
    for cell in {(cell.engine, cell.lock, cell.scope): cell for cell in cells}.values():
        entry = load_engine(cell.engine, hang_after=cell.hang_after)  # fail early, exit 2
        if cell.lock or cell.scope:
            with_lock(entry, cell.lock, cell.scope)
    console.print(f"tokenrace matrix: {plural(len(cells), 'cell')}, {args.strategy.value} search")

    def show(result: EngineResult) -> None:
        if not args.quiet and result.caught:
            print_result(console, result.scenario, result)

    campaign = run_cells(cells, jobs=args.jobs, on_result=show)
    write_report(campaign, args.report_dir)
    table = Table(title="tokenrace matrix")
    for column in ("world", "engine", "verdict", "anomaly", "schedules"):
        table.add_column(column, overflow="fold")
    for result in campaign.cells:
        verdict = result.verdict.value
        colour = "red" if result.caught else "green"
        table.add_row(
            escape(result.scenario),
            escape(result.engine),
            f"[{colour}]{verdict}[/]",
            anomaly_column(result),
            str(result.examples),
        )
    console.print(table)
    console.print(verdict_line("tokenrace matrix", campaign, args.report_dir))
    return EXIT_OK if campaign.passed else EXIT_FAILED


def _reproduce(args: argparse.Namespace, console: Console) -> int:
    scenario = load_scenario_file(args.file)
    hang_after = scenario.hang_after if args.hang_after is None else args.hang_after
    entry = load_engine(args.engine or scenario.engine, hang_after=hang_after)
    if args.engine:  # a user's engine is held to what the reference promises
        entry = dataclasses.replace(entry, expectation=Expectation.CLEAN)
    elif scenario.reproduces:
        entry = dataclasses.replace(entry, expectation=Expectation.BUGGY)
    entries = [entry]
    if not args.engine and scenario.reference is ReferenceClaim.CLEAN:
        entries.append(load_engine("reference"))
    console.print(f"[bold]{scenario.title or scenario.name}[/]  ({scenario.source})")
    campaign = run_campaign(
        str(args.file),
        scenario.world,
        entries,
        max_examples=args.examples or scenario.examples,
        seed=scenario.seed,
        strategy=scenario.strategy,
        on_result=lambda result: print_result(console, str(args.file), result),
        anomaly=None if args.engine else scenario.anomaly,
        hang_after=hang_after,
    )
    write_report(campaign, args.report_dir)
    return EXIT_OK if campaign.passed else EXIT_FAILED


def _check(args: argparse.Namespace, console: Console) -> int:
    if args.command is not None:
        if args.fs:
            return check_fs(args, console)
        if args.strategy is not None:
            raise ConformanceError(
                "--strategy applies to --engine and --fs; --command runs release orders"
            )
        for option, given in (("--schedule", args.schedule), ("--depth", args.depth)):
            if given is not None:
                raise ConformanceError(f"{option} applies to --fs (check --command CMD --fs)")
        if isinstance(args.kill, str):
            raise ConformanceError(
                "--kill AGENT@DECISION applies to --fs; without --fs, --kill takes no value"
            )
        return check_command(args, console)
    if args.fs:
        raise ConformanceError("--fs applies to --command: check --command CMD --fs")
    return check_engine(args, console)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
