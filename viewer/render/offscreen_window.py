"""One offscreen window kept open for many pictures of one scene (turntables, several views).

Building a render window and its OpenGL context costs more than a small frame, and the ray
caster keeps its textures between renders, so a turntable renders every frame here.
"""

from __future__ import annotations

from viewer.render import offscreen  # noqa: F401  (picks the EGL window class with no display)

import numpy as np  # noqa: E402
import vtk  # noqa: E402
from vtk.util.numpy_support import vtk_to_numpy  # noqa: E402

# Largest picture side rendered in one window. Mesa's llvmpipe (EGL) allows 16384; 8192 px
# takes ~6.5 GB of memory there (about 100 bytes per pixel measured at 4000 px: 1.6 GB).
# vtkRenderLargeImage's tiling is not used: in VTK 9.7 it left seams between tiles of a ray-cast
# volume and drew 2-D captions at their unmagnified size, both wrong for teaching pictures.
MAX_SIDE_PX = 8192


class OffscreenWindow:
    """`with OffscreenWindow(renderer, w, h) as win: rgb = win.grab()`; RGB uint8, row 0 at the top."""

    def __init__(self, renderer: vtk.vtkRenderer, width: int, height: int, before_render=None):
        width, height = int(width), int(height)
        if not (1 <= width <= MAX_SIDE_PX and 1 <= height <= MAX_SIDE_PX):
            raise ValueError(f"picture {width} x {height} px is outside 1..{MAX_SIDE_PX} px a side "
                             "(offscreen window limit; memory grows by ~100 bytes a pixel)")
        self.renderer, self.width, self.height = renderer, width, height
        self.window = vtk.vtkRenderWindow()
        self.window.SetOffScreenRendering(1)
        self.window.SetSize(width, height)
        self.window.AddRenderer(renderer)
        if before_render is not None:
            before_render(self.window)
        self._grab = vtk.vtkWindowToImageFilter()
        self._grab.SetInput(self.window)
        self._grab.SetInputBufferTypeToRGB()
        self._grab.ReadFrontBufferOff()

    def grab(self) -> np.ndarray:
        self.window.Render()
        self._grab.Modified()  # read the new frame, not the cached one
        self._grab.Update()
        image = self._grab.GetOutput()
        w, h, _ = image.GetDimensions()
        return vtk_to_numpy(image.GetPointData().GetScalars()).reshape(h, w, 3)[::-1].copy()

    def close(self) -> None:
        self.window.RemoveRenderer(self.renderer)
        self.window.Finalize()

    def __enter__(self) -> OffscreenWindow:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
