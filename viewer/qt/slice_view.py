"""A 2-D MPR view: a SliceScene in a QVTK widget, bound to the shared ViewerState.

Mouse: left click/drag moves the crosshair, wheel scrolls slices (Ctrl+wheel zooms), right
drag changes window/level, middle drag pans. Keys: arrows and Page Up/Down scroll, 1-5 window
presets, R resets zoom. Everything a view shows comes from the state, so views stay in sync.
"""

from __future__ import annotations

import numpy as np
import vtk
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget
from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor

from viewer.core.presets import window_presets
from viewer.qt.state import ViewerState
from viewer.render.slice_scene import SliceScene

SCROLL_KEYS = {Qt.Key_Up: 1, Qt.Key_Down: -1, Qt.Key_PageUp: 10, Qt.Key_PageDown: -10}


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
        self.owner.drag = None

    def wheelEvent(self, ev):
        self.owner.wheel(ev)

    def keyPressEvent(self, ev):
        if not self.owner.key(ev):
            super().keyPressEvent(ev)


class SliceView(QWidget):
    readout = Signal(str)

    def __init__(self, state: ViewerState, view: str, parent=None):
        super().__init__(parent)
        self.state, self.view = state, view
        self.scene: SliceScene | None = None
        self.drag: tuple | None = None
        self.zoom = 1.0
        self.widget = _VTKWidget(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(1, 1, 1, 1)
        layout.addWidget(self.widget)
        self.render_window = self.widget.GetRenderWindow()
        self._lines = [self._line_actor((0.2, 0.8, 1.0)), self._line_actor((0.2, 0.8, 1.0))]
        self._corner = vtk.vtkCornerAnnotation()
        self._corner.SetMaximumFontSize(14)
        self._corner.GetTextProperty().SetColor(0.9, 0.9, 0.9)
        state.volume_changed.connect(self._on_volume)
        state.crosshair_changed.connect(self._on_crosshair)
        state.window_changed.connect(self._on_window)
        state.labels_changed.connect(self._on_labels)

    # model -> view ----------------------------------------------------------------------
    def _on_volume(self, volume) -> None:
        if self.scene is not None:
            self.render_window.RemoveRenderer(self.scene.renderer)
        self.scene = SliceScene(volume, self.view)
        for actor in self._lines:
            self.scene.renderer.AddActor(actor)
        self.scene.renderer.AddViewProp(self._corner)
        self.render_window.AddRenderer(self.scene.renderer)
        self.reset_camera()

    def _on_labels(self, labels) -> None:
        if self.scene is None:
            return
        for actor in self.scene.label_actors:
            self.scene.renderer.RemoveActor(actor)
        self.scene.label_actors.clear()
        if labels is not None:
            self.scene.add_labels(labels)
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
        self._corner.SetText(0, f"W {width:.0f}  L {level:.0f}")
        self._corner.SetText(1, f"{self.view}  {d:+.1f} mm")
        self._corner.SetText(2, (source.description or "") if source else "")

    def refresh(self) -> None:
        self.render_window.Render()

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
        self.drag = (ev.button(), pos.x(), pos.y(), self.state.window)
        if ev.button() == Qt.LeftButton:
            self.state.set_crosshair(self.display_to_lps(pos.x(), pos.y()))

    def mouse_move(self, ev) -> None:
        if self.scene is None:
            return
        pos = ev.position()
        point = self.display_to_lps(pos.x(), pos.y())
        value = self.state.value_at(point)
        unit = " HU" if self.state.volume.unit == "[hnsf'U]" else ""
        text = f"({point[0]:.1f}, {point[1]:.1f}, {point[2]:.1f}) mm LPS"
        self.readout.emit(text + (f"   {value:.0f}{unit}" if value is not None else ""))
        if self.drag is None:
            return
        button, x0, y0, (w0, l0) = self.drag
        if button == Qt.LeftButton:
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
        return False

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
