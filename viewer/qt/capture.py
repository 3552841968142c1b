"""Pictures of what a view shows, read from its VTK render window.

vtkWindowToImageFilter, not QWidget.grab(): grabbing a QVTK widget returns garbage most of the
time under Xvfb (shared/ENVIRONMENT.md), while the render window's own back buffer is exact.
"""

from __future__ import annotations

import numpy as np
import vtk
from vtk.util.numpy_support import vtk_to_numpy


def capture_render_window(render_window: vtk.vtkRenderWindow) -> np.ndarray:
    """The window's image as RGB uint8 (rows, columns, 3), row 0 at the top."""
    render_window.Render()
    grab = vtk.vtkWindowToImageFilter()
    grab.SetInput(render_window)
    grab.SetInputBufferTypeToRGB()
    grab.ReadFrontBufferOff()  # the freshly rendered back buffer: no other window drawn over it
    grab.Update()
    image = grab.GetOutput()
    w, h, _ = image.GetDimensions()
    return vtk_to_numpy(image.GetPointData().GetScalars()).reshape(h, w, 3)[::-1].copy()
