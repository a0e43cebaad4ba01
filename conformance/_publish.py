"""``python -m conformance._publish [FILE]``: run the default campaign, publish its matrix.

``reports/README.md`` (the default ``FILE``) shows visitors what the tool finds
without running it; this regenerates the table between its markers, and
leaves the file alone when no verdict changed.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from ._matrix import default_cells, run_cells
from ._summary import counts, publish


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    path = Path(args[0] if args else "reports/README.md")
    campaign = run_cells(default_cells())
    changed = publish(campaign, path)
    print(f"{path}: {'updated' if changed else 'already current'} ({counts(campaign)})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
