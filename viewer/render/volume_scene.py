"""3-D view: volume rendering with CT presets (bone, lung, soft tissue, MIP) and label surfaces.

The volume's rotation and origin go into the vtkVolume's user matrix, so the picture is in
patient LPS millimetres like every other view. On software OpenGL the ray caster samples
coarsely while the camera moves (AutoAdjustSampleDistances) and finely when it stops.
"""

from __future__ import annotations

import numpy as np
import vtk

from viewer.core.volume import Volume
from viewer.core.label_style import DEFAULT_LABEL_COLORS, LabelStyle
from viewer.render.vtk_image import to_vtk_image, vtk_matrix

# (HU, opacity) and (HU, r, g, b) control points.
VOLUME_PRESETS: dict[str, dict] = {
    "ct-bone": {"opacity": [(-1000, 0), (150, 0), (300, 0.15), (700, 0.6), (1500, 0.85)],
                "color": [(-1000, 0, 0, 0), (150, 0.55, 0.25, 0.15), (300, 0.9, 0.75, 0.6), (1500, 1, 1, 0.95)]},
    "ct-lung": {"opacity": [(-1000, 0), (-900, 0), (-750, 0.08), (-500, 0.15), (-200, 0), (200, 0), (600, 0.4)],
                "color": [(-1000, 0.3, 0.3, 0.5), (-750, 0.6, 0.7, 0.9), (-300, 0.9, 0.6, 0.5), (600, 1, 1, 0.9)]},
    "ct-soft-tissue": {"opacity": [(-1000, 0), (-150, 0), (0, 0.1), (100, 0.25), (400, 0.5), (1000, 0.8)],
                       "color": [(-1000, 0, 0, 0), (-150, 0.6, 0.3, 0.2), (40, 0.85, 0.45, 0.35), (400, 1, 0.9, 0.8)]},
    "mip": {"opacity": [(-1000, 0), (3000, 1)], "color": [(-1000, 0, 0, 0), (3000, 1, 1, 1)]},
}


def is_software_opengl(render_window) -> bool:
    render_window.Render()
    text = render_window.ReportCapabilities() or ""
    return any(word in text for word in ("llvmpipe", "softpipe", "SWR", "Software Rasterizer"))


def rigid_matrix(volume: Volume) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = volume.direction
    m[:3, 3] = volume.origin
    return m


class VolumeScene:
    def __init__(self, volume: Volume, preset: str = "ct-bone"):
        self.volume = volume
        self.renderer = vtk.vtkRenderer()
        self.renderer.SetBackground(0.05, 0.05, 0.08)
        self._image = to_vtk_image(volume)
        self.mapper = vtk.vtkSmartVolumeMapper()
        self.mapper.SetInputData(self._image)
        self.mapper.AutoAdjustSampleDistancesOn()  # coarser while interacting
        self.actor = vtk.vtkVolume()
        self.actor.SetMapper(self.mapper)
        self.actor.SetUserMatrix(vtk_matrix(rigid_matrix(volume)))
        self.renderer.AddVolume(self.actor)
        self.surfaces: list[vtk.vtkActor] = []
        self.set_preset(preset)
        self.reset_camera()

    def adapt_to(self, render_window) -> None:
        """On software OpenGL (llvmpipe) VTK's CPU ray caster is ~3x faster than the GPU one."""
        if is_software_opengl(render_window):
            self.mapper.SetRequestedRenderModeToRayCast()
        else:
            self.mapper.SetRequestedRenderModeToDefault()

    def set_preset(self, name: str) -> None:
        if name not in VOLUME_PRESETS:
            raise ValueError(f"unknown volume preset {name!r}; use one of {', '.join(VOLUME_PRESETS)}")
        preset = VOLUME_PRESETS[name]
        opacity = vtk.vtkPiecewiseFunction()
        for hu, a in preset["opacity"]:
            opacity.AddPoint(hu, a)
        color = vtk.vtkColorTransferFunction()
        for hu, r, g, b in preset["color"]:
            color.AddRGBPoint(hu, r, g, b)
        prop = vtk.vtkVolumeProperty()
        prop.SetScalarOpacity(opacity)
        prop.SetColor(color)
        prop.SetInterpolationTypeToLinear()
        if name == "mip":
            self.mapper.SetBlendModeToMaximumIntensity()
        else:
            self.mapper.SetBlendModeToComposite()
            prop.ShadeOn()
            prop.SetAmbient(0.3)
            prop.SetDiffuse(0.7)
            prop.SetSpecular(0.2)
        self.actor.SetProperty(prop)
        self.preset = name

    def set_clip_box(self, bounds_lps: tuple[float, float, float, float, float, float] | None) -> None:
        """Clip to an LPS box (xmin, xmax, ymin, ymax, zmin, zmax); None removes clipping."""
        self.mapper.RemoveAllClippingPlanes()
        if bounds_lps is None:
            return
        box_planes = vtk.vtkPlaneCollection()
        x0, x1, y0, y1, z0, z1 = bounds_lps
        for origin, normal in (((x0, 0, 0), (1, 0, 0)), ((x1, 0, 0), (-1, 0, 0)), ((0, y0, 0), (0, 1, 0)),
                               ((0, y1, 0), (0, -1, 0)), ((0, 0, z0), (0, 0, 1)), ((0, 0, z1), (0, 0, -1))):
            plane = vtk.vtkPlane()
            plane.SetOrigin(*origin)
            plane.SetNormal(*normal)
            box_planes.AddItem(plane)
        self.mapper.SetClippingPlanes(box_planes)

    def add_label_surfaces(self, labels: Volume, styles: dict[int, LabelStyle] | None = None,
                           smoothing_iterations: int = 20) -> list[vtk.vtkActor]:
        """Each visible label as a smooth surface (discrete flying edges + windowed-sinc smoothing)."""
        image = to_vtk_image(labels, "labels")
        values = [int(v) for v in np.unique(labels.voxels) if v != 0]
        styles = styles or {v: LabelStyle(DEFAULT_LABEL_COLORS[n % len(DEFAULT_LABEL_COLORS)], 1.0)
                            for n, v in enumerate(values)}
        for value in values:
            style = styles.get(value)
            if style is None or not style.visible:
                continue
            surface = vtk.vtkDiscreteFlyingEdges3D()
            surface.SetInputData(image)
            surface.SetValue(0, value)
            smooth = vtk.vtkWindowedSincPolyDataFilter()
            smooth.SetInputConnection(surface.GetOutputPort())
            smooth.SetNumberOfIterations(smoothing_iterations)
            smooth.SetPassBand(0.05)
            smooth.NormalizeCoordinatesOn()
            normals = vtk.vtkPolyDataNormals()
            normals.SetInputConnection(smooth.GetOutputPort())
            mapper = vtk.vtkPolyDataMapper()
            mapper.SetInputConnection(normals.GetOutputPort())
            mapper.ScalarVisibilityOff()
            actor = vtk.vtkActor()
            actor.SetMapper(mapper)
            actor.SetUserMatrix(vtk_matrix(rigid_matrix(labels)))
            actor.GetProperty().SetColor(*style.color)
            actor.GetProperty().SetOpacity(style.opacity)
            actor.label_value = value
            self.renderer.AddActor(actor)
            self.surfaces.append(actor)
        return self.surfaces

    def reset_camera(self) -> None:
        """Anterior view, head up (LPS: looking along +y from the front, superior = +z up)."""
        cam = self.renderer.GetActiveCamera()
        self.renderer.ResetCamera()
        fx, fy, fz = cam.GetFocalPoint()
        distance = cam.GetDistance()
        cam.SetPosition(fx, fy - distance, fz)
        cam.SetViewUp(0, 0, 1)
        self.renderer.ResetCamera()
        self.renderer.ResetCameraClippingRange()
