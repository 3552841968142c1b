"""One 2-D view of a volume: reslice, window/level, label and heatmap overlays, orientation letters.

The same scene renders offscreen (`radsight render`, tests) and inside the Qt viewer. Plane
coordinates (u, v) are millimetres along the view's screen-right and screen-up LPS axes; one
output sample is `sample_mm` wide in both, so coronal and sagittal views are isotropic.
"""

from __future__ import annotations

import numpy as np
import vtk

from viewer.core.label_style import DEFAULT_LABEL_COLORS, LabelStyle
from viewer.core.orientation import edge_labels, plane_axes
from viewer.core.volume import Volume
from viewer.render.vtk_image import lps_to_input_matrix, to_vtk_image, vtk_matrix


class SliceScene:
    """A renderer showing one plane of a volume; `set_position` moves the plane through a point."""

    def __init__(self, volume: Volume, view: str = "axial", right=None, up=None):
        self.volume = volume
        if right is None:
            right, up, _ = plane_axes(view)
        self.view = view
        self._set_axes(right, up)
        self.sample_mm = float(min(volume.spacing))
        self._image = to_vtk_image(volume)
        self.renderer = vtk.vtkRenderer()
        self.renderer.SetBackground(0, 0, 0)
        self._reslices: list[tuple[vtk.vtkImageReslice, Volume]] = []
        grey = self._add_reslice(self._image, volume, linear=True)
        self._wl = vtk.vtkImageMapToWindowLevelColors()
        self._wl.SetInputConnection(grey.GetOutputPort())
        self._wl.SetOutputFormatToRGB()
        # Overlays are blended into the grey image on the CPU, so each frame uploads one texture:
        # a second image actor per overlay doubled the frame time on software OpenGL.
        self._blend = vtk.vtkImageBlend()
        self._blend.AddInputConnection(self._wl.GetOutputPort())
        self.image_actor = vtk.vtkImageActor()
        self.image_actor.GetMapper().SetInputConnection(self._blend.GetOutputPort())
        self.image_actor.InterpolateOff()
        self.renderer.AddActor(self.image_actor)
        self.overlay_layers: list[vtk.vtkImageMapToColors] = []
        self.colorbars: list[vtk.vtkScalarBarActor] = []
        self._letters: dict[str, vtk.vtkTextActor] = {}
        self._add_orientation_letters()
        wc, ww = volume.display.window_center, volume.display.window_width
        self.set_window(ww or 400.0, wc if wc is not None else 40.0)
        self._extent_uv = self._plane_extent()
        # A millimetre ruler along the bottom edge (distance labels, not a 1:N ratio).
        self.scale_bar = vtk.vtkLegendScaleActor()
        self.scale_bar.AllAxesOff()
        self.scale_bar.BottomAxisVisibilityOn()
        self.scale_bar.LegendVisibilityOff()
        self.scale_bar.SetLabelModeToDistance()
        self.scale_bar.GetBottomAxis().GetLabelTextProperty().SetFontSize(11)
        self.renderer.AddViewProp(self.scale_bar)
        self.set_position(np.mean([volume.index_to_lps(c) for c in self._corners()], axis=0))

    def _set_axes(self, right, up) -> None:
        right = np.asarray(right, float) / np.linalg.norm(right)
        up = np.asarray(up, float)
        up = up - (up @ right) * right
        up = up / np.linalg.norm(up)
        self.right, self.up, self.normal = right, up, np.cross(right, up)
        # Positive scrolling (Up, wheel up) moves superior in axial views: the normal flipped
        # whenever it points inferior (coronal: anterior, sagittal: patient left).
        self.scroll_direction = -self.normal if self.normal[2] < -1e-6 else self.normal

    def rotate(self, degrees: float, about: str = "up") -> None:
        """Oblique MPR: turn the plane about its screen 'up' or 'right' axis through the crosshair."""
        axis = self.up if about == "up" else self.right
        angle = np.radians(degrees)
        k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        rotation = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k  # Rodrigues
        self.set_axes(rotation @ self.right, rotation @ self.up)

    def set_axes(self, right, up) -> None:
        """Show the plane spanned by these screen axes (LPS) through the current position."""
        self._set_axes(right, up)
        self._extent_uv = self._plane_extent()
        for edge, text in edge_labels(self.right, self.up).items():
            self._letters[edge].SetInput(text)
        self.set_position(self.position)

    # geometry ---------------------------------------------------------------------------
    def _corners(self) -> list[tuple[float, float, float]]:
        nz, ny, nx = self.volume.shape
        return [(i, j, k) for i in (0, nx - 1) for j in (0, ny - 1) for k in (0, nz - 1)]

    def _plane_extent(self) -> tuple[float, float, float, float]:
        pts = np.array([self.volume.index_to_lps(c) for c in self._corners()])
        u, v = pts @ self.right, pts @ self.up
        return float(u.min()), float(u.max()), float(v.min()), float(v.max())

    @property
    def normal_range(self) -> tuple[float, float]:
        pts = np.array([self.volume.index_to_lps(c) for c in self._corners()])
        d = pts @ self.normal
        return float(d.min()), float(d.max())

    @property
    def slice_step(self) -> float:
        """Spacing of the volume along the view normal (the axis most aligned with it)."""
        cos = np.abs(self.volume.direction.T @ self.normal)
        return float(self.volume.spacing[int(np.argmax(cos))])

    def output_size(self) -> tuple[int, int]:
        u0, u1, v0, v1 = self._extent_uv
        return int(round((u1 - u0) / self.sample_mm)) + 1, int(round((v1 - v0) / self.sample_mm)) + 1

    def _add_reslice(self, image: vtk.vtkImageData, volume: Volume, linear: bool) -> vtk.vtkImageReslice:
        reslice = vtk.vtkImageReslice()
        reslice.SetInputData(image)
        reslice.SetOutputDimensionality(2)
        if linear:
            reslice.SetInterpolationModeToLinear()
        else:
            reslice.SetInterpolationModeToNearestNeighbor()
        reslice.SetBackgroundLevel(float(np.min(volume.voxels)) if linear else 0.0)
        self._reslices.append((reslice, volume))
        return reslice

    def set_position(self, point_lps) -> None:
        """Move the plane so that it passes through `point_lps` (the crosshair)."""
        self.position = np.asarray(point_lps, float)
        d = float(self.position @ self.normal)
        axes = np.eye(4)
        axes[:3, 0], axes[:3, 1], axes[:3, 2] = self.right, self.up, self.normal
        axes[:3, 3] = d * self.normal
        u0, _, v0, _ = self._extent_uv
        nu, nv = self.output_size()
        for reslice, volume in self._reslices:
            reslice.SetResliceAxes(vtk_matrix(lps_to_input_matrix(volume) @ axes))
            reslice.SetOutputSpacing(self.sample_mm, self.sample_mm, 1.0)
            reslice.SetOutputOrigin(u0, v0, 0.0)
            reslice.SetOutputExtent(0, nu - 1, 0, nv - 1, 0, 0)
            reslice.Modified()

    def step(self, slices: int) -> None:
        """Move the plane by whole slices along `scroll_direction`, staying inside the volume."""
        sign = float(self.scroll_direction @ self.normal)
        lo, hi = self.normal_range
        d = float(np.clip(self.position @ self.normal + sign * slices * self.slice_step, lo, hi))
        self.set_position(self.position + (d - self.position @ self.normal) * self.normal)

    def plane_to_lps(self, u: float, v: float) -> np.ndarray:
        return u * self.right + v * self.up + float(self.position @ self.normal) * self.normal

    # appearance -------------------------------------------------------------------------
    def set_window(self, width: float, level: float) -> None:
        self.window = (float(width), float(level))
        invert = self.volume.display.invert_grey
        self._wl.SetWindow(-float(width) if invert else float(width))
        self._wl.SetLevel(float(level))

    def add_labels(self, labels: Volume, styles: dict[int, LabelStyle] | None = None,
                   outline: bool = False) -> vtk.vtkImageMapToColors:
        """A label mask (integer values, 0 = none) drawn over the image with per-label colours."""
        values = [int(v) for v in np.unique(labels.voxels) if v != 0]
        styles = styles or {v: LabelStyle(DEFAULT_LABEL_COLORS[n % len(DEFAULT_LABEL_COLORS)]) for n, v in enumerate(values)}
        lut = vtk.vtkLookupTable()
        top = max(values + [1])
        lut.SetNumberOfTableValues(top + 1)
        lut.SetTableRange(0, top)
        for v in range(top + 1):
            style = styles.get(v)
            if v == 0 or style is None or not style.visible:
                lut.SetTableValue(v, 0, 0, 0, 0)
            else:
                lut.SetTableValue(v, *style.color, style.opacity)
        lut.Build()
        reslice = self._add_reslice(to_vtk_image(labels, "labels"), labels, linear=False)
        source = reslice
        if outline:
            source = _outline_filter(reslice)
        return self._add_layer(source, lut)

    def _add_layer(self, source, lut: vtk.vtkLookupTable) -> vtk.vtkImageMapToColors:
        """Colour an overlay's resliced values (RGBA; alpha from the table) and blend it in."""
        colors = vtk.vtkImageMapToColors()
        colors.SetLookupTable(lut)
        colors.SetOutputFormatToRGBA()
        colors.SetInputConnection(source.GetOutputPort())
        self._blend.AddInputConnection(colors.GetOutputPort())
        self._blend.SetOpacity(self._blend.GetNumberOfInputConnections(0) - 1, 1.0)
        self.overlay_layers.append(colors)
        self.set_position(self.position)
        return colors

    def clear_overlays(self) -> None:
        """Remove every label and heatmap overlay (and colour bar); the grey image stays."""
        self._blend.RemoveAllInputConnections(0)
        self._blend.AddInputConnection(self._wl.GetOutputPort())
        self._reslices = self._reslices[:1]
        self.overlay_layers.clear()
        for bar in self.colorbars:
            self.renderer.RemoveViewProp(bar)
        self.colorbars.clear()

    def add_heatmap(self, heatmap: Volume, colormap: str = "inferno", opacity: float = 0.6,
                    threshold: float | None = None, value_range: tuple[float, float] | None = None,
                    colorbar_title: str = "") -> vtk.vtkImageMapToColors:
        """A scalar map (e.g. Grad-CAM) in a matplotlib colour map; values below `threshold` are
        transparent. A colour bar shows the mapping."""
        values = heatmap.voxels
        lo, hi = value_range or (float(np.nanmin(values)), float(np.nanmax(values)))
        if hi <= lo:
            hi = lo + 1.0
        lut = colormap_lut(colormap, lo, hi, opacity, threshold)
        reslice = self._add_reslice(to_vtk_image(heatmap, "heatmap"), heatmap, linear=True)
        reslice.SetBackgroundLevel(lo - 1.0)  # outside the map: below the range, transparent
        colors = self._add_layer(reslice, lut)
        bar = vtk.vtkScalarBarActor()
        bar.SetLookupTable(lut)
        bar.SetTitle(colorbar_title)
        bar.SetNumberOfLabels(3)
        bar.SetMaximumWidthInPixels(60)
        bar.SetPosition(0.88, 0.15)
        bar.SetWidth(0.1)
        bar.SetHeight(0.6)
        bar.GetLabelTextProperty().SetFontSize(11)
        self.renderer.AddViewProp(bar)
        self.colorbars.append(bar)
        return colors

    def _add_orientation_letters(self) -> None:
        labels = edge_labels(self.right, self.up)
        anchors = {"left": (0.01, 0.5, 0, 1), "right": (0.99, 0.5, 2, 1), "top": (0.5, 0.93, 1, 2),
                   "bottom": (0.5, 0.01, 1, 0)}
        for edge, (x, y, h, v) in anchors.items():
            actor = vtk.vtkTextActor()
            actor.SetInput(labels[edge])
            prop = actor.GetTextProperty()
            prop.SetFontSize(16)
            prop.SetColor(1.0, 0.85, 0.2)
            prop.SetJustification(h)
            prop.SetVerticalJustification(v)
            prop.BoldOn()
            actor.GetPositionCoordinate().SetCoordinateSystemToNormalizedViewport()
            actor.SetPosition(x, y)
            self.renderer.AddViewProp(actor)
            self._letters[edge] = actor

    @property
    def orientation_letters(self) -> dict[str, str]:
        return {edge: actor.GetInput() for edge, actor in self._letters.items()}

    def fit_camera(self, width_px: int, height_px: int) -> None:
        """Parallel camera showing the whole plane extent, centred, aspect preserved."""
        u0, u1, v0, v1 = self._extent_uv
        cam = self.renderer.GetActiveCamera()
        cam.ParallelProjectionOn()
        cu, cv = (u0 + u1) / 2, (v0 + v1) / 2
        cam.SetFocalPoint(cu, cv, 0)
        cam.SetPosition(cu, cv, 1000)
        cam.SetViewUp(0, 1, 0)
        half_h = (v1 - v0 + self.sample_mm) / 2
        half_w = (u1 - u0 + self.sample_mm) / 2
        cam.SetParallelScale(max(half_h, half_w * height_px / max(width_px, 1)))
        self.renderer.ResetCameraClippingRange()


def colormap_lut(name: str, lo: float, hi: float, opacity: float, threshold: float | None) -> vtk.vtkLookupTable:
    """A VTK lookup table from a matplotlib colour map; entries below `threshold` transparent."""
    from matplotlib import colormaps

    try:
        cmap = colormaps[name]
    except KeyError:
        raise ValueError(f"unknown colour map {name!r}") from None
    lut = vtk.vtkLookupTable()
    n = 256
    lut.SetNumberOfTableValues(n)
    lut.SetTableRange(lo, hi)
    for k in range(n):
        value = lo + (hi - lo) * k / (n - 1)
        r, g, b, _ = cmap(k / (n - 1))
        alpha = 0.0 if threshold is not None and value < threshold else opacity
        lut.SetTableValue(k, r, g, b, alpha)
    lut.UseBelowRangeColorOn()
    lut.SetBelowRangeColor(0, 0, 0, 0)
    lut.Build()
    return lut


def _outline_filter(reslice: vtk.vtkImageReslice):
    """Label boundaries only: a pixel keeps its label where a 3x3 neighbour differs."""
    dilate = vtk.vtkImageContinuousDilate3D()
    dilate.SetInputConnection(reslice.GetOutputPort())
    dilate.SetKernelSize(3, 3, 1)
    erode = vtk.vtkImageContinuousErode3D()
    erode.SetInputConnection(reslice.GetOutputPort())
    erode.SetKernelSize(3, 3, 1)
    diff = vtk.vtkImageMathematics()
    diff.SetOperationToSubtract()
    diff.SetInputConnection(0, dilate.GetOutputPort())
    diff.SetInputConnection(1, erode.GetOutputPort())
    edge = vtk.vtkImageBinaryThreshold()  # vtkImageMask wants an unsigned char mask
    edge.SetInputConnection(diff.GetOutputPort())
    edge.SetThresholdFunction(vtk.vtkImageBinaryThreshold.THRESHOLD_UPPER)
    edge.SetLowerThreshold(0.5)
    edge.SetInValue(1)
    edge.SetOutValue(0)
    edge.SetOutputScalarTypeToUnsignedChar()
    mask = vtk.vtkImageMask()
    mask.SetInputConnection(0, reslice.GetOutputPort())  # image
    mask.SetInputConnection(1, edge.GetOutputPort())  # mask
    return mask
