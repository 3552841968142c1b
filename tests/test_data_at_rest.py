"""Patient data at rest: with the common umask 022, RadSight makes its data folder 0700 and its
database 0600 (SQLite's -wal/-shm files follow the database's mode); what is found looser on start
is tightened (the folder itself with a warning, what is inside it logged by top-level name
only); a symlink's target outside the folder is left alone."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _radsight(data: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RADSIGHT_DATA_DIR": str(data)}
    return subprocess.run([str(Path(sys.executable).parent / "radsight"), *args], capture_output=True, text=True,
                          timeout=120, env=env, preexec_fn=lambda: os.umask(0o022))


def test_new_data_folder_and_database_are_private(tmp_path):
    data = tmp_path / "home" / "RadSight"
    proc = _radsight(data, "audit", "verify")
    assert proc.returncode == 0, proc.stderr
    assert _mode(data) == 0o700
    files = sorted(data.glob("radsight.sqlite3*"))
    assert data / "radsight.sqlite3" in files
    for f in files:
        assert _mode(f) == 0o600, (f.name, oct(_mode(f)))
    assert proc.stderr == ""  # nothing needed repair


def test_looser_modes_are_repaired_on_start(tmp_path):
    data = tmp_path / "RadSight"
    assert _radsight(data, "audit", "verify").returncode == 0
    reports = data / "reports"
    reports.mkdir(mode=0o755)
    (reports / "report-ABC-v1.pdf").write_bytes(b"%PDF-1.7")
    (reports / "report-ABC-v1.pdf").chmod(0o644)
    tool = data / "models" / "run.sh"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    outside = tmp_path / "outside.txt"
    outside.write_text("not ours")
    outside.chmod(0o644)
    (data / "link").symlink_to(outside)
    data.chmod(0o755)
    (data / "radsight.sqlite3").chmod(0o644)

    proc = _radsight(data, "audit", "verify")
    assert proc.returncode == 0, proc.stderr
    assert _mode(data) == 0o700 and _mode(reports) == 0o700 and _mode(tool.parent) == 0o700
    assert _mode(data / "radsight.sqlite3") == 0o600
    assert _mode(reports / "report-ABC-v1.pdf") == 0o600
    assert _mode(tool) == 0o700  # still executable by its owner
    assert _mode(outside) == 0o644  # a link is not followed out of the folder
    assert proc.stderr == f"folder {data} was open to other users (mode 755): now 700\n"  # no file names

    again = _radsight(data, "audit", "verify")
    assert again.stderr == ""


def test_repair_is_logged_by_top_level_name_only(tmp_path, caplog):
    from viewer.core.private_files import repair_data_dir

    (tmp_path / "results" / "1.2.3").mkdir(parents=True)
    (tmp_path / "results" / "1.2.3" / "seg.dcm").write_bytes(b"")
    (tmp_path / "results" / "1.2.3" / "seg.dcm").chmod(0o644)
    (tmp_path / "results" / "1.2.3").chmod(0o755)
    with caplog.at_level(logging.INFO, logger="viewer.core.private_files"):
        assert repair_data_dir(tmp_path) == {"results/": 3}  # the folder, its subfolder, the file
    assert "removed other users' access from 3 items (results/ 3)" in caplog.text
    assert "1.2.3" not in caplog.text and "seg.dcm" not in caplog.text
    assert _mode(tmp_path / "results" / "1.2.3" / "seg.dcm") == 0o600


def test_store_outside_the_data_folder_is_private_too(tmp_path):
    from viewer.store import Store

    old = os.umask(0o022)
    try:
        with Store(tmp_path / "elsewhere.sqlite3") as store:
            store.audit("opened", study_uid="1.2.3", detail="x", user="reader")
    finally:
        os.umask(old)
    for f in tmp_path.glob("elsewhere.sqlite3*"):
        assert _mode(f) == 0o600, f.name
