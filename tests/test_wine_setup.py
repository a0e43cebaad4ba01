"""The Wine setup and the probe protocol, checked without Wine: they run in every CI run.

What needs Wine itself is in ``test_wine.py`` (marked ``wine``).  Here: the
cache layout, the refusal of compiled packages, the clear errors when Wine
cannot be had, runs that end at exit rather than end-of-file, and the probe
talking to a native interpreter.
"""

from __future__ import annotations

import errno
import sys
import time
from pathlib import Path

import pytest

from conformance._cli import main
from refresh_engine import (
    Close,
    Done,
    Failed,
    Flock,
    HttpResponse,
    LockFileEx,
    LockOp,
    MsvcrtLocking,
    MsvcrtMode,
    Open,
    Opened,
    OpenFlags,
    Read,
    ReadData,
)
from simulator import OsModel
from simulator.real import (
    SETUP_COMMAND,
    Probe,
    ProbeError,
    ProcessPool,
    WineError,
    WineNotSetUp,
    WineUnavailable,
    _wine,  # the set-up's internals: cache layout, a missing Wine
    run_command,
    setup_wine_python,
    wine_python,
)
from simulator.real._wine_probe import decode, encode, errno_name


def test_home_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(_wine.HOME_ENV, str(tmp_path / "w"))
    assert _wine.default_home() == tmp_path / "w"
    monkeypatch.delenv(_wine.HOME_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert _wine.default_home() == tmp_path / "tokenrace" / "wine"


def test_windows_paths_live_on_drive_z(tmp_path: Path) -> None:
    assert _wine.windows_path(tmp_path / "a") == "Z:" + str(tmp_path / "a").replace("/", "\\")
    assert _wine.windows_path(tmp_path, "/") == "Z:" + str(tmp_path)


def test_pth_lists_the_stdlib_the_interpreter_and_the_site_beside_it() -> None:
    assert _wine.PTH_TEXT.splitlines() == ["python313.zip", ".", "..\\site"]


def test_site_is_synced_once_and_replaced_when_the_sources_change(tmp_path: Path) -> None:
    site = tmp_path / "site"
    files = _wine.package_files(["refresh_engine"])
    assert "refresh_engine/_oslocks.py" in files
    assert not any("__pycache__" in name for name in files)
    assert _wine.sync_site(site, files)
    assert not _wine.sync_site(site, files)  # unchanged: nothing written
    assert _wine.sync_site(site, {**files, "extra.py": b"x = 1\n"})
    assert (site / "extra.py").read_bytes() == b"x = 1\n"
    assert _wine.sync_site(site, files)
    assert not (site / "extra.py").exists()


def test_compiled_packages_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "native_thing"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "_speedups.so").write_bytes(b"\x7fELF")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(WineUnavailable, match="not pure Python"):
        _wine.package_files(["native_thing"])
    with pytest.raises(WineUnavailable, match="not importable"):
        _wine.package_files(["no_such_package_here"])
    _wine.package_files(["sniffio"])  # optional: absent is no error


def _no_wine(monkeypatch: pytest.MonkeyPatch, *, root: bool, apt: bool) -> None:
    monkeypatch.setattr(_wine, "find_launcher", lambda: None)
    monkeypatch.setattr("os.geteuid", lambda: 0 if root else 1000)
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/apt-get" if apt else None)


@pytest.mark.skipif(sys.platform != "linux", reason="the Wine setup is for Linux hosts")
def test_missing_wine_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _no_wine(monkeypatch, root=True, apt=True)
    with pytest.raises(WineUnavailable, match="apt-get install wine64"):
        setup_wine_python(tmp_path, install=False)
    _no_wine(monkeypatch, root=False, apt=True)
    with pytest.raises(WineUnavailable, match="not root"):
        setup_wine_python(tmp_path)
    _no_wine(monkeypatch, root=True, apt=False)
    with pytest.raises(WineUnavailable, match="no apt-get"):
        setup_wine_python(tmp_path)


@pytest.mark.skipif(sys.platform != "linux", reason="the Wine setup is for Linux hosts")
def test_a_run_never_installs_it_names_the_setup_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Only ``tokenrace wine setup`` installs or downloads; a run that needs Wine and finds
    it missing stops with one line naming that command."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a run tried to install or download")

    monkeypatch.setattr(_wine, "install_wine", refuse)
    monkeypatch.setattr(_wine, "fetch_python", refuse)
    monkeypatch.setenv(_wine.HOME_ENV, str(tmp_path))
    with pytest.raises(WineNotSetUp) as raised:
        ProcessPool(OsModel.WINDOWS)
    message = str(raised.value)
    assert "\n" not in message
    assert message.endswith(f"`{SETUP_COMMAND}`")
    monkeypatch.setattr(_wine, "find_launcher", lambda: None)
    with pytest.raises(WineNotSetUp, match="Wine is not installed"):
        wine_python(tmp_path)


@pytest.mark.skipif(sys.platform != "linux", reason="Windows processes run under Wine on Linux")
def test_a_real_windows_replay_without_wine_set_up_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(_wine.HOME_ENV, str(tmp_path))
    argv = ["replay", "default", "--scenario", "headline", "--os", "windows", "--real"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"`{SETUP_COMMAND}`" in err
    assert not (tmp_path / "python").exists()  # nothing was downloaded


def test_the_setup_command_fails_in_one_line_when_wine_cannot_be_had(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(_wine.HOME_ENV, str(tmp_path))
    monkeypatch.setattr(_wine, "find_launcher", lambda: None)
    assert main(["wine", "status"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tokenrace wine: Wine is not installed")
    assert err.count("\n") == 1


def test_a_run_ends_when_the_process_exits_not_at_end_of_file() -> None:
    """Wine's helpers keep inherited pipes open; a background child stands in for them."""
    started = time.monotonic()
    run = run_command(["sh", "-c", "sleep 8 & echo out; echo err >&2; exit 3"], {}, 20)
    assert (run.returncode, run.stdout, run.stderr) == (3, "out\n", "err\n")
    assert time.monotonic() - started < 6
    with pytest.raises(WineError, match="exit status 3"):
        run.check()


def test_effects_and_outcomes_cross_the_pipe_unchanged() -> None:
    values = [
        Open("Z:/d/store", OpenFlags.READ | OpenFlags.WRITE | OpenFlags.CREATE),
        MsvcrtLocking(3, MsvcrtMode.NBLOCK, 2),
        LockFileEx(4, LockOp.SHARED, False, 10, 5),
        ReadData(b"\x00\xffdata"),
        Failed("PermissionError", 13, "Access denied", 5),
        HttpResponse(200, b"{}"),
    ]
    for value in values:
        assert decode(encode(value)) == value
    with pytest.raises(ValueError, match="exports no"):
        decode({"$": "Popen", "args": "rm"})
    assert errno_name(errno.EACCES) == "EACCES"
    assert errno_name(None) is None


def test_native_probe_does_effects_and_runs_code(tmp_path: Path) -> None:
    (tmp_path / "store").write_bytes(b"0123")
    with Probe.native() as probe:
        assert probe.platform == sys.platform
        assert probe.path(tmp_path) == str(tmp_path)
        opened = probe.effect(Open(probe.path(tmp_path / "store"), OpenFlags.READ)).outcome
        assert isinstance(opened, Opened)
        assert probe.effect(Read(opened.fd, 2)).outcome == ReadData(b"01")
        assert probe.effect(Close(opened.fd)).outcome == Done()
        missing = probe.effect(Open(probe.path(tmp_path / "nope"), OpenFlags.READ))
        assert isinstance(missing.outcome, Failed)
        assert missing.errno_name == "ENOENT"
        if sys.platform != "win32":
            flock = probe.effect(Flock(opened.fd, LockOp.EXCLUSIVE, False))
            assert flock.errno_name == "EBADF"  # closed above
        assert probe.exec("result = [1, b'x', None]") == [1, b"x", None]
        with pytest.raises(ProbeError, match="ZeroDivisionError") as caught:
            probe.exec("1 / 0")
        assert caught.value.type_name == "ZeroDivisionError"


def test_native_probe_posts_through_the_host() -> None:
    seen: list[tuple[str, bytes]] = []

    def answer(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        seen.append((url, body))
        return 200, b'{"ok": true}'

    code = (
        "r = http.post('http://h/t', content=b'a=1', headers={})\n"
        "result = [r.status_code, r.content]"
    )
    with Probe.native() as probe:
        assert probe.exec(code, http=answer) == [200, b'{"ok": true}']
        with pytest.raises(ProbeError, match="no handler"):
            probe.exec(code)
    assert seen == [("http://h/t", b"a=1")]
