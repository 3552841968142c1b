"""3-D view: volume rendering presets (CT bone, lung, soft tissue, vessels, skin, MIP; MR from
the data's percentiles), clipping by box and planes, label surfaces.

The volume's rotation and origin go into the vtkVolume's user matrix, so the picture is in
patient LPS millimetres like every other view. On software OpenGL the ray caster samples
coarsely while the camera moves (AutoAdjustSampleDistances) and finely when it stops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import vtk

from viewer.core.volume import Volume
from viewer.core.label_style import DEFAULT_LABEL_COLORS, LabelStyle
from viewer.render.vtk_image import to_vtk_image, vtk_matrix

MAX_CLIPPING_PLANES = 6  # what VTK's volume mappers honour (vtkVolumeMapper, GPU and CPU ray casters)


@dataclass(frozen=True)
class VolumePreset:
    """Transfer functions as (value, opacity) and (value, r, g, b) control points.

    Values are HU, or with `relative` fractions of the range between the data's 1st and 99th
    percentiles (for MR, whose intensities have no fixed scale)."""

    description: str
    opacity: tuple[tuple[float, float], ...]
    color: tuple[tuple[float, float, float, float], ...]
    blend: str = "composite"  # or "mip"
    relative: bool = False


VOLUME_PRESETS: dict[str, VolumePreset] = {
    "ct-bone": VolumePreset(
        "CT bone: cortical and cancellous bone (above ~150 HU) opaque and ivory, soft tissue clear",
        ((-1000, 0), (150, 0), (300, 0.15), (700, 0.6), (1500, 0.85)),
        ((-1000, 0, 0, 0), (150, 0.55, 0.25, 0.15), (300, 0.9, 0.75, 0.6), (1500, 1, 1, 0.95))),
    "ct-lung": VolumePreset(
        "CT lung: aerated lung (-900 to -500 HU) a faint blue haze, vessels and nodules warmer, "
        "bone (above 200 HU) for orientation",
        ((-1000, 0), (-900, 0), (-750, 0.08), (-500, 0.15), (-200, 0), (200, 0), (600, 0.4)),
        ((-1000, 0.3, 0.3, 0.5), (-750, 0.6, 0.7, 0.9), (-300, 0.9, 0.6, 0.5), (600, 1, 1, 0.9))),
    "ct-soft-tissue": VolumePreset(
        "CT soft tissue: fat clear, muscle and organs (0 to 100 HU) translucent red, bone opaque",
        ((-1000, 0), (-150, 0), (0, 0.1), (100, 0.25), (400, 0.5), (1000, 0.8)),
        ((-1000, 0, 0, 0), (-150, 0.6, 0.3, 0.2), (40, 0.85, 0.45, 0.35), (400, 1, 0.9, 0.8))),
    "ct-vessels": VolumePreset(
        "CT angiography: contrast-filled vessels (150 to 500 HU) opaque red, dense bone (above "
        "700 HU) faint white so it does not hide them; unenhanced blood (~40 HU) stays clear",
        ((-1000, 0), (120, 0), (200, 0.35), (450, 0.7), (700, 0.25), (1500, 0.3)),
        ((-1000, 0, 0, 0), (120, 0.6, 0.05, 0.05), (250, 0.9, 0.2, 0.15), (450, 1, 0.55, 0.45),
         (700, 0.95, 0.92, 0.88), (1500, 1, 1, 1))),
    "ct-skin": VolumePreset(
        "CT body surface: the air-skin boundary (-500 to -200 HU) opaque and skin coloured, "
        "everything inside hidden behind it; combine with a clip plane to open the body",
        ((-1000, 0), (-500, 0), (-300, 0.9), (3000, 0.95)),
        ((-1000, 0, 0, 0), (-500, 0.75, 0.55, 0.45), (-100, 0.93, 0.75, 0.65), (200, 0.95, 0.85, 0.75),
         (3000, 1, 1, 1))),
    "mip": VolumePreset(
        "Maximum intensity projection: the brightest value along each ray, grey",
        ((-1000, 0), (3000, 1)), ((-1000, 0, 0, 0), (3000, 1, 1, 1)), blend="mip"),
    "mr-default": VolumePreset(
        "MR: the data's own scale, darkest fifth (background, fluid on T1) clear and the rest "
        "a grey ramp between its 1st and 99th percentiles",
        ((0, 0), (0.2, 0), (0.6, 0.25), (1, 0.6)),
        ((0, 0, 0, 0), (0.2, 0.35, 0.32, 0.3), (0.6, 0.75, 0.72, 0.68), (1, 1, 1, 1)), relative=True),
}


def preset_range(voxels: np.ndarray) -> tuple[float, float]:
    """1st and 99th percentiles of the data (on every 2nd voxel per axis: the same to a
    fraction of a percent, 8 times faster) for relative presets."""
    sample = np.asarray(voxels[::2, ::2, ::2], dtype=np.float32)
    low, high = (float(v) for v in np.percentile(sample, (1, 99)))
    return low, (high if high > low else low + 1.0)


def is_software_opengl(render_window) -> bool:
    render_window.Render()
    text = render_window.ReportCapabilities() or ""
    return any(word in text for word in ("llvmpipe", "softpipe", "SWR", "Software Rasterizer"))


def rigid_matrix(volume: Volume) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = volume.direction
    m[:3, 3] = volume.origin
    return m


def box_planes(bounds_lps) -> list[tuple[tuple[float, float, float], tuple[float, float, float]]]:
    """The six (origin, normal) planes of an LPS box, normals pointing inwards."""
    x0, x1, y0, y1, z0, z1 = bounds_lps
    return [((x0, 0, 0), (1, 0, 0)), ((x1, 0, 0), (-1, 0, 0)), ((0, y0, 0), (0, 1, 0)),
            ((0, y1, 0), (0, -1, 0)), ((0, 0, z0), (0, 0, 1)), ((0, 0, z1), (0, 0, -1))]


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
        self._clip_box: list = []
        self._clip_planes: list = []
        self._home = vtk.vtkCamera()
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
        low, high = preset_range(self.volume.voxels) if preset.relative else (0.0, 1.0)
        scale = (lambda v: low + v * (high - low)) if preset.relative else float
        opacity = vtk.vtkPiecewiseFunction()
        for value, a in preset.opacity:
            opacity.AddPoint(scale(value), a)
        color = vtk.vtkColorTransferFunction()
        for value, r, g, b in preset.color:
            color.AddRGBPoint(scale(value), r, g, b)
        prop = vtk.vtkVolumeProperty()
        prop.SetScalarOpacity(opacity)
        prop.SetColor(color)
        prop.SetInterpolationTypeToLinear()
        if preset.blend == "mip":
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
        """Clip to an LPS box (xmin, xmax, ymin, ymax, zmin, zmax); None removes the box."""
        self._apply_clipping([] if bounds_lps is None else box_planes(bounds_lps), self._clip_planes)

    def set_clip_planes(self, planes: list[tuple[tuple[float, float, float], tuple[float, float, float]]]) -> None:
        """Cut along planes given as (origin LPS mm, normal); what lies on the side the normal
        points to is kept. Origin (0, y, 0) with normal (0, 1, 0) removes everything anterior
        of y (LPS: anterior is -y). An empty list removes them."""
        checked = []
        for origin, normal in planes:
            n = np.asarray(normal, float)
            if n.shape != (3,) or not np.linalg.norm(n) > 1e-9:
                raise ValueError(f"clip plane normal {tuple(normal)} has no direction; give a non-zero vector")
            checked.append((tuple(float(v) for v in origin), tuple(n / np.linalg.norm(n))))
        self._apply_clipping(self._clip_box, checked)

    def _apply_clipping(self, box: list | None = None, cuts: list | None = None) -> None:
        box = self._clip_box if box is None else box
        cuts = self._clip_planes if cuts is None else cuts
        planes = box + cuts
        if len(planes) > MAX_CLIPPING_PLANES:
            raise ValueError(f"{len(planes)} clipping planes (box: {len(box)}, planes: {len(cuts)}); VTK's "
                             f"volume mappers take at most {MAX_CLIPPING_PLANES}: use a box or planes, not both")
        self._clip_box, self._clip_planes = box, cuts
        collection = None
        if planes:
            collection = vtk.vtkPlaneCollection()
            for origin, normal in planes:
                plane = vtk.vtkPlane()
                plane.SetOrigin(*origin)
                plane.SetNormal(*normal)
                collection.AddItem(plane)
        for mapper in [self.mapper] + [a.GetMapper() for a in self.surfaces]:
            mapper.RemoveAllClippingPlanes()
            if collection is not None:
                mapper.SetClippingPlanes(collection)

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
        self._apply_clipping()
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
        self._home.DeepCopy(cam)

    def set_view(self, azimuth: float = 0.0, elevation: float = 0.0) -> None:
        """Camera turned from the anterior home view by `azimuth` degrees about the patient's
        long (S-I) axis, then `elevation` degrees up; always from home, so a turntable's frame
        k is the same picture as a still at that azimuth."""
        cam = self.renderer.GetActiveCamera()
        cam.DeepCopy(self._home)
        cam.Azimuth(azimuth)
        cam.Elevation(elevation)
        cam.OrthogonalizeViewUp()
        self.renderer.ResetCameraClippingRange()
