"""`radsight export-mesh`: surface meshes of a study's segmentation (being built for issue 8)."""

from __future__ import annotations


def add_mesh_parser(sub) -> None:
    """Registers nothing yet."""
