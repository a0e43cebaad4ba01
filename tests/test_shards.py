"""A sharded exhaustive search: shards 1/N..N/N together are the unsharded search.

On a small world (three CLIs sharing auth.json: 81 schedules for the reference
engine), the shards' merge gives the unsharded verdict and schedule count; a
known-bug engine's failing runs are split between the shards, found by their
union and by no shard twice; ``merge-shards`` refuses, in one line with exit
status 2, shard files that are not every shard of one search once each.
"""

from __future__ import annotations

import importlib
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from conformance import has_fatal, load_engine, load_scenario
from conformance._cli import main
from conformance._merge import merge_shards
from simulator import RunResult, Shard, parse_shard, search_exhaustive, simulate

SCENARIO = "no-cross-process-lock"  # 3 agents, 1 turn: 81 schedules of the reference
EXHAUSTIVE = ["--scenario", SCENARIO, "--strategy", "exhaustive", "--jobs", "1", "--quiet"]


def _shard(tmp_path: Path, index: int, count: int, *extra: str) -> Path:
    output = tmp_path / f"shard-{index}-of-{count}.json"
    argv = ["run", *EXHAUSTIVE, "--shard", f"{index}/{count}", "--shard-output", str(output)]
    code = main([*argv, "--report-dir", str(tmp_path / f"report-{index}"), *extra])
    assert code == 0
    return output


@pytest.fixture(scope="module")
def four_shards(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    tmp_path = tmp_path_factory.mktemp("shards")
    return [_shard(tmp_path, index, 4) for index in range(1, 5)]


def _cells(path: Path) -> dict[str, dict[str, Any]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return {cell["engine"]: cell for cell in data["cells"]}


def test_merged_shards_give_the_unsharded_verdict_and_count(
    four_shards: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", *EXHAUSTIVE, "--report-dir", str(tmp_path / "whole")]) == 0
    whole = json.loads((tmp_path / "whole" / "results.json").read_text(encoding="utf-8"))
    unsharded = {cell["engine"]: cell for cell in whole["cells"]}
    assert unsharded["reference"]["verdict"] == "ruled out"
    assert unsharded["reference"]["schedules_tried"] == 81
    capsys.readouterr()

    merged_path = tmp_path / "merged.json"
    argv = ["merge-shards", *map(str, reversed(four_shards)), "--output", str(merged_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    merged = {cell["engine"]: cell for cell in json.loads(merged_path.read_text())["cells"]}
    assert merged["reference"]["verdict"] == "ruled out"
    assert merged["reference"]["schedules"] == 81
    assert merged["reference"]["complete_shards"] == 4
    assert "ruled out: all 81 schedules" in out
    assert merged["no-lock"]["verdict"] == unsharded["no-lock"]["verdict"] == "reproduced"
    # a shard alone rules nothing out: its subtrees only
    for path in four_shards:
        reference = _cells(path)["reference"]
        assert reference["complete"]
        assert reference["found"] is None
        assert 0 < reference["subtrees"][0] < reference["subtrees"][1]

    # one shard split the same way is the same search unsharded: the same count
    one = _shard(tmp_path, 1, 1)
    assert _cells(one)["reference"]["schedules"] == 81


def test_the_merged_replay_line_replays_the_anomaly(
    four_shards: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    merged = merge_shards(four_shards)
    cell = {cell["engine"]: cell for cell in merged["cells"]}["no-lock"]
    assert cell["found_in"] is not None
    assert "refresh-token-reuse" in cell["anomalies"]
    words = shlex.split(cell["replay"])
    assert words[:2] == ["tokenrace", "replay"]
    capsys.readouterr()
    assert main(words[1:]) == 1  # the fatal anomaly, again
    assert "anomaly: refresh-token-reuse (fatal)" in capsys.readouterr().out


def test_a_shard_that_misses_a_known_bug_passes_but_does_not_reproduce(
    four_shards: list[Path],
) -> None:
    found = [_cells(path)["no-lock"]["found"] for path in four_shards]
    assert "reproduced" in found
    assert None in found  # this world's failing runs are not in every shard's subtrees


def test_a_shard_that_sees_only_other_anomalies_leaves_the_verdict_to_the_merge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """incompatible-locks must show a refresh token reused; one shard's subtrees show
    only the broken mutual exclusion, which fails neither that shard nor the merge."""
    files = []
    for index in range(1, 5):
        output = tmp_path / f"{index}.json"
        argv = ["run", "--scenario", "incompatible-locks", "--engine", "incompatible-locks"]
        argv += ["--strategy", "exhaustive", "--jobs", "1", "--shard", f"{index}/4"]
        argv += ["--shard-output", str(output), "--report-dir", str(tmp_path / str(index))]
        assert main(argv) == 0
        files.append(output)
    found = [_cells(path)["incompatible-locks"]["found"] for path in files]
    assert "other anomaly" in found
    assert "merge" in capsys.readouterr().out  # the ok column: not yet a failure
    merged = merge_shards(files)
    assert merged["passed"]
    assert merged["cells"][0]["verdict"] == "reproduced"


def _failing_schedules(shard: Shard | None) -> tuple[set[str], int]:
    spec = load_scenario(SCENARIO)
    entry = load_engine("no-lock")

    failing: set[str] = set()

    def is_failure(result: RunResult) -> bool:
        if has_fatal(result):
            failing.add(str(result.schedule))
        return False  # keep going: every failing run

    search = search_exhaustive(
        lambda chooser: simulate(spec, entry.factory(), chooser),
        is_failure,
        max_schedules=100_000,
        shard=shard,
    )
    assert search.complete
    return failing, search.examples


def test_a_known_bug_is_found_by_exactly_the_union_of_the_shards() -> None:
    whole, count = _failing_schedules(Shard(1, 1, 4))
    assert whole
    parts = [_failing_schedules(Shard(index, 3, 4)) for index in range(1, 4)]
    union: set[str] = set()
    for failing, _ in parts:
        assert not union & failing  # no run is two shards'
        union |= failing
    assert union == whole
    assert sum(examples for _, examples in parts) == count
    assert all(failing != whole for failing, _ in parts)  # no shard alone finds them all


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def test_merge_refuses_missing_duplicate_and_mismatched_shards(
    four_shards: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second, third, fourth = map(str, four_shards)
    assert "3/4 missing" in _error(["merge-shards", first, second, fourth], capsys)
    assert "given twice" in _error(["merge-shards", first, second, third, fourth, first], capsys)
    other = _shard(tmp_path, 1, 2)  # another N
    assert "different searches" in _error(["merge-shards", str(other), second], capsys)
    data = json.loads(four_shards[1].read_text(encoding="utf-8"))
    data["cells"][0]["engine"] = "mirrored"  # another engine
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(data), encoding="utf-8")
    line = _error(["merge-shards", first, str(edited), third, fourth], capsys)
    assert "different searches" in line
    data = json.loads(four_shards[1].read_text(encoding="utf-8"))
    data["split_depth"] = 3  # another split
    edited.write_text(json.dumps(data), encoding="utf-8")
    assert "split_depth" in _error(["merge-shards", first, str(edited), third, fourth], capsys)
    edited.write_text("{not json", encoding="utf-8")
    assert "not a shard file" in _error(["merge-shards", str(edited)], capsys)
    assert "cannot read" in _error(["merge-shards", str(tmp_path / "absent.json")], capsys)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--shard", "1/4"], "add --strategy exhaustive"),
        (["--strategy", "exhaustive", "--shard", "5/4"], "between 1 and N"),
        (["--strategy", "exhaustive", "--shard", "one"], "is not I/N"),
        (["--strategy", "exhaustive", "--shard", "1/2", "--split-depth", "-1"], "0 or more"),
        (["--split-depth", "3"], "applies to --shard"),
        (["--shard-output", "x.json"], "applies to --shard"),
    ],
)
def test_shard_options_are_checked_in_one_line(
    options: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "--scenario", SCENARIO, "--report-dir", str(tmp_path), *options]
    assert says in _error(argv, capsys)


def test_shard_numbers() -> None:
    assert parse_shard(" 2 / 4 ", 5) == Shard(2, 4, 5)
    assert str(Shard(3, 4)) == "3/4"
    assert [Shard(2, 3).owns(subtree) for subtree in range(6)] == [0, 1, 0, 0, 1, 0]
    with pytest.raises(ValueError, match="between 1 and N"):
        Shard(0, 4)
    with pytest.raises(ValueError, match="between 1 and N"):
        parse_shard("1/0")


def test_the_benchmark_runs_and_prints_its_rows(capsys: pytest.CaptureFixture[str]) -> None:
    """``benchmarks/bench_shards.py`` is not a test; this keeps it from rotting."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    bench_shards = importlib.import_module("bench_shards")
    assert bench_shards.main(["--agents", "2", "--depth", "3"]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert len(rows) == 8  # unsharded, split, and three rows for each of 2 and 4 shards
    assert rows[0].split()[1:3] == ["unsharded", "10"]
    assert rows[1].split()[-4] == "10"  # the split search: the same 10 schedules
