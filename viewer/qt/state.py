"""The viewer's shared state: one crosshair, one window/level, the loaded volume and overlays.

Views subscribe to its signals and never talk to each other, so syncing is a property of the
model (STYLE.md rule 5): a widget test changes the state and asserts the views.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PySide6.QtCore import QObject, Signal

from viewer.core.label_style import DEFAULT_LABEL_COLORS, LabelStyle
from viewer.core.measurements import Measurement
from viewer.core.volume import Volume


@dataclass
class Overlay:
    """Something drawn over the image, with where it came from (model and version, or a file)."""

    name: str
    kind: str  # "labels" or "heatmap"
    volume: Volume
    source: str
    visible: bool = True
    opacity: float = 0.5
    outline: bool = False
    colormap: str = "inferno"
    threshold: float | None = None
    label_names: dict[int, str] = field(default_factory=dict)
    label_styles: dict[int, LabelStyle] = field(default_factory=dict)  # per label value

    def __post_init__(self) -> None:
        if self.kind == "labels" and not self.label_styles:
            values = [int(v) for v in np.unique(self.volume.voxels) if v != 0]
            self.label_styles = {v: LabelStyle(DEFAULT_LABEL_COLORS[n % len(DEFAULT_LABEL_COLORS)], 1.0)
                                 for n, v in enumerate(values)}

    def styles(self) -> dict[int, LabelStyle]:
        """Per-label styles with the overlay's opacity applied."""
        return {v: LabelStyle(st.color, st.opacity * self.opacity, st.visible) for v, st in self.label_styles.items()}


class ViewerState(QObject):
    volume_changed = Signal(object)
    crosshair_changed = Signal(object)  # numpy LPS point
    window_changed = Signal(float, float)  # width, level
    overlays_changed = Signal()
    measurements_changed = Signal()
    tool_changed = Signal(str)
    message = Signal(str)
    annotations_changed = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.volume: Volume | None = None
        self.overlays: list[Overlay] = []
        self.crosshair = np.zeros(3)
        self.window = (400.0, 40.0)
        self.series_key: str | None = None
        self.measurements: list[Measurement] = []
        self.tool = ""  # "", or a measurement kind
        self.study_info: dict = {}  # patient name/ID, study date and description, for the corner text
        self.show_patient_info = True
        self.store = None  # viewer.store.Store, when measurements are to be kept

    def set_volume(self, volume: Volume, series_key: str | None = None) -> None:
        self.volume = volume
        self.series_key = series_key
        self.measurements = self.store.measurements(series_key) if self.store is not None and series_key else []
        self.overlays = []
        nz, ny, nx = volume.shape
        self.crosshair = volume.index_to_lps([(nx - 1) / 2, (ny - 1) / 2, (nz - 1) / 2])
        wc, ww = volume.display.window_center, volume.display.window_width
        if ww:
            self.window = (float(ww), float(wc))
        self.volume_changed.emit(volume)
        self.window_changed.emit(*self.window)
        self.crosshair_changed.emit(self.crosshair)
        self.measurements_changed.emit()
        self.overlays_changed.emit()

    def set_study_info(self, info: dict) -> None:
        self.study_info = dict(info)
        self.annotations_changed.emit()

    def set_show_patient_info(self, show: bool) -> None:
        self.show_patient_info = bool(show)
        self.annotations_changed.emit()

    def set_tool(self, kind: str) -> None:
        self.tool = kind
        self.tool_changed.emit(kind)

    def save_measurement(self, m: Measurement) -> None:
        """Add or replace (same id) a measurement; kept in the store per series."""
        self.measurements = [x for x in self.measurements if x.id != m.id] + [m]
        if self.store is not None and self.series_key:
            self.store.save_measurement(self.series_key, m)
        self.measurements_changed.emit()

    def delete_measurement(self, measurement_id: str) -> None:
        self.measurements = [x for x in self.measurements if x.id != measurement_id]
        if self.store is not None:
            self.store.delete_measurement(measurement_id)
        self.measurements_changed.emit()

    def add_overlay(self, overlay: Overlay) -> None:
        self.overlays.append(overlay)
        self.overlays_changed.emit()

    def set_labels(self, labels: Volume | None, source: str = "", names: dict[int, str] | None = None) -> None:
        """Show a label mask as the 'Labels' overlay (replacing the previous one; AI overlays stay)."""
        self.overlays = [o for o in self.overlays if o.name != "Labels"]
        if labels is not None:
            self.overlays.append(Overlay("Labels", "labels", labels, source, label_names=dict(names or {})))
        self.overlays_changed.emit()

    def update_overlay(self, index: int, **changes) -> None:
        for key, value in changes.items():
            setattr(self.overlays[index], key, value)
        self.overlays_changed.emit()

    def update_label(self, index: int, value: int, **changes) -> None:
        """Change one label's colour, opacity or visibility in overlay `index`."""
        style = self.overlays[index].label_styles[value]
        self.overlays[index].label_styles[value] = LabelStyle(changes.get("color", style.color),
                                                              changes.get("opacity", style.opacity),
                                                              changes.get("visible", style.visible))
        self.overlays_changed.emit()

    def remove_overlay(self, index: int) -> None:
        del self.overlays[index]
        self.overlays_changed.emit()

    def set_crosshair(self, point) -> None:
        point = np.asarray(point, float)
        if self.volume is not None:
            # Keep the crosshair inside the volume's box.
            ijk = np.clip(self.volume.lps_to_index(point), 0, np.array(self.volume.shape[::-1]) - 1)
            point = self.volume.index_to_lps(ijk)
        if np.allclose(point, self.crosshair):
            return
        self.crosshair = point
        self.crosshair_changed.emit(point)

    def set_window(self, width: float, level: float) -> None:
        width = max(float(width), 1.0)
        self.window = (width, float(level))
        self.window_changed.emit(width, float(level))

    def value_at(self, point) -> float | None:
        """The voxel value nearest to an LPS point, or None outside the volume."""
        if self.volume is None:
            return None
        i, j, k = np.rint(self.volume.lps_to_index(point)).astype(int)
        nz, ny, nx = self.volume.shape
        if 0 <= i < nx and 0 <= j < ny and 0 <= k < nz:
            return float(self.volume.voxels[k, j, i])
        return None
