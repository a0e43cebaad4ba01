"""Reports of a real small run: every file, the diagram model, JUnit validity, no raw token."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from _platform import PRIVATE_MODE

from conformance._campaign import CampaignResult, EngineResult, Verdict, replay
from conformance._checker import AnomalyKind
from conformance._cli import main
from conformance._diagram import LaneKind, Row, RowKind, Tone, distinct, fold
from conformance._engines import Expectation, load_engine
from conformance._html import render_html
from conformance._junit import render_junit
from conformance._matrix import default_cells, run_cells
from conformance._report import write_report
from conformance._scenarios import load_scenario
from conformance._sequence import build
from conformance._summary import BEGIN, END, matrix_markdown, publish, render_summary
from fake_oauth_server import TOKEN_RE
from refresh_engine import HttpPost, HttpResponse, ReadData, Write
from simulator import RunResult, Schedule


@pytest.fixture(scope="module")
def campaign() -> CampaignResult:
    """Two scenarios: two reproductions, one ruled out, one not found (well under a second)."""
    cells = default_cells(scenarios=["no-cross-process-lock"])
    cells += default_cells(scenarios=["headline"], examples=20)
    return run_cells(cells, jobs=1)


@pytest.fixture(scope="module")
def reported(campaign: CampaignResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("report")
    write_report(campaign, directory)
    return directory


def failing(campaign: CampaignResult) -> CampaignResult:
    """The same cells held to the opposite expectations: every cell fails."""
    flipped = {Expectation.BUGGY: Expectation.CLEAN, Expectation.CLEAN: Expectation.BUGGY}
    cells = tuple(
        dataclasses.replace(c, expectation=flipped[c.expectation]) for c in campaign.cells
    )
    return CampaignResult(cells, campaign.elapsed)


def test_campaign_covers_every_verdict(campaign: CampaignResult) -> None:
    # "other anomaly" and "hang" are cells not as expected: test_expected_anomaly reports
    # the one, test_user_path the other
    unexpected = {Verdict.OTHER_ANOMALY, Verdict.HANG}
    assert {cell.verdict for cell in campaign.cells} == set(Verdict) - unexpected
    assert campaign.passed


def test_write_report_writes_every_file_private(campaign: CampaignResult, tmp_path: Path) -> None:
    (tmp_path / "history-old-engine.txt").write_text("from an earlier run\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not ours\n", encoding="utf-8")
    written = write_report(campaign, tmp_path)
    names = [path.name for path in written]
    assert names[0] == "results.json"
    assert names[-3:] == ["index.html", "summary.md", "junit.xml"]
    assert "history-no-cross-process-lock-no-lock.txt" in names
    assert not (tmp_path / "history-old-engine.txt").exists()  # stale: removed
    assert (tmp_path / "notes.txt").exists()
    for path in written:
        assert stat.S_IMODE(os.stat(path).st_mode) == PRIVATE_MODE, path


def test_results_json_documents_its_new_fields(reported: Path) -> None:
    results = json.loads((reported / "results.json").read_text(encoding="utf-8"))
    assert results["schema"] == "tokenrace.results/1"
    assert results["reports"] == {
        "html": "index.html",
        "markdown": "summary.md",
        "junit": "junit.xml",
    }
    for cell in results["cells"]:
        name = cell["history_file"]
        assert (name is None) == (cell["verdict"] != "reproduced")
        assert name is None or (reported / name).is_file()
    import conformance._report as report

    assert '"history_file"' in (report.__doc__ or "")
    assert '"reports"' in (report.__doc__ or "")


def test_writer_refuses_a_raw_token(campaign: CampaignResult, tmp_path: Path) -> None:
    raw = "trr_" + "0123456789abcdef" * 2
    cell = dataclasses.replace(campaign.cells[0], history=f"leaked {raw}\n")
    with pytest.raises(ValueError, match="raw token"):
        write_report(CampaignResult((cell,), 0.0), tmp_path)


# the HTML report -------------------------------------------------------------


def test_html_is_self_contained(reported: Path) -> None:
    page = (reported / "index.html").read_text(encoding="utf-8")
    assert "Content-Security-Policy" in page
    assert "default-src 'none'" in page
    assert not re.search(r"<(script|link|img|iframe|object)\b", page)
    assert not re.search(r"@import|url\((?!#)", page)  # only url(#marker) references
    assert not re.search(r"(src|href)=\"(?!#)", page)  # links stay inside the page


def test_html_has_the_matrix_and_one_diagram_per_reproduction(
    campaign: CampaignResult, reported: Path
) -> None:
    page = (reported / "index.html").read_text(encoding="utf-8")
    for verdict in ("v-reproduced", "v-ruled-out", "v-not-found"):
        assert f'class="v {verdict}' in page
    reproduced = [c for c in campaign.cells if c.verdict is Verdict.REPRODUCED]
    svgs = re.findall(r"<svg .*?</svg>", page, re.DOTALL)
    assert len(svgs) == len(reproduced) == 2
    for svg in svgs:
        root = ET.fromstring(svg)  # each diagram is well-formed XML on its own
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
    for cell in reproduced:
        assert cell.schedule is not None
        assert f"--engine {cell.engine} &#x27;{cell.schedule}&#x27;" in page  # replay command


def test_unexpected_cells_stand_out_everywhere(campaign: CampaignResult) -> None:
    bad = failing(campaign)
    page = render_html(bad)
    assert page.count(" unexpected") >= len(bad.cells)
    assert "FAILED" in page
    summary = render_summary(bad)
    assert summary.startswith("# tokenrace: ❌ failed")
    assert "## Not as expected" in summary
    assert summary.count("❌") > len(bad.cells)


# the sequence diagram model -------------------------------------------------------


def reproduced(campaign: CampaignResult, engine: str) -> tuple[EngineResult, RunResult]:
    cell = next(c for c in campaign.cells if c.engine == engine)
    assert cell.failing_run is not None
    return cell, cell.failing_run


def test_diagram_lanes_agents_then_lock_store_server(campaign: CampaignResult) -> None:
    cell, run = reproduced(campaign, "no-lock")
    diagram = build(run, cell.anomalies)
    kinds = [lane.kind for lane in diagram.lanes]
    # the refresh lock, then the store's write lock (both in-process mutexes for this engine)
    locks = [LaneKind.LOCK, LaneKind.LOCK]
    assert kinds == [LaneKind.AGENT] * 3 + locks + [LaneKind.STORE, LaneKind.SERVER]
    assert [lane.label for lane in diagram.lanes[:3]] == ["cli1", "cli2", "cli3"]
    assert diagram.lanes[3].caption.startswith("mutex")  # an in-process mutex, not a file lock
    assert diagram.lanes[4].caption.startswith("mutex")


def test_diagram_marks_the_spend_and_the_reuse(campaign: CampaignResult) -> None:
    cell, run = reproduced(campaign, "no-lock")
    reuse = next(a for a in cell.anomalies if a.kind is AnomalyKind.REFRESH_TOKEN_REUSE)
    rows = build(run, cell.anomalies).rows
    spend = [row for row in rows if row.tone is Tone.SPEND]
    reused = [row for row in rows if row.tone is Tone.REUSE]
    assert [row.step for row in spend] == [reuse.steps[0]]
    assert [row.step for row in reused] == [reuse.steps[1]]
    assert spend[0].target == reused[0].target == "server"
    assert "REUSE rt#" in reused[0].label
    assert "refresh-token-reuse" in reused[0].marks
    assert "spends rt#" in spend[0].detail
    # the second agent took the in-process mutex another process held: that is the bug
    assert any("granted while cli1 holds it" in row.label for row in rows)
    assert not any(TOKEN_RE.search(row.label + row.detail + row.tooltip) for row in rows)


def test_fold_merges_a_retry_loop_across_clock_ticks() -> None:
    def row(step: int, label: str, kind: RowKind = RowKind.ARROW) -> Row:
        return Row(step, float(step), kind, "a", "lock", label)

    rows = [
        row(1, "try"),
        row(2, "t+1s", RowKind.DIVIDER),
        row(3, "try"),
        row(4, "t+2s", RowKind.DIVIDER),
    ]
    rows += [row(5, "try"), row(6, "acquired")]
    folded = fold(rows)
    assert [(r.label, r.repeat) for r in folded] == [("try", 3), ("t+2s", 1), ("acquired", 1)]
    assert folded[0].until == 5.0


def test_lane_names_keep_what_differs() -> None:
    home = "/home/u"
    paths = [f"{home}/.app/agents/{name}/agent/auth.json" for name in ("main", "atlas")]
    assert distinct(paths, home) == ["main", "atlas"]
    assert distinct([f"{home}/.app/auth.json"], home) == ["auth.json"]


# summary.md and publishing ---------------------------------------------------------


def test_summary_has_the_matrix_and_replay_commands(
    campaign: CampaignResult, reported: Path
) -> None:
    summary = (reported / "summary.md").read_text(encoding="utf-8")
    assert summary.startswith("# tokenrace: ✅ passed")
    assert "| scenario | known-bug engine | reference |" in summary
    for cell in campaign.cells:
        assert f"`{cell.scenario}`" in summary
        if cell.schedule is not None:
            assert f"--engine {cell.engine} '{cell.schedule}'\n```" in summary
    assert "🔴 reproduced" in summary
    assert "🟢 ruled out" in summary
    assert "⚪ not found" in summary


def test_publish_replaces_only_the_marked_matrix(campaign: CampaignResult, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# Results\n\nbefore\n\n{BEGIN}\nold\n{END}\n\nafter\n", encoding="utf-8")
    assert publish(campaign, readme) is True
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# Results\n\nbefore\n\n")
    assert text.endswith("\n\nafter\n")
    assert matrix_markdown(campaign) in text
    assert "old" not in text
    assert publish(campaign, readme) is False  # no verdict changed: nothing to commit
    assert not re.search(r"\d+\.\d+ ?s\b", matrix_markdown(campaign))  # no timings
    (tmp_path / "bare.md").write_text("no markers\n", encoding="utf-8")
    with pytest.raises(ValueError, match="markers"):
        publish(campaign, tmp_path / "bare.md")


@pytest.mark.slow
def test_published_matrix_is_the_default_campaigns() -> None:
    """reports/README.md shows what `tokenrace run` finds today (about 40 s on 2 cores)."""
    campaign = run_cells(default_cells())
    readme = Path(__file__).resolve().parent.parent / "reports" / "README.md"
    assert f"{BEGIN}\n{matrix_markdown(campaign)}{END}" in readme.read_text(encoding="utf-8"), (
        "the published matrix is stale: python -m conformance._publish"
    )


def test_workflows_gate_upload_and_keep_the_example_database() -> None:
    workflows = Path(__file__).resolve().parent.parent / ".github" / "workflows"
    adopt = (workflows / "tokenrace.yml").read_text(encoding="utf-8")
    assert "workflow_call:" in adopt
    assert 'tokenrace check --engine "$ENGINE" --report-dir reports/latest' in adopt
    assert "tokenrace run --report-dir reports/latest" in adopt
    assert "path: .hypothesis" in adopt
    assert "actions/upload-artifact@v4" in adopt
    assert "path: reports/latest/" in adopt
    assert 'reports/latest/summary.md >> "$GITHUB_STEP_SUMMARY"' in adopt
    assert 'exit "${STATUS:-2}"' in adopt  # the job fails exactly when tokenrace did
    own = (workflows / "ci.yml").read_text(encoding="utf-8")
    for needed in ("ubuntu-latest", "macos-latest", "windows-latest", "- run: .ci/run"):
        assert needed in own
    assert "pytest -m wine" in own
    assert "uses: ./.github/workflows/tokenrace.yml" in own


# junit.xml ---------------------------------------------------------------------------

ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")
DECIMAL = re.compile(r"-?(\d+(\.\d*)?|\.\d+)")
INT = re.compile(r"-?\d+")


def junit_errors(text: str) -> list[str]:
    """Check ``text`` against the rules of the Apache Ant JUnit schema (windyroad/JUnit-Schema).

    Elements, their order and counts, required attributes and their types, and
    no attribute the schema does not declare.
    """
    errors: list[str] = []
    root = ET.fromstring(text)

    def attrs(
        element: ET.Element,
        required: dict[str, re.Pattern[str] | None],
        optional: dict[str, re.Pattern[str] | None] | None = None,
    ) -> None:
        optional = optional or {}
        allowed = set(required) | set(optional)
        for name in element.attrib:
            if name not in allowed:
                errors.append(f"<{element.tag}> has undeclared attribute {name}")
        for name, pattern in required.items():
            value = element.get(name)
            if value is None or not " ".join(value.split()):
                errors.append(f"<{element.tag}> lacks {name}")
            elif pattern is not None and not pattern.fullmatch(value):
                errors.append(f"<{element.tag} {name}={value!r}> has the wrong type")
        for name, pattern in optional.items():
            value = element.get(name)
            if value is not None and pattern is not None and not pattern.fullmatch(value):
                errors.append(f"<{element.tag} {name}={value!r}> has the wrong type")

    if root.tag != "testsuites" or root.attrib:
        errors.append("root must be a bare <testsuites>")
    for index, suite in enumerate(root):
        if suite.tag != "testsuite":
            errors.append(f"<testsuites> holds <{suite.tag}>")
            continue
        attrs(
            suite,
            {"name": None, "package": None, "id": INT, "timestamp": ISO, "hostname": None,
             "tests": INT, "failures": INT, "errors": INT, "time": DECIMAL},
            {"skipped": INT},
        )  # fmt: skip
        if suite.get("id") != str(index):
            errors.append(f"testsuite id {suite.get('id')} should be {index}")
        tags = [child.tag for child in suite]
        cases = tags.count("testcase")
        expected = ["properties"] + ["testcase"] * cases + ["system-out", "system-err"]
        if tags != expected:
            errors.append(f"testsuite children {tags} are not properties, testcase*, out, err")
        for prop in suite.iter("property"):
            attrs(prop, {"name": None, "value": re.compile(r".*", re.DOTALL)})
        for case in suite.iter("testcase"):
            attrs(case, {"name": None, "classname": None, "time": DECIMAL})
            children = list(case)
            if len(children) > 1 or any(
                c.tag not in ("skipped", "error", "failure") for c in children
            ):
                errors.append(f"testcase {case.get('name')} holds {[c.tag for c in children]}")
            for child in children:
                if child.tag != "skipped":
                    attrs(child, {"type": None}, {"message": None})
                if len(child):
                    errors.append(f"<{child.tag}> must hold text only")
        failed = sum(1 for case in suite.iter("testcase") if case.find("failure") is not None)
        if suite.get("tests") != str(cases) or suite.get("failures") != str(failed):
            errors.append(f"testsuite {suite.get('name')} counts do not match its cases")
    return errors


def test_junit_validates_and_reads_back(campaign: CampaignResult, reported: Path) -> None:
    text = (reported / "junit.xml").read_text(encoding="utf-8")
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert junit_errors(text) == []
    cases = list(ET.fromstring(text).iter("testcase"))
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        (f"tokenrace.{cell.scenario}", cell.engine) for cell in campaign.cells
    ]
    assert all(c.find("failure") is None for c in cases)  # every cell met its expectation
    out = "".join(s.findtext("system-out") or "" for s in ET.fromstring(text))
    assert "replay: tokenrace replay --scenario no-cross-process-lock --engine no-lock" in out


def test_junit_failures_carry_the_anomaly_and_the_replay(campaign: CampaignResult) -> None:
    text = render_junit(failing(campaign))
    assert junit_errors(text) == []
    failures = {
        case.get("name"): case.find("failure")
        for case in ET.fromstring(text).iter("testcase")
        if case.find("failure") is not None
    }
    assert set(failures) == {cell.engine for cell in campaign.cells}
    reuse = failures["no-lock"]
    assert reuse is not None
    assert reuse.get("type") == "refresh-token-reuse"
    assert "refresh-token-reuse (fatal)" in (reuse.get("message") or "")
    body = reuse.text or ""
    assert "minimal schedule: cli1*27 cli2" in body
    assert "replay: tokenrace replay --scenario no-cross-process-lock --engine no-lock" in body
    clean = failures["reference"]
    assert clean is not None
    assert clean.get("type") == "not-reproduced"


def test_junit_validator_is_not_vacuous(reported: Path) -> None:
    text = (reported / "junit.xml").read_text(encoding="utf-8")
    broken = text.replace("<system-err />", "", 1).replace('tests="2"', 'tests="two"', 1)
    errors = junit_errors(broken)
    assert any("children" in e for e in errors)
    assert any("wrong type" in e for e in errors)
    assert junit_errors(text.replace("<testsuites>", '<testsuites name="x">')) != []


# no raw token, anywhere -------------------------------------------------------------


def raw_tokens(run: RunResult) -> set[str]:
    """Every raw token the run's bytes carried: requests, responses, store reads and writes."""
    found: set[str] = set()
    for event in run.events:
        for blob in (event.effect, event.outcome):
            data = b""
            if isinstance(blob, HttpPost):
                data = blob.body
            elif isinstance(blob, HttpResponse | ReadData):
                data = blob.body if isinstance(blob, HttpResponse) else blob.data
            elif isinstance(blob, Write):
                data = blob.data
            found |= set(TOKEN_RE.findall(data.decode("utf-8", "replace")))
    return found


@pytest.fixture
def cwd(tmp_path: Path) -> Iterator[Path]:
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(old)


def test_no_report_or_log_holds_a_raw_token(
    campaign: CampaignResult, reported: Path, cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens: set[str] = set()
    for cell in campaign.cells:
        run = cell.failing_run or replay(
            load_scenario(cell.scenario), load_engine(cell.engine), Schedule.parse("default")
        )
        tokens |= raw_tokens(run)
    assert len(tokens) >= 4  # access and refresh tokens, before and after rotation
    # the command line's own output and its report directory, too
    assert main(["run", "--scenario", "no-cross-process-lock", "--jobs", "1"]) == 0
    assert (
        main(
            ["replay", "cli1*27 cli2", "--scenario", "no-cross-process-lock", "--engine", "no-lock"]
        )
        == 1
    )
    captured = capsys.readouterr()
    assert "refresh_token_reused" in captured.out  # the log is the replayed history itself
    texts = {"stdout": captured.out, "stderr": captured.err}
    for directory in (reported, cwd / "reports" / "latest"):
        files = sorted(directory.iterdir())
        assert {"index.html", "summary.md", "junit.xml", "results.json"} <= {f.name for f in files}
        texts |= {str(f): f.read_text(encoding="utf-8") for f in files}
    assert "rt#" in texts[str(reported / "index.html")]  # fingerprints are there instead
    for name, text in texts.items():
        leaked = [token[:8] for token in tokens if token in text]
        assert not leaked, f"{name} holds raw tokens starting {leaked}"
        assert not TOKEN_RE.search(text), f"{name} holds something token-shaped"
