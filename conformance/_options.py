"""Options several commands share: the search's, the hang limit, the report directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from simulator import Strategy

from ._hang import DEFAULT_HANG_AFTER
from ._validate import hang_seconds, positive

__all__ = ["hang_limit", "hang_option", "report_dir_option", "search_options"]


def report_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=Path("reports/latest"),
        metavar="DIR",
        help="where index.html, summary.md, results.json and junit.xml go "
        "(default: reports/latest)",
    )


def search_options(
    parser: argparse.ArgumentParser,
    *,
    strategy: Strategy | None = None,
    examples: int | None = None,
    seed: int | None = None,
) -> None:
    """``--strategy``, ``--examples`` and ``--seed``: a None default keeps each scenario's own."""
    own = "each scenario's own"
    parser.add_argument(
        "--strategy",
        type=Strategy,
        choices=list(Strategy),
        default=strategy,
        metavar="{" + ",".join(strategy.value for strategy in Strategy) + "}",
        help=f"how schedules are searched (default: {strategy.value if strategy else own})",
    )
    parser.add_argument(
        "--examples",
        type=positive,
        default=examples,
        help=f"schedules per cell (default: {examples or own})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=seed,
        help=f"search seed (default: {seed if seed is not None else own})",
    )
    hang_option(parser, "each scenario's own, else" if strategy is None else "")


def hang_option(parser: argparse.ArgumentParser, own: str = "") -> None:
    default = None if own else DEFAULT_HANG_AFTER
    parser.add_argument(
        "--hang-after",
        type=hang_seconds,
        default=default,
        metavar="SECONDS",
        help="a schedule that takes longer in real time is reported as a hang: the engine "
        f"blocks (time.sleep, a busy loop); 0 for no limit (default: {own} "
        f"{DEFAULT_HANG_AFTER:g})".replace("( ", "("),
    )


def hang_limit(args: argparse.Namespace) -> float:
    """``--hang-after``, or the default where it leaves each scenario its own."""
    return DEFAULT_HANG_AFTER if args.hang_after is None else float(args.hang_after)
