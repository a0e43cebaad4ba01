"""The linux model against this machine's kernel: the same schedules end the same way."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from conformance import BUILTIN_ENGINES, check, load_scenario
from fake_oauth_server import AuditKind
from simulator import (
    DefaultChooser,
    EventKind,
    FileSystemFactory,
    RandomChooser,
    ReplayChooser,
    Simulation,
    VirtualFS,
    simulate,
)
from simulator.real import compare_with_reality, real_backend

ENGINES = ["reference", "mirrored", "no-lock", "in-place-write", "short-stale-timeout"]

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="checks the linux model")


def _schedules(engine: str, count: int) -> list[object]:
    spec = load_scenario("small")
    entry = BUILTIN_ENGINES[engine]
    return [
        simulate(spec, entry.factory(), RandomChooser(random.Random(seed), switch=0.5)).schedule
        for seed in range(count)
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_model_and_real_linux_agree_on_every_schedule(engine: str) -> None:
    spec = load_scenario("small")
    entry = BUILTIN_ENGINES[engine]
    for schedule in _schedules(engine, 8):
        mismatch = compare_with_reality(spec, entry.factory, schedule)  # type: ignore[arg-type]
        assert mismatch is None, f"{engine} '{schedule}':\n{mismatch.diff}"


@pytest.mark.parametrize("engine", ["reference", "replaces-symlink"])
def test_a_symlinked_store_ends_the_same_in_the_model_and_for_real(engine: str) -> None:
    """The store a link into another directory: the model's links (followed by ``open``,
    replaced themselves by ``rename``, read by ``readlink``) against Linux's."""
    spec = load_scenario("symlinked-store")
    entry = BUILTIN_ENGINES[engine]
    for seed in range(6):
        chooser = RandomChooser(random.Random(seed), switch=0.5)
        schedule = simulate(spec, entry.factory(), chooser).schedule
        mismatch = compare_with_reality(spec, entry.factory, schedule)  # type: ignore[arg-type]
        assert mismatch is None, f"{engine} '{schedule}':\n{mismatch.diff}"


def _with_a_fifo_store(backend: FileSystemFactory) -> tuple[list[str], int]:
    """The small world with a FIFO where the main store is: each turn's error, and how
    many refresh tokens the server saw."""
    spec = load_scenario("small")
    sim = Simulation(spec, BUILTIN_ENGINES["reference"].factory(), DefaultChooser(), backend)
    sim.fs.unlink(spec.main_store)
    sim.fs.mkfifo(spec.main_store)
    result = sim.run()
    ends = [event.error_type for event in result.events if event.kind is EventKind.TURN_END]
    return ends, sum(1 for event in result.audit if event.kind is AuditKind.PRESENTED)


def test_a_fifo_in_place_of_the_store_is_refused_alike_in_the_model_and_for_real(
    tmp_path: Path,
) -> None:
    """A non-regular file where the store is: the model's FIFO is refused as the real
    interpreter refuses one (ENXIO, never waited on), and no token is presented."""
    modelled = _with_a_fifo_store(VirtualFS)
    real = _with_a_fifo_store(real_backend(str(tmp_path)))
    assert modelled == real
    ends, requests = modelled
    assert ends
    assert set(ends) == {"StoreUnreadable"}
    assert requests == 0


def test_the_reference_engine_ends_clean_for_real_too(tmp_path: Path) -> None:
    spec = load_scenario("small")
    for index, schedule in enumerate(_schedules("reference", 5)):
        root = tmp_path / str(index)
        root.mkdir()
        chooser = ReplayChooser(schedule)  # type: ignore[arg-type]
        real = simulate(
            spec, BUILTIN_ENGINES["reference"].factory(), chooser, real_backend(str(root))
        )
        assert check(real) == ()
        store = root / spec.main_store.lstrip("/")
        assert b"trr_" in store.read_bytes()  # a real file holds the rotated credential
        assert oct(store.stat().st_mode & 0o777) == oct(0o600)


def test_a_wrong_model_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison can fail: break the model's rename and it disagrees with Linux."""
    original = VirtualFS.replace

    def replace_keeps_old_file(self: VirtualFS, src: str, dst: str) -> None:
        if self.exists(dst):
            raise PermissionError(13, "Permission denied", dst)  # Windows' answer, not Linux's
        original(self, src, dst)

    monkeypatch.setattr(VirtualFS, "replace", replace_keeps_old_file)
    spec = load_scenario("small")
    schedule = _schedules("reference", 1)[0]
    mismatch = compare_with_reality(spec, BUILTIN_ENGINES["reference"].factory, schedule)  # type: ignore[arg-type]
    assert mismatch is not None
    assert "PermissionError" in mismatch.model_history
    assert "PermissionError" not in mismatch.real_history
    assert mismatch.diff.startswith("--- model")
