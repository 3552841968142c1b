"""Where RadSight keeps its per-user data (platformdirs), overridable for tests and kiosks."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def user_data_dir() -> Path:
    """$RADSIGHT_DATA_DIR, else the platform's user data folder (e.g. ~/.local/share/RadSight)."""
    override = os.environ.get("RADSIGHT_DATA_DIR")
    path = Path(override) if override else Path(platformdirs.user_data_dir("RadSight", "RadSight"))
    path.mkdir(parents=True, exist_ok=True)
    return path
