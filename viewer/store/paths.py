"""The database's default location, in the user data folder."""

from __future__ import annotations

from pathlib import Path

from viewer.core.paths import user_data_dir

__all__ = ["default_database_path", "user_data_dir"]


def default_database_path() -> Path:
    return user_data_dir() / "radsight.sqlite3"
