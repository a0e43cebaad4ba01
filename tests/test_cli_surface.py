"""The command line's surface: ``--version``, ``tokenrace list``, and help on every option."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from conformance._cli import build_parser, main
from conformance._entry import top_parser
from conformance._listing import KINDS
from conformance._matrix import default_cells


def _parsers(
    parser: argparse.ArgumentParser, prefix: str
) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(prefix, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _parsers(sub, f"{prefix} {name}")
    return found


def test_every_option_has_help() -> None:
    missing = [
        f"{where} {action.option_strings or action.dest}"
        for where, parser in _parsers(build_parser(), "tokenrace")
        for action in parser._actions
        if not action.help and not isinstance(action, argparse._SubParsersAction)
    ]
    assert missing == []


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("tokenrace 0.")


def test_list_names_what_commands_take(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for kind in KINDS:
        assert kind in out
    for cell in default_cells():  # every shipped scenario and its engine, by the name to type
        assert f" {cell.scenario} " in out
        assert f" {cell.engine} " in out
    for name in ("openai", "okta", "5xx", "crash", "lock=lockf", "scope=agent-dir", "os=macos"):
        assert f" {name} " in out


def test_list_refuses_an_unknown_kind(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["list", "sceanrios"])
    assert exit_.value.code == 2
    assert "choose from scenarios" in capsys.readouterr().err


def test_top_level_help_is_the_full_parsers() -> None:
    """``tokenrace --help`` answered early says exactly what the full parser would."""
    assert top_parser().format_help() == build_parser().format_help()


def test_help_and_version_import_nothing_heavy() -> None:
    """``--help`` loads neither the simulator nor the fake server (it takes 0.02 s, not 0.4)."""
    code = (
        "import sys\n"
        "from conformance._entry import main\n"
        "for argv in (['--help'], ['--version']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as exit_:\n"
        "        assert exit_.code == 0, exit_.code\n"
        "heavy = [m for m in ('simulator', 'fake_oauth_server', 'rich', 'hypothesis')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "usage: tokenrace" in done.stdout
    assert "tokenrace 0." in done.stdout
