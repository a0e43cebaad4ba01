"""Draw a ``_sequence.Diagram`` as standalone SVG: lanes, arrows, notes, the reuse marked.

Everything is presentation attributes (no CSS, no script, no font files), so
the same markup works inline in ``index.html`` and saved as an ``.svg``; ids
carry a prefix so several diagrams can share one page.  Text widths are
estimated, not measured: labels may overlap a neighbouring lane, never the
page edge.
"""

from __future__ import annotations

from html import escape

from ._diagram import Diagram, Lane, LaneKind, Row, RowKind, Tone

GUTTER = 52  # step numbers
LANE_W = 150  # narrower, down to 116, when there are many lanes
HEAD_H = 46
ROW_H = 26
DETAIL_H = 12  # extra height of a row with a second line
MARKS_MIN = 60  # the anomaly column on the right, widened to fit what it says
CHAR_W = 6.1  # average advance of an 11px sans-serif character
LINK_LABEL = " spent, then reused"  # after the token's fingerprint, beside the bracket
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"

COLOURS = {
    Tone.NORMAL: "#24292f",
    Tone.MUTED: "#8c959f",
    Tone.SPEND: "#9a6700",
    Tone.REUSE: "#c4001d",  # used for nothing else: a test looks for it in a screenshot
    Tone.BAD: "#cf222e",
    Tone.FAULT: "#8250df",
}
BANDS = {Tone.SPEND: "#fff8c5", Tone.REUSE: "#ffebe9"}
LANE_COLOURS = {
    LaneKind.AGENT: "#0969da",
    LaneKind.LOCK: "#6e7781",
    LaneKind.STORE: "#953800",
    LaneKind.SERVER: "#1f2328",
}
LANE_FILLS = {
    LaneKind.AGENT: "#ddf4ff",
    LaneKind.LOCK: "#eaeef2",
    LaneKind.STORE: "#fff1e5",
    LaneKind.SERVER: "#eaeef2",
}


def render_svg(diagram: Diagram, *, prefix: str = "seq", title: str = "") -> str:
    """The diagram as one ``<svg>`` element; ``prefix`` keeps its ids unique on a page."""
    lane_w = max(104, min(LANE_W, 1300 // max(1, len(diagram.lanes))))
    xs = {lane.key: GUTTER + lane_w * i + lane_w // 2 for i, lane in enumerate(diagram.lanes)}
    edge = GUTTER + lane_w * len(diagram.lanes)  # where the lanes end and the marks begin
    width = edge + _marks_width(diagram, lane_w)
    ys: list[int] = []
    y = HEAD_H + 18
    for row in diagram.rows:
        y += _height(row)
        ys.append(y - (DETAIL_H if row.detail else 0) - 8)
    height = y + (28 if diagram.hidden else 14)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="sequence" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{prefix}-title" font-family="{escape(FONT)}" font-size="11">',
        f'<title id="{prefix}-title">{escape(title or "The minimal failing run")}</title>',
        _defs(prefix),
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    out += _bands(diagram.rows, ys, width)
    out += _lifelines(diagram.lanes, xs, height, lane_w)
    out += _spend_links(diagram.rows, ys, xs)
    for row, row_y in zip(diagram.rows, ys, strict=True):
        out.append(_row(row, row_y, xs, edge, prefix))
    if diagram.hidden:
        out.append(
            f'<text x="{GUTTER}" y="{height - 10}" fill="{COLOURS[Tone.MUTED]}">… '
            f"{diagram.hidden} more rows: see the full history</text>"
        )
    out.append("</svg>")
    return "\n".join(out)


def _height(row: Row) -> int:
    return ROW_H + (DETAIL_H if row.detail else 0)


def _defs(prefix: str) -> str:
    markers = [
        f'<marker id="{prefix}-{tone.value}" viewBox="0 0 10 10" refX="9" refY="5" '
        f'markerUnits="userSpaceOnUse" markerWidth="9" markerHeight="9" '
        'orient="auto-start-reverse">'
        f'<path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
        for tone, colour in COLOURS.items()
    ]
    return "<defs>" + "".join(markers) + "</defs>"


def _bands(rows: tuple[Row, ...], ys: list[int], width: int) -> list[str]:
    """A tinted band behind the spend and the reuse rows."""
    out = []
    for row, y in zip(rows, ys, strict=True):
        band = BANDS.get(row.tone)
        if band is not None:
            top = y - ROW_H + 8
            out.append(
                f'<rect class="band-{row.tone.value}" x="0" y="{top}" width="{width}" '
                f'height="{_height(row)}" fill="{band}"/>'
            )
    return out


def _lifelines(lanes: tuple[Lane, ...], xs: dict[str, int], height: int, lane_w: int) -> list[str]:
    out = []
    for lane in lanes:
        x, colour, fill = xs[lane.key], LANE_COLOURS[lane.kind], LANE_FILLS[lane.kind]
        dash = ' stroke-dasharray="4 3"' if lane.kind is LaneKind.LOCK else ""
        left = x - lane_w // 2 + 6
        out.append(
            f'<g class="lane lane-{lane.kind.value}"><title>{escape(lane.title)}</title>'
            f'<line x1="{x}" y1="{HEAD_H}" x2="{x}" y2="{height - 6}" stroke="{colour}" '
            f'stroke-opacity="0.45" stroke-width="1.5"{dash}/>'
            f'<rect x="{left}" y="6" width="{lane_w - 12}" height="{HEAD_H - 10}" rx="6" '
            f'fill="{fill}" stroke="{colour}"/>'
            f'<text x="{x}" y="20" text-anchor="middle" font-size="9" fill="{colour}" '
            f'letter-spacing="0.5">{escape((lane.caption or lane.kind.value).upper())}</text>'
            f'<text x="{x}" y="34" text-anchor="middle" font-weight="600" fill="#1f2328">'
            f"{escape(_fit(lane.label, lane_w - 14))}</text></g>"
        )
    return out


def _fit(text: str, room: float) -> str:
    """``text`` cut with an ellipsis to fit ``room`` pixels of bold 11px text."""
    most = max(4, int(room / (CHAR_W + 0.6)))
    return text if len(text) <= most else text[: most - 1] + "…"


def _spend_links(rows: tuple[Row, ...], ys: list[int], xs: dict[str, int]) -> list[str]:
    """A bracket beside the server joining the request that spent a token to its reuse."""
    out = []
    spent = [(row, y) for row, y in zip(rows, ys, strict=True) if row.tone is Tone.SPEND]
    reuses = [(row, y) for row, y in zip(rows, ys, strict=True) if row.tone is Tone.REUSE]
    for spend, top in spent:
        token = spend.detail.split("spends ", 1)[-1].split(";")[0].split(" ")[0]
        matching = [y for row, y in reuses if token and token in row.label and y > top]
        if not matching or spend.target not in xs:
            continue
        x, bottom, colour = xs[spend.target] + 16, matching[0], COLOURS[Tone.REUSE]
        out.append(
            f'<g class="reuse-link"><path d="M{x - 6},{top} H{x} V{bottom} H{x - 6}" '
            f'fill="none" stroke="{colour}" stroke-width="1.5" stroke-dasharray="3 2"/>'
            f'<text x="{x + 4}" y="{(top + bottom) // 2}" fill="{colour}" font-size="10">'
            f"{escape(token)}{LINK_LABEL}</text></g>"
        )
    return out


def _marks_width(diagram: Diagram, lane_w: int) -> int:
    """Room right of the lanes for the anomaly names and the spend-to-reuse bracket's label."""
    marks = [len(", ".join(row.marks)) * CHAR_W + 24 for row in diagram.rows if row.marks]
    links = [len(LINK_LABEL) + 11 for row in diagram.rows if row.tone is Tone.SPEND]
    needed = marks + [n * CHAR_W * 10 / 11 + 24 - lane_w / 2 for n in links]
    return int(max([MARKS_MIN, *needed]))


def _row(row: Row, y: int, xs: dict[str, int], edge: int, prefix: str) -> str:
    colour = COLOURS[row.tone]
    label = row.label + (f" ×{row.repeat}" if row.repeat > 1 else "")
    tooltip = row.tooltip + (
        f" (and {row.repeat - 1} more like it, until t+{row.until:g}s)"
        if row.repeat > 1 and row.until is not None
        else ""
    )
    parts = [
        f'<g class="row row-{row.kind.value} tone-{row.tone.value}" data-step="{row.step}">',
        f"<title>{escape(tooltip)}</title>",
    ]
    if row.kind is RowKind.DIVIDER:
        parts.append(
            f'<line x1="{GUTTER}" y1="{y}" x2="{edge}" y2="{y}" stroke="{colour}" '
            f'stroke-opacity="0.5" stroke-dasharray="6 4"/>'
            f'<text x="{GUTTER + 4}" y="{y - 4}" font-size="10" fill="{colour}">'
            f"{escape(label)}</text>"
        )
    else:
        parts.append(
            f'<text x="{GUTTER - 8}" y="{y + 4}" text-anchor="end" font-size="10" '
            f'fill="{COLOURS[Tone.MUTED]}">{row.step}</text>'
        )
        if row.kind is RowKind.NOTE:
            parts.append(_note(label, xs[row.source], y, colour, row.tone))
        else:
            parts.append(_arrow(row, label, xs[row.source], xs[row.target], y, edge, prefix))
    if row.marks:
        parts.append(
            f'<text class="mark" x="{edge + 12}" y="{y + 4}" font-weight="600" '
            f'fill="{COLOURS[Tone.BAD]}">{escape(", ".join(row.marks))}</text>'
        )
    parts.append("</g>")
    return "".join(parts)


def _note(label: str, x: int, y: int, colour: str, tone: Tone) -> str:
    box = int(len(label) * CHAR_W) + 14
    x = max(x, GUTTER + box // 2)  # a note on the first lane stays clear of the step numbers
    fill = "#ffffff" if tone in (Tone.MUTED, Tone.NORMAL) else "#fff0f0"
    if tone is Tone.FAULT:
        fill = "#fbefff"
    return (
        f'<rect x="{x - box // 2}" y="{y - 9}" width="{box}" height="18" rx="9" fill="{fill}" '
        f'stroke="{colour}"/><text x="{x}" y="{y + 4}" text-anchor="middle" fill="{colour}">'
        f"{escape(label)}</text>"
    )


def _arrow(row: Row, label: str, x1: int, x2: int, y: int, edge: int, prefix: str) -> str:
    colour = COLOURS[row.tone]
    heavy = row.tone in (Tone.REUSE, Tone.SPEND)
    dash = ' stroke-dasharray="5 3"' if row.dashed else ""
    shaft = 2.5 if heavy else 1.3
    end = x2 - 6 if x2 > x1 else x2 + 6
    parts = [
        f'<line class="arrow" x1="{x1}" y1="{y}" x2="{end}" y2="{y}" stroke="{colour}" '
        f'stroke-width="{shaft}"{dash} marker-end="url(#{prefix}-{row.tone.value})"/>',
        _label(label, (x1 + x2) / 2, y - 5, edge, colour, bold=heavy),
    ]
    if row.detail:
        parts.append(_label(row.detail, (x1 + x2) / 2, y + 13, edge, "#57606a", size=10))
    if row.tone is Tone.REUSE:  # the badge a reader looks for first
        bx = min(x1, x2) + 10
        parts.append(
            f'<rect class="reuse-badge" x="{bx}" y="{y - 24}" width="50" height="14" rx="3" '
            f'fill="{colour}"/><text x="{bx + 25}" y="{y - 14}" text-anchor="middle" '
            f'font-size="9" font-weight="700" fill="#ffffff">REUSED</text>'
        )
    return "".join(parts)


def _label(
    text: str,
    centre: float,
    y: float,
    edge: int,
    colour: str,
    *,
    size: int = 11,
    bold: bool = False,
) -> str:
    """Text centred over an arrow, pulled in so it never leaves the drawing."""
    half = len(text) * CHAR_W * size / 22
    centre = max(GUTTER + half + 2, min(edge - half, centre))
    weight = ' font-weight="600"' if bold else ""
    return (
        f'<text x="{centre:.0f}" y="{y:.0f}" text-anchor="middle" font-size="{size}" '
        f'fill="{colour}"{weight} stroke="#ffffff" stroke-width="3" paint-order="stroke">'
        f"{escape(text)}</text>"
    )
