"""``python -m simulator.real setup|status|host``: the same as ``tokenrace wine``."""

import sys

from ._commands import main

sys.exit(main(prog="python -m simulator.real"))
