"""``python -m fake_oauth_server``: serve the fake OAuth server on loopback."""

from ._serve import main

raise SystemExit(main())
