"""A 2-D MPR view: a SliceScene in a QVTK widget, bound to the shared ViewerState.

Mouse: left click/drag moves the crosshair (or, with a measurement tool, measures; without one,
dragging a measurement's point edits it), wheel scrolls slices (Ctrl+wheel zooms), right drag
changes window/level, middle drag pans. Keys: arrows and Page Up/Down scroll, 1-5 window
presets, R resets zoom, [ ] and { } turn the plane (oblique MPR), O makes it orthogonal again,
C plays or stops cine, Enter closes a polygon, Esc cancels, Delete removes the selected
measurement. Everything a view shows comes from the state, so views stay in sync.

Tools contributed by plugins (click-to-measure, a brush) register a handler per tool name in
`tool_handlers`; while that tool is the state's tool, left-button press, drag and release go to
the handler with the LPS point under the mouse, and the view does nothing else with them.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import vtk
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget
from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor

from viewer.core.measurements import Measurement
from viewer.core.presets import window_presets
from viewer.qt.measurement_layer import MeasurementLayer, outline_points
from viewer.qt.state import ViewerState
from viewer.render.slice_scene import SliceScene

SCROLL_KEYS = {Qt.Key_Up: 1, Qt.Key_Down: -1, Qt.Key_PageUp: 10, Qt.Key_PageDown: -10}
# Oblique MPR: turn the plane by 5 degrees about the screen's vertical or horizontal axis.
ROTATE_KEYS = {"[": (-5.0, "up"), "]": (5.0, "up"), "{": (-5.0, "right"), "}": (5.0, "right")}


class ToolHandler(Protocol):
    """What a plugin's tool does with the left mouse button; `point` is LPS mm on the view's plane."""

    def press(self, view: "SliceView", point: np.ndarray) -> None: ...

    def move(self, view: "SliceView", point: np.ndarray) -> None: ...

    def release(self, view: "SliceView", point: np.ndarray) -> None: ...


class _VTKWidget(QVTKRenderWindowInteractor):
    """QVTK widget whose mouse and keys are handled by the owning SliceView, not VTK styles."""

    def __init__(self, owner: "SliceView"):
        super().__init__(owner)
        self.owner = owner
        self.GetRenderWindow().GetInteractor().SetInteractorStyle(vtk.vtkInteractorStyleUser())
        self.setFocusPolicy(Qt.StrongFocus)

    def mousePressEvent(self, ev):
        self.owner.mouse_press(ev)

    def mouseMoveEvent(self, ev):
        self.owner.mouse_move(ev)

    def mouseReleaseEvent(self, ev):
        self.owner.mouse_release(ev)

    def mouseDoubleClickEvent(self, ev):
        self.owner.finish_polygon()

    def wheelEvent(self, ev):
        self.owner.wheel(ev)

    def keyPressEvent(self, ev):
        if not self.owner.key(ev):
            super().keyPressEvent(ev)


class SliceView(QWidget):
    readout = Signal(str)

    def __init__(self, state: ViewerState, view: str, parent=None, overlays: bool = True):
        super().__init__(parent)
        self.state, self.view = state, view
        self.show_overlays = overlays  # False: the plain image beside an overlaid view
        self.scene: SliceScene | None = None
        self.layer: MeasurementLayer | None = None
        self.drag: tuple | None = None
        self.draft: list[np.ndarray] = []
        self.editing: tuple[Measurement, int] | None = None
        self.selected_id: str | None = None
        self.tool_handlers: dict[str, ToolHandler] = {}
        self.zoom = 1.0
        self.widget = _VTKWidget(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(1, 1, 1, 1)
        layout.addWidget(self.widget)
        self.render_window = self.widget.GetRenderWindow()
        self._lines = [self._line_actor((0.2, 0.8, 1.0)), self._line_actor((0.2, 0.8, 1.0))]
        self._corner = vtk.vtkCornerAnnotation()
        self._corner.SetMaximumFontSize(13)
        self._corner.GetTextProperty().SetColor(0.9, 0.9, 0.9)
        state.volume_changed.connect(self._on_volume)
        state.crosshair_changed.connect(self._on_crosshair)
        state.window_changed.connect(self._on_window)
        state.overlays_changed.connect(self._on_overlays)
        state.measurements_changed.connect(self.redraw_measurements)
        state.tool_changed.connect(lambda _: self._cancel_draft())
        state.annotations_changed.connect(lambda: (self._update_corner(), self.refresh()))
        self.cine = QTimer(self)
        self.cine.setInterval(100)  # 10 images per second
        self.cine.timeout.connect(self._cine_step)

    # model -> view ----------------------------------------------------------------------
    def _on_volume(self, volume) -> None:
        if self.scene is not None:
            self.render_window.RemoveRenderer(self.scene.renderer)
        self.scene = SliceScene(volume, self.view)
        for actor in self._lines:
            self.scene.renderer.AddActor(actor)
        self.scene.renderer.AddViewProp(self._corner)
        self.layer = MeasurementLayer(self.scene.renderer)
        self.render_window.AddRenderer(self.scene.renderer)
        self.reset_camera()

    def _on_overlays(self) -> None:
        if self.scene is None:
            return
        self.scene.clear_overlays()
        for overlay in self.state.overlays:
            if not overlay.visible or not self.show_overlays:
                continue
            if overlay.kind == "labels":
                self.scene.add_labels(overlay.volume, overlay.styles(), outline=overlay.outline)
            else:
                self.scene.add_heatmap(overlay.volume, overlay.colormap, overlay.opacity, overlay.threshold,
                                       colorbar_title=overlay.name)
        self.refresh()

    def _on_crosshair(self, point) -> None:
        if self.scene is None:
            return
        self.scene.set_position(point)
        u, v = float(point @ self.scene.right), float(point @ self.scene.up)
        u0, u1, v0, v1 = self.scene._extent_uv
        self._set_line(self._lines[0], (u, v0, 0.02), (u, v1, 0.02))
        self._set_line(self._lines[1], (u0, v, 0.02), (u1, v, 0.02))
        self._update_corner()
        self.redraw_measurements()

    def redraw_measurements(self) -> None:
        if self.scene is None or self.layer is None:
            return
        draft = self.draft
        if self.state.tool == "ellipse" and len(draft) == 2:
            draft = list(outline_points(self._ellipse_from_drag(*draft))) if self._ellipse_ok(*draft) else []
        self.layer.draw(self.state.measurements, self.scene, self.state.volume, self.selected_id, draft)
        self.refresh()

    def _on_window(self, width: float, level: float) -> None:
        if self.scene is not None:
            self.scene.set_window(width, level)
            self._update_corner()
            self.refresh()

    def _update_corner(self) -> None:
        if self.scene is None:
            return
        d = float(self.state.crosshair @ self.scene.normal)
        width, level = self.state.window
        source = self.state.volume.source if self.state.volume is not None else None
        oblique = "" if self.scene.view in ("axial", "coronal", "sagittal") and self._orthogonal() else " (oblique)"
        self._corner.SetText(0, f"W {width:.0f}  L {level:.0f}")
        plain = "" if self.show_overlays else "  (no overlays)"
        self._corner.SetText(1, f"{self.view}{oblique}  {d:+.1f} mm{plain}")
        self._corner.SetText(3, (source.description or "") if source else "")
        info = self.state.study_info
        lines = [info.get("patient_name", ""), info.get("patient_id", ""),
                 " ".join(v for v in (info.get("study_date", ""), info.get("study_description", "")) if v)]
        self._corner.SetText(2, "\n".join(v for v in lines if v) if self.state.show_patient_info else "")

    def refresh(self) -> None:
        self.render_window.Render()

    def lps_to_display(self, point) -> tuple[float, float]:
        """LPS point (projected onto this view's plane) to the widget pixel (Qt, top-left origin)."""
        p = np.asarray(point, float)
        ren = self.scene.renderer
        ratio = self.widget.devicePixelRatioF()
        ren.SetWorldPoint(float(p @ self.scene.right), float(p @ self.scene.up), 0, 1)
        ren.WorldToDisplay()
        px, py, _ = ren.GetDisplayPoint()
        return px / ratio, self.widget.height() - py / ratio

    def reset_camera(self) -> None:
        if self.scene is None:
            return
        self.zoom = 1.0
        self.scene.fit_camera(max(self.widget.width(), 1), max(self.widget.height(), 1))
        self.refresh()

    # view -> model ----------------------------------------------------------------------
    def display_to_lps(self, x: float, y: float) -> np.ndarray:
        """Widget pixel (Qt, top-left origin) to the LPS point on this view's plane."""
        ratio = self.widget.devicePixelRatioF()
        ren = self.scene.renderer
        ren.SetDisplayPoint(x * ratio, (self.widget.height() - y) * ratio, 0)
        ren.DisplayToWorld()
        wx, wy, _, w = ren.GetWorldPoint()
        return self.scene.plane_to_lps(wx / w, wy / w)

    def mouse_press(self, ev) -> None:
        if self.scene is None:
            return
        pos = ev.position()
        point = self.display_to_lps(pos.x(), pos.y())
        self.drag = (ev.button(), pos.x(), pos.y(), self.state.window)
        if ev.button() != Qt.LeftButton:
            return
        tool = self.state.tool
        if tool in self.tool_handlers:
            self.tool_handlers[tool].press(self, point)
            return
        if tool in ("line", "ellipse"):
            self.draft = [point, point]
        elif tool in ("angle", "polygon"):
            self.draft = (self.draft[:-1] if self.draft else []) + [point, point]
            if tool == "angle" and len(self.draft) == 4:
                self._commit(Measurement("angle", tuple(map(tuple, self.draft[:3]))))
        elif (hit := self._hit_point(pos.x(), pos.y())) is not None:
            self.editing = hit
            self.selected_id = hit[0].id
        else:
            self.state.set_crosshair(point)
        self.redraw_measurements()

    def mouse_release(self, ev) -> None:
        button = self.drag[0] if self.drag is not None else None
        self.drag = None
        tool = self.state.tool
        if tool in self.tool_handlers:
            if button == Qt.LeftButton and self.scene is not None:
                pos = ev.position()
                self.tool_handlers[tool].release(self, self.display_to_lps(pos.x(), pos.y()))
            return
        if tool in ("line", "ellipse") and len(self.draft) == 2:
            a, b = self.draft
            if tool == "line" and np.linalg.norm(b - a) > 0.1:
                self._commit(Measurement("line", (tuple(a), tuple(b))))
            elif tool == "ellipse" and self._ellipse_ok(a, b):
                self._commit(self._ellipse_from_drag(a, b))
            else:
                self._cancel_draft()
        if self.editing is not None:
            m, n = self.editing
            self.editing = None
            self.state.save_measurement(next(x for x in self.state.measurements if x.id == m.id))

    def finish_polygon(self) -> None:
        if self.state.tool == "polygon" and len(self.draft) >= 4:
            self._commit(Measurement("polygon", tuple(map(tuple, self.draft[:-1]))))

    def _commit(self, m: Measurement) -> None:
        self.draft = []
        self.selected_id = m.id
        self.state.save_measurement(m)

    def _cancel_draft(self) -> None:
        self.draft = []
        self.redraw_measurements()

    def _ellipse_ok(self, a, b) -> bool:
        d = b - a
        return abs(d @ self.scene.right) > 0.2 and abs(d @ self.scene.up) > 0.2

    def _ellipse_from_drag(self, a, b) -> Measurement:
        """The ellipse inscribed in the dragged screen rectangle."""
        centre = (a + b) / 2
        d = (b - a) / 2
        u = (d @ self.scene.right) * self.scene.right
        v = (d @ self.scene.up) * self.scene.up
        return Measurement("ellipse", (tuple(centre), tuple(centre + u), tuple(centre + v)))

    def _hit_point(self, x: float, y: float, radius_px: float = 6.0):
        """The measurement point under the mouse on this plane: (measurement, point index)."""
        ren = self.scene.renderer
        ratio = self.widget.devicePixelRatioF()
        d = float(self.scene.position @ self.scene.normal)
        for m in self.state.measurements:
            for n, p in enumerate(m.array):
                if abs(p @ self.scene.normal - d) > self.scene.slice_step / 2 + 1e-6:
                    continue
                ren.SetWorldPoint(p @ self.scene.right, p @ self.scene.up, 0, 1)
                ren.WorldToDisplay()
                px, py, _ = ren.GetDisplayPoint()
                if np.hypot(px / ratio - x, (self.widget.height() - py / ratio) - y) <= radius_px:
                    return m, n
        return None

    def mouse_move(self, ev) -> None:
        if self.scene is None:
            return
        pos = ev.position()
        point = self.display_to_lps(pos.x(), pos.y())
        value = self.state.value_at(point)
        unit = " HU" if self.state.volume.unit == "[hnsf'U]" else ""
        text = f"({point[0]:.1f}, {point[1]:.1f}, {point[2]:.1f}) mm LPS"
        self.readout.emit(text + (f"   {value:.0f}{unit}" if value is not None else ""))
        if self.draft and (self.drag is not None or self.state.tool in ("angle", "polygon")):
            self.draft[-1] = point
            self.redraw_measurements()
            return
        if self.drag is None:
            return
        button, x0, y0, (w0, l0) = self.drag
        if button == Qt.LeftButton and self.state.tool in self.tool_handlers:
            self.tool_handlers[self.state.tool].move(self, point)
        elif button == Qt.LeftButton and self.editing is not None:
            m, n = self.editing
            points = list(m.points)
            points[n] = tuple(point)
            moved = Measurement(m.kind, tuple(points), m.label, m.id)
            self.state.measurements = [moved if x.id == m.id else x for x in self.state.measurements]
            self.editing = (moved, n)
            self.redraw_measurements()
        elif button == Qt.LeftButton:
            self.state.set_crosshair(point)
        elif button == Qt.RightButton:
            self.state.set_window(w0 * np.exp((pos.x() - x0) / 200.0), l0 - (pos.y() - y0) * w0 / 400.0)
        elif button == Qt.MiddleButton:
            cam = self.scene.renderer.GetActiveCamera()
            scale = 2 * cam.GetParallelScale() / max(self.widget.height(), 1)
            dx, dy = -(pos.x() - x0) * scale, (pos.y() - y0) * scale
            fx, fy, fz = cam.GetFocalPoint()
            px, py, pz = cam.GetPosition()
            cam.SetFocalPoint(fx + dx, fy + dy, fz)
            cam.SetPosition(px + dx, py + dy, pz)
            self.drag = (button, pos.x(), pos.y(), self.drag[3])
            self.refresh()

    def wheel(self, ev) -> None:
        if self.scene is None:
            return
        steps = int(np.sign(ev.angleDelta().y()))
        if ev.modifiers() & Qt.ControlModifier:
            self.zoom_by(1.1 ** steps)
        else:
            self.scroll(steps)

    def scroll(self, slices: int) -> None:
        self.scene.step(slices)
        self.state.set_crosshair(self.scene.position)

    def zoom_by(self, factor: float) -> None:
        cam = self.scene.renderer.GetActiveCamera()
        cam.SetParallelScale(cam.GetParallelScale() / factor)
        self.zoom *= factor
        self.refresh()

    def key(self, ev) -> bool:
        if self.scene is None:
            return False
        if ev.key() in SCROLL_KEYS:
            self.scroll(SCROLL_KEYS[ev.key()])
            return True
        for preset in window_presets():
            if ev.text() == preset.key:
                self.state.set_window(preset.width, preset.level)
                return True
        if ev.key() == Qt.Key_R:
            self.reset_camera()
            return True
        if ev.text() in ROTATE_KEYS:
            degrees, about = ROTATE_KEYS[ev.text()]
            self.scene.rotate(degrees, about)
            self._after_reorientation()
            return True
        if ev.key() == Qt.Key_O:
            from viewer.core.orientation import plane_axes

            right, up, _ = plane_axes(self.view)
            self.scene.set_axes(right, up)
            self._after_reorientation()
            return True
        if ev.key() == Qt.Key_C:
            self.toggle_cine()
            return True
        if ev.key() in (Qt.Key_Return, Qt.Key_Enter):
            self.finish_polygon()
            return True
        if ev.key() == Qt.Key_Escape:
            if self.draft:
                self._cancel_draft()
            else:
                self.state.set_tool("")
            return True
        if ev.key() in (Qt.Key_Delete, Qt.Key_Backspace) and self.selected_id:
            self.state.delete_measurement(self.selected_id)
            self.selected_id = None
            return True
        return False

    def _orthogonal(self) -> bool:
        from viewer.core.orientation import plane_axes

        return bool(np.allclose(self.scene.normal, plane_axes(self.view)[2], atol=1e-6))

    def _after_reorientation(self) -> None:
        self._on_crosshair(self.state.crosshair)
        self.reset_camera()

    def toggle_cine(self) -> None:
        """Play through the slices (wrapping at the ends) or stop."""
        if self.cine.isActive():
            self.cine.stop()
        else:
            self.cine.start()

    def _cine_step(self) -> None:
        if self.scene is None:
            self.cine.stop()
            return
        before = float(self.scene.position @ self.scene.normal)
        self.scroll(1)
        if abs(float(self.scene.position @ self.scene.normal) - before) < 1e-9:  # at the end: wrap
            self.scroll(-100000)

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        if self.scene is not None and self.zoom == 1.0:
            self.scene.fit_camera(max(self.widget.width(), 1), max(self.widget.height(), 1))

    def closeEvent(self, ev) -> None:
        self.widget.Finalize()
        super().closeEvent(ev)

    @staticmethod
    def _line_actor(color) -> vtk.vtkActor:
        source = vtk.vtkLineSource()
        mapper = vtk.vtkPolyDataMapper()
        mapper.SetInputConnection(source.GetOutputPort())
        actor = vtk.vtkActor()
        actor.SetMapper(mapper)
        actor.GetProperty().SetColor(*color)
        actor.GetProperty().SetOpacity(0.6)
        actor._source = source
        return actor

    @staticmethod
    def _set_line(actor, p0, p1) -> None:
        actor._source.SetPoint1(*p0)
        actor._source.SetPoint2(*p1)
