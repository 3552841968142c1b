"""Tests that need ../shared skip on a fresh clone and fail under RADSIGHT_REQUIRE_SHARED (CI):
a pytest subprocess on a one-test file that asks for shared_testdata, with the folder absent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, require: bool) -> subprocess.CompletedProcess:
    test = tmp_path / "test_needs_shared.py"
    test.write_text("def test_uses_shared(shared_testdata):\n    assert shared_testdata.is_dir()\n")
    env = {k: v for k, v in os.environ.items() if k != "RADSIGHT_REQUIRE_SHARED"}
    env["RADSIGHT_SHARED"] = str(tmp_path / "nowhere")
    if require:
        env["RADSIGHT_REQUIRE_SHARED"] = "1"
    # -p tests.conftest: the fixture under test, loaded as a plugin by the file outside tests/.
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           "-p", "tests.conftest", str(test)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_missing_shared_folder_skips_with_its_path(tmp_path):
    result = _run(tmp_path, require=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert f"shared test data not found at {tmp_path / 'nowhere' / 'testdata'}" in result.stdout


def test_missing_shared_folder_fails_when_required(tmp_path):
    result = _run(tmp_path, require=True)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 error" in result.stdout or "1 failed" in result.stdout
    assert "RADSIGHT_REQUIRE_SHARED is set" in result.stdout
