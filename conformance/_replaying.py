"""``tokenrace replay``: one schedule exactly, in the model or on real processes.

On real processes (``--real``) the model is checked against them step for
step, so a replay is also the check of one OS model on one schedule.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from rich.console import Console

from simulator import OsModel, ReplayChooser, Schedule, ScheduleError
from simulator.real import ProcessPool, RealityMismatch, reality_check, simulate_processes

from ._campaign import replay
from ._checker import check, fatal
from ._engines import load_engine
from ._errors import EXIT_FAILED, EXIT_OK
from ._hang import HangError
from ._scenarios import load_scenario


def run_replay(args: argparse.Namespace, console: Console) -> int:
    """``tokenrace replay``: one schedule, in the model or on real processes."""
    spec = load_scenario(args.scenario)
    if args.os:
        spec = dataclasses.replace(spec, os=OsModel(args.os))
    entry = load_engine(args.engine, hang_after=args.hang_after)
    schedule = Schedule.parse(args.schedule)
    try:
        result = replay(spec, entry, schedule, hang_after=args.hang_after)
    except HangError as error:
        console.print(f"{error.hang}; the run was stopped there", markup=False, soft_wrap=True)
        return EXIT_FAILED
    mismatch: RealityMismatch | None = None
    if args.real:
        model = result
        if spec.os is OsModel.WINDOWS and sys.platform != "win32":
            console.print("windows processes run under Wine (set up by `tokenrace wine setup`)")
        with ProcessPool(spec.os) as pool:
            try:
                result = simulate_processes(spec, entry.factory(), ReplayChooser(schedule), pool)
            except ScheduleError as exc:  # reality took a path the model did not
                console.print(f"on real processes the run left the schedule: {exc}")
                console.print(f"the {spec.os.value} model DISAGREES with real processes")
                return EXIT_FAILED
        mismatch = reality_check(schedule, model, result, spec.os)
    console.print(result.render(), markup=False, end="", soft_wrap=True)
    anomalies = check(result)
    for anomaly in anomalies:
        console.print(f"anomaly: {anomaly}", markup=False, soft_wrap=True)
    if not anomalies:
        console.print("no anomaly")
    if args.real:
        where = f"{len(spec.agents)} agents on real {spec.os.value} processes"
        if mismatch is None:
            console.print(f"{where}: the {spec.os.value} model agrees, step for step")
        else:
            console.print(mismatch.diff, markup=False, soft_wrap=True)
            console.print(f"{where}: the {spec.os.value} model DISAGREES (diff above)")
    return EXIT_FAILED if fatal(anomalies) or mismatch is not None else EXIT_OK
