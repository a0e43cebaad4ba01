"""The real-OS and Wine harness: the simulator's model checked against real kernels.

The deterministic core (``simulator``) does no real I/O; everything here
does.  ``real_backend(root)`` and ``ProcessFS`` are ``FileSystem`` backends
the kernel is handed (``simulate(..., backend=...)``): files done for real
under a temporary root, or every call made by a live worker process of a
``ProcessPool`` (this machine's Python, or the Windows CPython under Wine).
``compare_with_reality`` runs one schedule over the model and over reality
and diffs the histories.  Installing Wine and the Windows CPython is an
explicit command, ``tokenrace wine setup`` (``setup_wine_python``); a run
that needs them and finds them missing raises ``WineNotSetUp``.
"""

# simulator.real may import refresh_engine, fake_oauth_server and the public
# names of simulator (its core); the core never imports simulator.real, and
# only conformance (above both) and tests import it.

from ._commands import main as wine_main
from ._fs_mount import (
    AGENT_ENV,
    FileStep,
    FuseUnavailable,
    ScheduledMount,
    StallWatch,
    fuse_unavailable,
    in_kernel_wait,
    mounted,
)
from ._probe import Probe, ProbeError
from ._procfs import ProcessFS, simulate_processes
from ._procpool import PoolStats, ProcessPool, can_run, host_model
from ._realfs import RealFS, real_backend
from ._reality import RealityMismatch, comparable_history, compare_with_reality, reality_check
from ._wine import (
    HOME_ENV,
    SETUP_COMMAND,
    WineError,
    WineNotSetUp,
    WinePython,
    WineRun,
    WineUnavailable,
    default_home,
    run_command,
    setup_wine_python,
    windows_path,
    wine_python,
)
from ._wine_host import (
    WINE_CANNOT,
    pinned,
    run_pytest,
    setup_windows_host,
    windows_runner_args,
    windows_test_files,
)

__all__ = [
    "AGENT_ENV",
    "FileStep",
    "FuseUnavailable",
    "ScheduledMount",
    "StallWatch",
    "fuse_unavailable",
    "in_kernel_wait",
    "mounted",
    "HOME_ENV",
    "SETUP_COMMAND",
    "WINE_CANNOT",
    "PoolStats",
    "Probe",
    "ProbeError",
    "ProcessFS",
    "ProcessPool",
    "RealFS",
    "RealityMismatch",
    "WineError",
    "WineNotSetUp",
    "WinePython",
    "WineRun",
    "WineUnavailable",
    "can_run",
    "comparable_history",
    "compare_with_reality",
    "default_home",
    "host_model",
    "pinned",
    "real_backend",
    "reality_check",
    "run_command",
    "run_pytest",
    "setup_windows_host",
    "setup_wine_python",
    "simulate_processes",
    "windows_path",
    "windows_runner_args",
    "windows_test_files",
    "wine_main",
    "wine_python",
]
