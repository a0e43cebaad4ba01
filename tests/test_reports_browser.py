"""The HTML report of a real run, rendered by headless Chromium: the diagram is drawn.

Chromium is required, not optional: ``.ci/run`` installs Debian's ``chromium``
when it is missing, and the test fails (rather than skips) without it, so a
report that stopped rendering cannot pass unseen.  ``TOKENRACE_CHROMIUM``
names another binary (Chrome on macOS or Windows runners).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conformance._campaign import CampaignResult
from conformance._diagram import Tone
from conformance._matrix import default_cells, run_cells
from conformance._report import write_report
from conformance._svg import BANDS, COLOURS

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
]
CANDIDATES = [
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "chrome",
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
    r"C:\Program Files\Google\Chrome\Application\chrome.exe",
    r"C:\Program Files (x86)\Google\Chrome\Application\chrome.exe",
]


def chromium() -> str:
    override = os.environ.get("TOKENRACE_CHROMIUM")
    names = [override] if override else CANDIDATES
    for name in names:
        found = shutil.which(name) or (name if Path(name).is_file() else None)
        if found:
            return found
    pytest.fail(
        "headless Chromium is needed to check the HTML report and none was found "
        "(looked for " + ", ".join(names) + "). Install it: `apt-get install -y chromium` "
        "on Debian (.ci/run does this), or set TOKENRACE_CHROMIUM to a Chrome binary."
    )


def browse(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [chromium(), *FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of a real run: one scenario, its known bug reproduced, the reference clean."""
    campaign: CampaignResult = run_cells(default_cells(scenarios=["no-cross-process-lock"]), jobs=1)
    assert [cell.verdict.value for cell in campaign.cells] == ["reproduced", "ruled out"]
    directory = tmp_path_factory.mktemp("report")
    write_report(campaign, directory)
    return directory / "index.html"


class Elements(HTMLParser):
    """Counts elements by tag and by class, from the DOM Chromium serialized."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: Counter[str] = Counter()
        self.classes: Counter[str] = Counter()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        for name, value in attrs:
            if name == "class" and value:
                self.classes.update(value.split())

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_chromium_draws_the_sequence_diagram(report: Path, tmp_path: Path) -> None:
    dom = browse(report, tmp_path / "profile-dom", "--dump-dom").stdout
    elements = Elements()
    elements.feed(dom)
    assert elements.tags["svg"] == 1  # one reproduced cell, one diagram
    assert elements.classes["lane-agent"] == 3  # cli1, cli2, cli3
    assert elements.classes["lane-lock"] == 2  # the refresh lock and the store's write lock
    assert elements.classes["lane-store"] == 1
    assert elements.classes["lane-server"] == 1
    assert elements.classes["arrow"] >= 10  # requests, responses, reads, writes, lock calls
    assert elements.classes["tone-spend"] == 1
    assert elements.classes["tone-reuse"] == 1
    assert elements.classes["reuse-badge"] == 1
    assert elements.classes["reuse-link"] == 1
    text = " ".join(elements.text)
    assert "REUSE rt#357d1d40 (g0)" in text
    assert "tokenrace replay --scenario no-cross-process-lock --engine no-lock" in text


def test_chromium_screenshot_shows_the_reuse(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    browse(report, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1400,1800")
    image = decode_png(shot.read_bytes())
    assert (image.width, image.height) == (1400, 1800)
    # the reuse colour is used by the reuse arrow, its badge and bracket, and nothing else
    assert image.count(COLOURS[Tone.REUSE]) > 300, "the reuse arrow and badge were not drawn"
    assert image.count(BANDS[Tone.SPEND]) > 5000, "the band behind the spending request is missing"
    assert image.colours() > 200  # text, lanes, arrows: far from a blank page
    if os.environ.get("TOKENRACE_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["TOKENRACE_KEEP_SCREENSHOT"])


@dataclass(frozen=True, slots=True)
class Image:
    width: int
    height: int
    channels: int
    rows: tuple[bytes, ...]

    def count(self, hex_colour: str) -> int:
        """Pixels of exactly this colour."""
        pattern = re.compile(re.escape(bytes.fromhex(hex_colour.lstrip("#"))))
        return sum(
            1 for row in self.rows for m in pattern.finditer(row) if m.start() % self.channels == 0
        )

    def colours(self) -> int:
        """Distinct colours, on every fifth row."""
        step = self.channels
        return len({row[i : i + 3] for row in self.rows[::5] for i in range(0, len(row), step)})


def decode_png(data: bytes) -> Image:
    """An 8-bit RGB or RGBA PNG, unfiltered row by row (standard library only)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, chunks, header = 8, [], b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        offset += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", header[:10])
    assert depth == 8, depth
    assert colour_type in (2, 6), colour_type
    channels = 3 if colour_type == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * channels
    previous = bytearray(stride)
    rows = []
    for row in range(height):
        start = row * (stride + 1)
        line = bytearray(raw[start + 1 : start + 1 + stride])
        unfilter(raw[start], line, previous, channels)
        rows.append(bytes(line))
        previous = line
    return Image(width, height, channels, tuple(rows))


def unfilter(kind: int, line: bytearray, previous: bytearray, bpp: int) -> None:
    """Undo one row's PNG filter in place."""
    if kind == 2:  # Up, most rows: add bytewise without carries, on whole rows at once
        size = len(line)
        a, b = int.from_bytes(line, "big"), int.from_bytes(previous, "big")
        low, high = int.from_bytes(b"\x7f" * size, "big"), int.from_bytes(b"\x80" * size, "big")
        line[:] = (((a & low) + (b & low)) ^ ((a ^ b) & high)).to_bytes(size, "big")
        return
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        up = previous[i]
        corner = previous[i - bpp] if i >= bpp else 0
        if kind == 1:
            line[i] = (line[i] + left) & 255
        elif kind == 3:
            line[i] = (line[i] + (left + up) // 2) & 255
        elif kind == 4:
            p = left + up - corner
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
            best = left if pa <= pb and pa <= pc else up if pb <= pc else corner
            line[i] = (line[i] + best) & 255
