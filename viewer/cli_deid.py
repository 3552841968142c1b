"""`radsight deid`: de-identified copies of studies for teaching (being built for issue 8)."""

from __future__ import annotations


def add_deid_parser(sub) -> None:
    """Registers nothing yet."""
