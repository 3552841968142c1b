"""Offscreen rendering to numpy arrays and PNG files, with no display.

On machines without a display VTK's EGL window works on Mesa's llvmpipe (see
shared/ENVIRONMENT.md); it is chosen unless the caller already picked a window class.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import vtk  # noqa: E402


def render_to_array(renderer: vtk.vtkRenderer, width: int, height: int, before_render=None) -> np.ndarray:
    """Render one renderer into an offscreen window; RGB uint8, row 0 at the top.

    `before_render(window)` may adapt the scene to the window (e.g. pick a ray caster)."""
    from viewer.render.offscreen_window import OffscreenWindow

    with OffscreenWindow(renderer, width, height, before_render) as window:
        return window.grab()


def write_png(rgb: np.ndarray, path: Path | str) -> Path:
    """PNG through VTK's writer (no extra imaging dependency)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w, c = rgb.shape
    image = vtk.vtkImageData()
    image.SetDimensions(w, h, 1)
    from vtk.util.numpy_support import numpy_to_vtk

    arr = numpy_to_vtk(np.ascontiguousarray(rgb[::-1]).reshape(-1, c), deep=True)
    image.GetPointData().SetScalars(arr)
    writer = vtk.vtkPNGWriter()
    writer.SetFileName(str(path))
    writer.SetInputData(image)
    writer.Write()
    return path
