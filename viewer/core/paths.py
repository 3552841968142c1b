"""Where RadSight keeps its per-user data (platformdirs), overridable for tests and kiosks; the
folder is the user's alone (viewer.core.private_files)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from viewer.core.private_files import private_dir


def user_data_dir() -> Path:
    """$RADSIGHT_DATA_DIR, else the platform's user data folder (e.g. ~/.local/share/RadSight)."""
    override = os.environ.get("RADSIGHT_DATA_DIR")
    path = Path(override) if override else Path(platformdirs.user_data_dir("RadSight", "RadSight"))
    return private_dir(path)
