"""What tests expect of the host they run on."""

from __future__ import annotations

import os

#: a private file's mode as ``stat`` reads it: 0600 on POSIX; Windows keeps no mode
#: bits but read-only (a file is private by its directory's ACL), so it reads 0666
PRIVATE_MODE = 0o600 if os.name == "posix" else 0o666
