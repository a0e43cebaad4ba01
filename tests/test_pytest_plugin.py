"""The pytest plugin in a throw-away project: one test item per scenario, failures named."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def _run_pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_plugin_gates_a_projects_engine(tmp_path: Path) -> None:
    found = re.search(r"```python\n# my_engine.py\n(.*?)```", README, re.S)
    assert found is not None
    (tmp_path / "my_engine.py").write_text(found.group(1), encoding="utf-8")
    (tmp_path / "test_nothing_else.py").write_text(
        "def test_own():\n    assert True\n", encoding="utf-8"
    )
    done = _run_pytest(
        tmp_path, "--tokenrace-engine", "my_engine:MyEngine", "--tokenrace-examples", "60"
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "6 failed, 13 passed" in done.stdout  # 18 scenario items and the project's own test
    assert "tokenrace[my_engine:MyEngine-no-lock-on-windows]" in done.stdout
    assert "flock is not available on win32" in done.stdout
    replay = "tokenrace replay --scenario no-lock-on-windows --engine my_engine:MyEngine"
    assert replay in done.stdout
    assert "site-packages" not in done.stdout


def test_plugin_passes_the_reference_engine(tmp_path: Path) -> None:
    done = _run_pytest(
        tmp_path,
        "--tokenrace-engine",
        "refresh_engine:ReferenceEngine",
        "--tokenrace-scenario",
        "headline",
        "--tokenrace-scenario",
        "lockf-in-gateway",
        "--tokenrace-examples",
        "50",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_plugin_refuses_a_bad_engine(tmp_path: Path) -> None:
    done = _run_pytest(tmp_path, "--tokenrace-engine", "nosuch_module_xyz:Engine")
    assert done.returncode == 4  # pytest's usage error
    assert "cannot import 'nosuch_module_xyz'" in done.stderr
