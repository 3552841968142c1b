"""The 3-D view: a VolumeScene in a QVTK widget with trackball camera; presets from the menu."""

from __future__ import annotations

import vtk
from PySide6.QtWidgets import QVBoxLayout, QWidget
from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor

from viewer.qt.state import ViewerState
from viewer.render.volume_scene import VolumeScene


class VolumeView(QWidget):
    def __init__(self, state: ViewerState, parent=None):
        super().__init__(parent)
        self.state = state
        self.scene: VolumeScene | None = None
        self.preset = "ct-bone"
        self.widget = QVTKRenderWindowInteractor(self)
        self.widget.GetRenderWindow().GetInteractor().SetInteractorStyle(vtk.vtkInteractorStyleTrackballCamera())
        layout = QVBoxLayout(self)
        layout.setContentsMargins(1, 1, 1, 1)
        layout.addWidget(self.widget)
        self.render_window = self.widget.GetRenderWindow()
        # Software OpenGL: ask for fewer samples while the camera moves (see VolumeScene).
        self.render_window.SetDesiredUpdateRate(8.0)
        self.widget.GetRenderWindow().GetInteractor().SetStillUpdateRate(0.01)
        state.volume_changed.connect(self._on_volume)
        state.overlays_changed.connect(self._on_overlays)

    def _on_volume(self, volume) -> None:
        if self.scene is not None:
            self.render_window.RemoveRenderer(self.scene.renderer)
        self.scene = VolumeScene(volume, self.preset)
        self.render_window.AddRenderer(self.scene.renderer)
        self.scene.adapt_to(self.render_window)
        self.render_window.Render()

    def _on_overlays(self) -> None:
        if self.scene is None:
            return
        for actor in self.scene.surfaces:
            self.scene.renderer.RemoveActor(actor)
        self.scene.surfaces.clear()
        for overlay in self.state.overlays:
            if overlay.kind == "labels" and overlay.visible:
                self.scene.add_label_surfaces(overlay.volume, overlay.label_styles)
        self.render_window.Render()

    def set_preset(self, name: str) -> None:
        self.preset = name
        if self.scene is not None:
            self.scene.set_preset(name)
            self.render_window.Render()

    def closeEvent(self, ev) -> None:
        self.widget.Finalize()
        super().closeEvent(ev)
