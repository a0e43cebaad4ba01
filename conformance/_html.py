"""``index.html``: the verdict matrix, and a sequence diagram of every reproduced cell.

One self-contained file: inline CSS and SVG, no script, no font or image to
fetch (a Content-Security-Policy says so to the browser), so it can be opened
from a CI artifact or mailed as is.  Every string comes from already
fingerprinted text and is escaped.
"""

from __future__ import annotations

import re
from html import escape

from . import _sequence, _svg
from ._campaign import CampaignResult, EngineResult, replay_command
from ._engines import Expectation
from ._summary import KNOWN_BUG, anomaly_lines, counts, first_anomaly, matrix

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
CSS = """
:root { color-scheme: light; --fg: #1f2328; --muted: #59636e; --line: #d1d9e0;
  --red: #cf222e; --red-bg: #ffebe9; --green: #1a7f37; --green-bg: #dafbe1;
  --grey-bg: #f0f3f6; --amber-bg: #fff8c5; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px 48px; color: var(--fg); background: #fff;
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 32px 0 10px; }
h3 { font-size: 16px; margin: 0 0 6px; } h4 { font-size: 13px; margin: 14px 0 4px; }
code, pre { font: 12.5px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.status { display: inline-block; padding: 2px 12px; border-radius: 12px; font-weight: 700;
  color: #fff; vertical-align: middle; margin-left: 8px; font-size: 14px; }
.status.passed { background: var(--green); } .status.failed { background: var(--red); }
.meta, .note { color: var(--muted); }
table { border-collapse: collapse; }
th, td { border: 1px solid var(--line); padding: 6px 10px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
table.matrix td.scenario small { display: block; color: var(--muted); max-width: 34em; }
td.v { min-width: 13em; } td.v a { color: inherit; text-decoration: none; display: block; }
td.v .verdict { font-weight: 700; display: block; }
td.v .engine, td.v .anomaly, td.v .n { display: block; font-size: 12px; }
td.v-reproduced { background: var(--red-bg); color: #82071e; }
td.v-ruled-out { background: var(--green-bg); color: #116329; }
td.v-not-found { background: var(--grey-bg); color: #424a53; }
td.v-other-anomaly { background: var(--red-bg); color: #82071e; }
td.unexpected { outline: 3px solid var(--red); outline-offset: -3px; }
td.unexpected .verdict::after { content: " ✗ not as expected"; color: var(--red); }
td.empty { background: #fff; color: var(--muted); }
.legend span { display: inline-block; padding: 1px 8px; margin-right: 8px; border-radius: 4px; }
.legend .v-reproduced { background: var(--red-bg); }
.legend .v-ruled-out { background: var(--green-bg); }
.legend .v-not-found { background: var(--grey-bg); }
.legend .v-other-anomaly { background: var(--red-bg); }
article.cell { border: 1px solid var(--line); border-radius: 8px; padding: 16px 18px;
  margin: 18px 0; }
article.cell.unexpected { border: 2px solid var(--red); }
.pill { font-size: 12px; padding: 1px 8px; border-radius: 10px; margin-left: 6px;
  font-weight: 600; }
.pill.v-reproduced { background: var(--red-bg); color: #82071e; }
.pill.ok { background: var(--green-bg); color: #116329; }
.pill.no { background: var(--red); color: #fff; }
ul.anomalies { margin: 4px 0; padding-left: 20px; } ul.anomalies li.warning { color: var(--muted); }
pre.cmd { background: #f6f8fa; border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px;
  overflow-x: auto; user-select: all; }
.diagram { margin: 6px 0 0; overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; }
.diagram svg { display: block; }
details pre { max-height: 40em; overflow: auto; background: #f6f8fa; padding: 8px 12px; }
table.searches td { font-size: 13px; }
"""


def render_html(campaign: CampaignResult, *, version: str = "") -> str:
    """The whole report as one HTML document."""
    ids = [_anchor(index, cell) for index, cell in enumerate(campaign.cells)]
    status = "passed" if campaign.passed else "failed"
    unexpected = [i for i, cell in enumerate(campaign.cells) if not cell.passed]
    reproduced = [i for i, cell in enumerate(campaign.cells) if cell.caught]
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>tokenrace: {status}</title><style>{CSS}</style></head><body>",
        f'<header><h1>tokenrace report <span class="status {status}">{status.upper()}</span></h1>',
        f'<p class="meta">{escape(counts(campaign))}; {campaign.elapsed:.1f} s'
        + (f"; tokenrace {escape(version)}" if version else "")
        + ". Tokens appear only as fingerprints (<code>rt#…</code>, <code>at#…</code>).</p>",
        "</header>",
    ]
    if unexpected:
        links = ", ".join(_link(ids[i], campaign.cells[i]) for i in unexpected)
        parts.append(f'<p class="unexpected-list"><strong>Not as expected:</strong> {links}</p>')
    parts += _matrix(campaign, ids)
    if reproduced:
        parts.append('<section id="reproduced"><h2>Reproduced</h2>')
        parts.append(
            '<p class="note">Each diagram is the minimal failing run the search found: one lane '
            "per agent, then the locks, the credential stores and the token endpoint. Solid "
            "arrows are calls, dashed ones replies and reads; the request that spent a token "
            "is tinted amber, the one that presented it again red. Hover a row for its line "
            "of the history.</p>"
        )
        parts += [_article(ids[i], campaign.cells[i], i) for i in reproduced]
        parts.append("</section>")
    parts += _searches(campaign, ids)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _anchor(index: int, cell: EngineResult) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{cell.scenario}-{cell.engine}").strip("-").lower()
    return f"cell-{index}-{slug}"


def _link(anchor: str, cell: EngineResult) -> str:
    return f'<a href="#{anchor}">{escape(cell.scenario)} · {escape(cell.engine)}</a>'


def _matrix(campaign: CampaignResult, ids: list[str]) -> list[str]:
    grid = matrix(campaign.cells)
    head = "".join(f"<th>{escape(column)}</th>" for column in grid.columns)
    out = [
        '<section id="matrix"><h2>Matrix</h2>',
        '<p class="legend"><span class="v-reproduced">reproduced</span>'
        '<span class="v-ruled-out">ruled out</span><span class="v-not-found">not found</span>'
        '<span class="v-other-anomaly">other anomaly</span>'
        "a red outline marks a cell that is not what its scenario expects.</p>",
        f'<table class="matrix"><thead><tr><th>scenario</th>{head}</tr></thead><tbody>',
    ]
    for row in grid.rows:
        title = f"<small>{escape(row.title)}</small>" if row.title else ""
        cells = [f'<td class="scenario"><strong>{escape(row.scenario)}</strong>{title}</td>']
        for name, column in zip(grid.columns, row.cells, strict=True):
            if not column:
                cells.append('<td class="empty">–</td>')
                continue
            for i in column:
                cells.append(_matrix_cell(campaign.cells[i], ids[i], name == KNOWN_BUG))
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></section>")
    return out


def _matrix_cell(cell: EngineResult, anchor: str, name_engine: bool) -> str:
    verdict = cell.verdict.value
    classes = f"v v-{verdict.replace(' ', '-')}" + ("" if cell.passed else " unexpected")
    inner = f'<span class="verdict">{escape(verdict)}</span>'
    if name_engine:
        inner += f'<span class="engine">{escape(cell.engine)}</span>'
    if cell.caught:
        inner += f'<span class="anomaly">{escape(first_anomaly(cell) or "hang")}</span>'
    inner += f'<span class="n">{cell.examples} schedules</span>'
    tip = escape(cell.expectation_note() or cell.bound or cell.summary, quote=True)
    href = anchor if cell.caught else f"{anchor}-search"
    return f'<td class="{classes}" title="{tip}"><a href="#{href}">{inner}</a></td>'


def _article(anchor: str, cell: EngineResult, index: int) -> str:
    expected = "known bug" if cell.expectation is Expectation.BUGGY else "expected clean"
    ok = (
        '<span class="pill ok">as expected</span>'
        if cell.passed
        else ('<span class="pill no">not as expected</span>')
    )
    out = [
        f'<article class="cell{"" if cell.passed else " unexpected"}" id="{anchor}">',
        f"<h3>{escape(cell.scenario)} · {escape(cell.engine)}"
        f'<span class="pill v-reproduced">{escape(cell.verdict.value)}</span>{ok}</h3>',
    ]
    if cell.title:
        out.append(f"<p><strong>{escape(cell.title)}</strong></p>")
    if cell.expectation_note() or cell.hang is not None:
        note = cell.expectation_note() or str(cell.hang)
        out.append(f'<p class="unexpected-list">{escape(note)}</p>')
    first = cell.first_failure_at
    found = f"after {first} schedule{'' if first == 1 else 's'} " if first else ""
    out.append(
        f'<p class="meta">{escape(expected)}: {escape(cell.summary)}. {cell.strategy.value} '
        f"search: found {found}({cell.time_to_first_failure or 0:.2f} s), {cell.examples} "
        f"run in all, shrinking included; the minimal schedule forces {cell.preemptions} "
        f"context switch{'' if cell.preemptions == 1 else 'es'} beyond the default order.</p>"
    )
    out.append('<h4>Anomalies</h4><ul class="anomalies">')
    for anomaly, text in zip(cell.anomalies, anomaly_lines(cell), strict=True):
        out.append(f'<li class="{anomaly.severity.value}">{escape(text)}</li>')
    out.append("</ul>")
    if cell.schedule is not None:
        command = replay_command(cell.scenario, cell.engine, cell.schedule)
        out.append(f'<h4>Replay</h4><pre class="cmd"><code>{escape(command)}</code></pre>')
    if cell.failing_run is not None:
        diagram = _sequence.build(cell.failing_run, cell.anomalies)
        title = f"{cell.scenario} with {cell.engine}: the minimal failing run"
        svg = _svg.render_svg(diagram, prefix=f"d{index}", title=title)
        out.append(f'<h4>Minimal schedule</h4><figure class="diagram">{svg}</figure>')
    elif cell.diagram is not None:  # a real client's run: held, released, refused, stored
        title = f"{cell.scenario} with {cell.engine}: the run shown"
        svg = _svg.render_svg(cell.diagram, prefix=f"d{index}", title=title)
        out.append(f'<h4>The run</h4><figure class="diagram">{svg}</figure>')
    else:
        out.append('<p class="note">The failing run was not kept, so there is no diagram.</p>')
    if cell.history:
        lines = cell.history.count("\n")
        out.append(
            f"<details><summary>Full history ({lines} lines)</summary>"
            f"<pre>{escape(cell.history)}</pre></details>"
        )
    out.append("</article>")
    return "\n".join(out)


def _searches(campaign: CampaignResult, ids: list[str]) -> list[str]:
    out = [
        '<section id="searches"><h2>Every search</h2><table class="searches"><thead><tr>',
        "<th>scenario</th><th>engine</th><th>expected</th><th>verdict</th><th>strategy</th>"
        "<th>schedules</th><th>bound</th><th>time</th><th>ok</th></tr></thead><tbody>",
    ]
    for cell, anchor in zip(campaign.cells, ids, strict=True):
        verdict = cell.verdict.value
        out.append(
            f'<tr id="{anchor}-search"><td>{escape(cell.scenario)}</td>'
            f"<td>{escape(cell.engine)}</td><td>{cell.expectation.value}</td>"
            f'<td class="v v-{verdict.replace(" ", "-")}">{verdict}</td>'
            f"<td>{cell.strategy.value}</td><td>{cell.examples}</td>"
            f"<td>{escape(cell.bound)}</td><td>{cell.elapsed:.1f} s</td>"
            f"<td>{'yes' if cell.passed else '<strong>NO</strong>'}</td></tr>"
        )
    out.append("</tbody></table></section>")
    return out
