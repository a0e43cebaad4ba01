"""The project's own rules: CI runs the README's command, packages keep their import direction."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("refresh_engine", "fake_oauth_server", "simulator", "conformance")
#: the layers, each a package or subpackage with private ``_modules`` and a public ``__init__``
LAYERS = ("refresh_engine", "fake_oauth_server", "simulator", "simulator.real", "conformance")
#: what each layer may import of the others (docs/architecture.md):
#: the deterministic core ``simulator`` never imports ``simulator.real``, which does real I/O
ALLOWED = {
    "refresh_engine": set(),
    "fake_oauth_server": set(),
    "simulator": {"refresh_engine", "fake_oauth_server"},
    "simulator.real": {"refresh_engine", "fake_oauth_server", "simulator"},
    "conformance": {"refresh_engine", "fake_oauth_server", "simulator", "simulator.real"},
}
#: private modules a test may import of the layer it tests, where nothing public serves:
#: the OS model and race scan checked below the kernel, the Wine set-up's cache layout,
#: the fake server's ledger (slowed down to widen a race), a store path helper
TEST_PRIVATE_IMPORTS = {
    "test_controlled_processes.py": {"simulator._os", "simulator._syscalls"},
    "test_fake_server.py": {"fake_oauth_server._ledger"},
    "test_lock_timeout.py": {"refresh_engine._oslocks"},  # the real poll, with a fake clock
    "test_os_models.py": {"simulator._os"},
    "test_race_scan.py": {"simulator._footprint", "simulator._races"},
    # the semantics table and the soundness property break footprints on purpose
    "test_semantics.py": {"simulator._semantics", "simulator._footprint", "simulator._history"},
    # and the sharded search's split (a prefix state reduced, to show the property fails)
    "test_soundness.py": {
        "simulator._kernel",
        "simulator._semantics",
        "simulator._footprint",
        "simulator._shard",
    },
    "test_real_world.py": {"refresh_engine._store"},
    "test_wine.py": {"simulator._os", "simulator._syscalls"},
    "test_wine_setup.py": {"simulator.real._wine", "simulator.real._wine_probe"},
}


def layer_of(module: str) -> str | None:
    """The innermost layer ``module`` belongs to (None: not this project's)."""
    found = [layer for layer in LAYERS if module == layer or module.startswith(layer + ".")]
    return max(found, key=len, default=None)


def imported_modules(source: str, module: str, is_package: bool = False) -> list[str]:
    """Every module (or name in a module) that ``source``, the text of ``module``, imports,
    anywhere in it, relative imports resolved."""
    tree = ast.parse(source)
    package = module.split(".") if is_package else module.split(".")[:-1]
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            found += [target, *(f"{target}.{alias.name}" for alias in node.names)]
    return found


def import_violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """Imports of ``module`` that break the layering: a layer it may not import, or
    another layer's private module (a ``_name`` below that layer's public ``__init__``)."""
    importer = layer_of(module)
    assert importer is not None, module
    wrong = []
    for name in imported_modules(source, module, is_package):
        layer = layer_of(name)
        if layer is None or layer == importer:
            continue
        if layer not in ALLOWED[importer]:
            wrong.append(f"{module} imports {name}: {importer} may not import {layer}")
        private = [part for part in name[len(layer) + 1 :].split(".") if part.startswith("_")]
        if private:
            wrong.append(f"{module} imports {name}, private to {layer}")
    return wrong


def _modules(package: str) -> list[tuple[Path, str, bool]]:
    out = []
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out.append((path, ".".join(parts[:-1] if is_package else parts), is_package))
    return out


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    command = ci_lines[-1]
    assert command.startswith("python3 -m venv .venv")
    assert "pytest -n auto" in command
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"\n{command}\n" in readme


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_what_it_may(package: str) -> None:
    """Every import of every module, at any depth, resolved: layers point one way and
    none reaches into another's private modules."""
    wrong = []
    for path, module, is_package in _modules(package):
        wrong += import_violations(path.read_text(encoding="utf-8"), module, is_package)
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    ("module", "source", "broken"),
    [
        ("simulator._kernel", "from .real import RealFS", "may not import simulator.real"),
        ("simulator._kernel", "from simulator.real._realfs import RealFS", "may not import"),
        ("simulator._kernel", "import simulator.real", "may not import simulator.real"),
        ("simulator._kernel", "def f():\n    from . import real", "may not import"),
        ("simulator._vfs", "from refresh_engine._effects import LockOp", "private to"),
        ("simulator.real._realfs", "from refresh_engine._oslocks import flock", "private to"),
        ("simulator.real._procfs", "from .._kernel import Simulation", "private to simulator"),
        ("simulator.real._procfs", "from simulator._vfs import VirtualFS", "private to"),
        ("conformance._cli", "from simulator.real._wine import wine_python", "private to"),
        ("conformance._cli", "from fake_oauth_server import _tokens", "private to"),
        ("refresh_engine._real", "from simulator import simulate", "may not import"),
        ("simulator", "from .real import ProcessPool", "may not import simulator.real"),
    ],
)
def test_the_layering_check_catches_a_violation(module: str, source: str, broken: str) -> None:
    is_package = module.count(".") == 0
    wrong = import_violations(source, module, is_package)
    assert wrong, source
    assert any(broken in line for line in wrong), wrong


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("simulator.real._procfs", "from simulator import Simulation, VirtualFS"),
        ("simulator.real._procfs", "from ._realfs import RealFS"),
        ("simulator._kernel", "from ._vfs import VirtualFS\nfrom refresh_engine import Open"),
        ("conformance._replaying", "from simulator.real import ProcessPool"),
        ("simulator", "from ._kernel import simulate"),
    ],
)
def test_the_layering_check_passes_what_is_allowed(module: str, source: str) -> None:
    assert import_violations(source, module, module.count(".") == 0) == []


@pytest.mark.parametrize("folder", ["tests", "benchmarks"])
def test_tests_and_benchmarks_use_public_names(folder: str) -> None:
    """Benchmarks import only public names; a test imports a private module only of the
    layer it tests and only where nothing public serves (``TEST_PRIVATE_IMPORTS``);
    conformance's own tests may use its internals."""
    wrong = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        allowed = TEST_PRIVATE_IMPORTS.get(path.name, set()) if folder == "tests" else set()
        for name in imported_modules(path.read_text(encoding="utf-8"), f"{folder}.x"):
            layer = layer_of(name)
            if layer is None or (folder == "tests" and layer == "conformance"):
                continue
            rest = name[len(layer) + 1 :].split(".")
            if rest[0].startswith("_") and f"{layer}.{rest[0]}" not in allowed:
                wrong.append(f"{path.name} imports {name}, private to {layer}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("package", LAYERS)
def test_package_states_its_import_rule_and_exports(package: str) -> None:
    text = (ROOT / package.replace(".", "/") / "__init__.py").read_text(encoding="utf-8")
    assert "# " + package + " imports" in text or "# " + package + " may import" in text
    module = importlib.import_module(package)
    for name in module.__all__:
        assert hasattr(module, name), f"{package}.__all__ names missing {name}"


@pytest.mark.parametrize("package", PACKAGES)
def test_modules_stay_small(package: str) -> None:
    for path in (ROOT / package).rglob("*.py"):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= 520, f"{path.relative_to(ROOT)} has {lines} lines"


def test_importing_the_core_loads_no_real_io_harness() -> None:
    """At run time too: a fresh interpreter that imports ``simulator`` has not loaded
    ``simulator.real`` (a check that needs no AST, against import hooks and plugins)."""
    code = "import sys, simulator\nprint(sorted(m for m in sys.modules if 'real' in m.split('.')))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "[]", done.stdout
