"""The project's own rules: CI runs the README's command, packages keep their import direction."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("refresh_engine", "fake_oauth_server", "simulator", "conformance")
#: what each package may import of the others (DESIGN.md's one-way rule)
ALLOWED = {
    "refresh_engine": set(),
    "fake_oauth_server": set(),
    "simulator": {"refresh_engine", "fake_oauth_server"},
    "conformance": {"refresh_engine", "fake_oauth_server", "simulator"},
}


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    command = ci_lines[-1]
    assert command.startswith("python3 -m venv .venv")
    assert "pytest -n auto" in command
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"\n{command}\n" in readme


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_what_it_may(package: str) -> None:
    for path in sorted((ROOT / package).glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in PACKAGES and top != package:
                    assert top in ALLOWED[package], f"{path.name} imports {name}"


@pytest.mark.parametrize("package", PACKAGES)
def test_package_states_its_import_rule_and_exports(package: str) -> None:
    text = (ROOT / package / "__init__.py").read_text(encoding="utf-8")
    assert "# " + package + " imports" in text or "# " + package + " may import" in text
    module = importlib.import_module(package)
    for name in module.__all__:
        assert hasattr(module, name), f"{package}.__all__ names missing {name}"


@pytest.mark.parametrize("package", PACKAGES)
def test_modules_stay_small(package: str) -> None:
    for path in (ROOT / package).glob("*.py"):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= 520, f"{path.relative_to(ROOT)} has {lines} lines"
