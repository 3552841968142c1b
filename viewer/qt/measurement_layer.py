"""Drawing of measurements in a slice view: lines, angles, ROIs and their values.

Only measurements lying on the view's current plane (within half a slice) are drawn, as in
every PACS viewer; the panel lists them all.
"""

from __future__ import annotations

import numpy as np
import vtk

from viewer.core.measurements import Measurement

COLOR = (1.0, 0.9, 0.2)
SELECTED = (0.3, 1.0, 0.4)


def describe(m: Measurement, volume=None) -> str:
    """A short line of values for the view and the panel."""
    parts = []
    for v in m.values(volume):
        if v.name == "length_mm":
            parts.append(f"{v.value:.1f} mm")
        elif v.name == "angle_deg":
            parts.append(f"{v.value:.1f}°")
        elif v.name == "area_mm2":
            parts.append(f"{v.value:.1f} mm²")
        elif v.name == "mean":
            parts.append(f"mean {v.value:.0f}")
        elif v.name == "sd":
            parts.append(f"SD {v.value:.0f}" + (" HU" if v.unit == "[hnsf'U]" else ""))
    return ", ".join(parts)


def outline_points(m: Measurement) -> np.ndarray:
    p = m.array
    if m.kind == "ellipse":
        centre, u_end, v_end = p
        u = u_end - centre
        v_dir = v_end - centre
        u_hat = u / np.linalg.norm(u)
        v = v_dir - (v_dir @ u_hat) * u_hat
        t = np.linspace(0, 2 * np.pi, 65)
        return centre + np.outer(np.cos(t), u) + np.outer(np.sin(t), v)
    if m.kind == "polygon":
        return np.vstack([p, p[:1]])
    return p


class MeasurementLayer:
    def __init__(self, renderer: vtk.vtkRenderer):
        self.renderer = renderer
        self.actors: list = []

    def clear(self) -> None:
        for actor in self.actors:
            self.renderer.RemoveViewProp(actor)
        self.actors.clear()

    def draw(self, measurements, scene, volume, selected_id: str | None = None, draft: list | None = None) -> None:
        """Redraw in plane coordinates (u, v) of `scene`."""
        self.clear()
        d = float(scene.position @ scene.normal)
        tolerance = scene.slice_step / 2 + 1e-6
        for m in measurements:
            if np.max(np.abs(m.array @ scene.normal - d)) > tolerance:
                continue
            color = SELECTED if m.id == selected_id else COLOR
            self._polyline(outline_points(m), scene, color)
            self._text(describe(m, volume), m.array[-1], scene, color)
        if draft:
            self._polyline(np.asarray(draft), scene, (0.4, 0.8, 1.0))

    def _to_plane(self, points, scene) -> np.ndarray:
        pts = np.asarray(points, float)
        return np.stack([pts @ scene.right, pts @ scene.up, np.full(len(pts), 0.05)], axis=1)

    def _polyline(self, points, scene, color) -> None:
        uv = self._to_plane(points, scene)
        pts = vtk.vtkPoints()
        for p in uv:
            pts.InsertNextPoint(*p)
        line = vtk.vtkPolyLine()
        line.GetPointIds().SetNumberOfIds(len(uv))
        for n in range(len(uv)):
            line.GetPointIds().SetId(n, n)
        cells = vtk.vtkCellArray()
        cells.InsertNextCell(line)
        poly = vtk.vtkPolyData()
        poly.SetPoints(pts)
        poly.SetLines(cells)
        mapper = vtk.vtkPolyDataMapper()
        mapper.SetInputData(poly)
        actor = vtk.vtkActor()
        actor.SetMapper(mapper)
        actor.GetProperty().SetColor(*color)
        actor.GetProperty().SetLineWidth(2)
        self.renderer.AddActor(actor)
        self.actors.append(actor)

    def _text(self, text: str, anchor, scene, color) -> None:
        u, v, _ = self._to_plane([anchor], scene)[0]
        actor = vtk.vtkTextActor()
        actor.SetInput(text)
        actor.GetTextProperty().SetColor(*color)
        actor.GetTextProperty().SetFontSize(13)
        actor.GetPositionCoordinate().SetCoordinateSystemToWorld()
        actor.GetPositionCoordinate().SetValue(u, v, 0.05)
        self.renderer.AddViewProp(actor)
        self.actors.append(actor)
