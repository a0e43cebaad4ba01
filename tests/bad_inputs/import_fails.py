"""A module that fails to import (a mistake in the user's code)."""

import no_such_package_anywhere  # noqa: F401
