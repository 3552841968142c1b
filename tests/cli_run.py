"""Running the `radsight` command from tests, as a user's shell would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def analyze_json(study: Path, out: Path, timeout: int = 900) -> dict:
    """`radsight analyze STUDY --out OUT --json --quiet`; its JSON (asserting it succeeded)."""
    return json.loads(run_cli("analyze", str(study), "--out", str(out), "--json", "--quiet", timeout=timeout))


def run_cli(*args: str, timeout: int = 600) -> str:
    """`radsight ARGS...` as a user runs it; its stdout (asserting it succeeded)."""
    proc = subprocess.run([str(Path(sys.executable).parent / "radsight"), *args], capture_output=True, text=True,
                          timeout=timeout, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout
