"""The linux model against this machine's kernel: the same schedules end the same way."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from conformance import BUILTIN_ENGINES, check, load_scenario
from simulator import RandomChooser, ReplayChooser, VirtualFS, simulate
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
