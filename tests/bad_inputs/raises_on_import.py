"""A module whose top level raises."""

raise RuntimeError("configuration missing")
