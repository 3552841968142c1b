"""Shared fixtures: each test session gets its own RadSight data and settings folders; shared/testdata path."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RADSIGHT_SHARED", ROOT.parent / "shared")) / "testdata"


@pytest.fixture(autouse=True, scope="session")
def _isolated_data_dir(tmp_path_factory):
    """Never touch the user's real database from tests."""
    path = tmp_path_factory.mktemp("radsight-data")
    old = os.environ.get("RADSIGHT_DATA_DIR")
    os.environ["RADSIGHT_DATA_DIR"] = str(path)
    # Qt settings (layout, last folder) go to XDG_CONFIG_HOME: keep the user's own untouched.
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("config"))
    # The volume cache stays on (it is the path users take) but bounded: the real CTs add ~100 MB each.
    os.environ.setdefault("RADSIGHT_VOLUME_CACHE_MB", "2048")
    yield path
    if old is None:
        os.environ.pop("RADSIGHT_DATA_DIR", None)
    else:
        os.environ["RADSIGHT_DATA_DIR"] = old


@pytest.fixture(scope="session")
def shared_testdata() -> Path:
    """The real scans in ../shared/testdata. A fresh clone has none, so their tests skip there;
    CI sets RADSIGHT_REQUIRE_SHARED=1 so that a missing folder fails instead of passing quietly."""
    if not SHARED.is_dir():
        message = (f"shared test data not found at {SHARED} (set RADSIGHT_SHARED to the folder that holds "
                   "testdata/)")
        if os.environ.get("RADSIGHT_REQUIRE_SHARED"):
            pytest.fail(message + "; RADSIGHT_REQUIRE_SHARED is set, so this is a failure")
        pytest.skip(message)
    return SHARED


def need_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (the README's set-up installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs everything: a missing tool is a set-up bug there
        pytest.skip(message)
    return path
