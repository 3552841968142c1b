"""DESIGN.md's layering, enforced: the headless core never imports Qt or VTK (import-linter)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_core_packages_do_not_import_qt_or_vtk():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert exe, "import-linter is part of the test extras"
    proc = subprocess.run([exe, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "KEPT" in proc.stdout


def test_importing_the_core_loads_no_gui_module():
    code = ("import sys, viewer.core, viewer.dicom, viewer.store, viewer.cli, viewer.inference.explain, viewer.inference.explain_study; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'vtk', 'vtkmodules')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
